"""`make run`: the gateway on 127.0.0.1 with embedded AWS and, by default, the sandbox panel.

Everything runs in this one process (moto's server, the sandbox, `chalice local`
without autoreload), so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chalice.local import ChaliceRequestHandler, ForbiddenError, LambdaEventConverter, LocalGateway
from chalice.local import LocalGatewayException, RouteMatcher, ThreadedHTTPServer

from chalicelib import errors, http, logs
from chalicelib.callers import KEY_PREFIX, record_for
from local.aws import SECRET_ID, TABLE, EmbeddedAws, apply_environ, create_queue, create_table, write_secret

ROOT = Path(__file__).resolve().parent.parent
DEV_KEY = "sgw_local_dev_key_change_me"
STAGE = "dev"


def main() -> int:
    port = int(os.environ.get("PORT") or 8000)
    caller_key = os.environ.get("GATEWAY_API_KEY") or DEV_KEY
    sync_seconds = sync_interval(os.environ.get("STATUS_SYNC_SECONDS"))
    if sync_seconds is None:
        print("STATUS_SYNC_SECONDS must be a number of seconds above 0", file=sys.stderr)
        return 1
    # Checked before anything starts, so a busy port is one clear line rather than a
    # banner for a gateway that never serves, followed by a traceback.
    if not port_is_free(port):
        print(f"port {port} on 127.0.0.1 is in use; set PORT to another one", file=sys.stderr)
        return 1
    # Ctrl-C (SIGINT) stops the run even when it was started from a script in the
    # background, where the shell hands it SIGINT ignored and Python keeps it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    quiet_embedded_services()
    aws = EmbeddedAws().start()
    sandbox = None
    stopped = threading.Event()  # set on the way out: the background threads end
    webhooks: threading.Thread | None = None
    try:
        apply_environ({**aws.environ(), "GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": SECRET_ID})
        if os.environ.get("SMM_API_URL"):
            api_url, api_key = os.environ["SMM_API_URL"], os.environ.get("SMM_API_KEY", "")
        else:
            from sandbox import DEFAULT_KEY, SandboxPanel

            # The sandbox must accept the key the secret holds, or SMM_API_KEY alone
            # would turn every call into upstream_auth_failed.
            api_key = os.environ.get("SMM_API_KEY") or DEFAULT_KEY
            sandbox = SandboxPanel(api_key=api_key)
            api_url = sandbox.start()
        create_table(aws.client("dynamodb"))
        queue_url = create_queue(aws.client("sqs"))
        # Local development delivers to loopback receivers over http (deployed: never).
        os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        os.environ["WEBHOOK_QUEUE_URL"] = queue_url
        write_secret(aws.client("secretsmanager"), api_url, api_key, [record_for("local", caller_key)])
        print(banner(port, caller_key, api_url if sandbox is None else f"sandbox panel at {api_url}",
                     aws.endpoint, os.environ.get("SECRET_MAX_AGE_SECONDS") or "60"),
              flush=True)
        webhooks = start_webhook_worker(aws.client("sqs"), queue_url, stopped)
        return serve(port, sync_seconds)
    except KeyboardInterrupt:
        return 0
    finally:
        stopped.set()
        if webhooks is not None:
            webhooks.join(timeout=10)
        if sandbox is not None:
            sandbox.stop()
        aws.stop()


def serve(port: int, sync_seconds: float = 5.0) -> int:
    """`chalice local` (threaded, no autoreload) in this thread until Ctrl-C, and the
    status sync beside it."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_routes
    from chalice.local import LocalDevServer

    os.chdir(ROOT)
    # `chalice local` writes .chalice/config.json's environment_variables over
    # os.environ, so a value there would silently beat SMM_TIMEOUT_SECONDS and the
    # rest of the environment this run promises to honour. Here the config only
    # fills in what the environment leaves unset: the factory gets a scratch mapping
    # to overwrite instead of os.environ.
    factory = CLIFactory(str(ROOT), environ={})
    config = factory.create_config_obj(chalice_stage_name=STAGE)
    for name, value in config.environment_variables.items():
        os.environ.setdefault(name, value)
    validate_routes(config.chalice_app.routes)  # as `chalice local`: only what would deploy
    try:
        server = LocalDevServer(config.chalice_app, config, "127.0.0.1", port, handler_cls=Handler,
                                server_cls=Server)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"port {port} on 127.0.0.1 was taken meanwhile; set PORT to another one", file=sys.stderr)
        return 1
    syncing = StatusSyncThread(sys.modules["app"].sync_statuses, sync_seconds).start()
    try:
        server.serve_forever()
    finally:
        syncing.stop()
        server.server.server_close()
    return 0


def sync_interval(text: str | None) -> float | None:
    """STATUS_SYNC_SECONDS as seconds (5 when unset), or None when it is no usable number."""
    try:
        seconds = float(text or 5)
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


class StatusSyncThread:
    """The deployed schedule's stand-in: calls the same function, `app.sync_statuses`, with a
    scheduled event every `seconds`. A failed run is logged and the next one runs."""

    def __init__(self, sync: Any, seconds: float) -> None:
        self._sync = sync
        self._seconds = seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-sync", daemon=True)

    def start(self) -> "StatusSyncThread":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the loop; a run in progress is waited for a little (it is a daemon: it never holds the exit)."""
        self._stopped.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopped.wait(self._seconds):
            try:
                self._sync(scheduled_event(), None)
            except Exception:  # noqa: BLE001 (one run's failure must not end the loop)
                logs.crash(route="status sync")


def scheduled_event() -> dict[str, Any]:
    """The event EventBridge hands a scheduled function (Chalice reads it into a CloudWatchEvent)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"version": "0", "id": os.urandom(16).hex(), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": now, "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:000000000000:rule/local-status-sync"], "detail": {}}


class Server(ThreadedHTTPServer):
    # socketserver listens with a backlog of 5: a burst of 16 requests (one
    # no-code run fanning out) then has connections reset by the kernel.
    request_queue_size = socket.SOMAXCONN


class HeaderLines(dict[str, str]):
    """A request's headers as API Gateway hands them over: the last line of each by its
    lower-cased name, and every line in `lines` (the event's `multiValueHeaders`)."""

    def __init__(self, lines: dict[str, list[str]]) -> None:
        super().__init__({name: values[-1] for name, values in lines.items()})
        self.lines = lines


class EventConverter(LambdaEventConverter):
    """chalice local's Lambda event, with the `multiValueHeaders` API Gateway adds.

    Its own keeps one line of a header sent twice and hides the rest, so a rule about
    repeated headers (chalicelib.http.field_value) would hold deployed and not here."""

    def create_lambda_event(self, method: str, path: str, headers: dict[str, str],
                            body: bytes | None = None) -> dict[str, Any]:
        event = super().create_lambda_event(method, path, headers, body)
        if isinstance(headers, HeaderLines):
            event["multiValueHeaders"] = headers.lines
        return event


class _RecordedLines:
    """The request's input, keeping the header lines http.client reads from it, so they
    can be checked as sent (its parser splits a line at a bare CR and stops at a
    malformed one without a word)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.read: list[bytes] = []

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.source.readline(limit)
        self.read.append(line)
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)


# RFC 9110 5.1/5.5: a token, a colon right after it, then visible text, spaces and tabs.
# No space before the colon, no folded line, no CR, NUL or other control inside.
_FIELD_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r?\n")
_DIGITS = re.compile(r"[0-9]+")
# What follows the path proper, raw or percent-encoded: a query, path parameters, a fragment.
_AFTER_PATH = re.compile(r"[?;#]|%3[FfBb]|%23")
_CALLER_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_%-]+")  # a gateway key, as new_key() makes them


class Handler(ChaliceRequestHandler):
    """`chalice local`'s handler, reading requests strictly and answering what it
    refuses itself in the one error shape.

    Deployed, API Gateway frames and refuses requests (infra/resources.json gives an
    unknown route our 404); here http.server would send an HTML page (unknown method,
    oversized request line or headers, malformed request line), chalice local API
    Gateway's bare 403 for an unknown route, and both read lengths, header lines and
    query strings leniently.
    """

    # A request that stops coming (a partial line, headers or body) ends the connection
    # after this long instead of holding a thread forever.
    timeout = float(os.environ.get("LOCAL_READ_TIMEOUT_SECONDS") or 30)

    # http.server's refusals (send_error); 501 is its answer to a method it has no do_ for.
    REFUSALS: dict[int, errors.GatewayError] = {
        HTTPStatus.BAD_REQUEST: errors.ValidationError("The request line is malformed."),
        HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: errors.ValidationError("Only HTTP/1.0 and HTTP/1.1 are served."),
        HTTPStatus.NOT_IMPLEMENTED: errors.MethodNotAllowed("This method is not served."),
        HTTPStatus.REQUEST_URI_TOO_LONG: errors.UriTooLong("The request line is over 65536 bytes."),
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: errors.HeadersTooLarge(
            "A header line is over 65536 bytes, or there are 100 headers or more (at most 99 are read)."),
    }

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        # ChaliceRequestHandler.__init__, with an event converter that keeps every header line.
        self._routes = app_object.routes
        self._payload: bytes | None = None
        self.local_gateway = LocalGateway(app_object, config)
        self.local_gateway.event_converter = EventConverter(RouteMatcher(list(app_object.routes)),
                                                            app_object.api.binary_types)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def parse_request(self) -> bool:
        recorded = _RecordedLines(self.rfile)
        self.rfile = recorded
        try:
            if not super().parse_request():
                return False
        except TimeoutError:  # the request line came, its headers did not
            self._refuse(errors.RequestTimeout(f"The headers did not come within {self.timeout:g} s."),
                         drain=False)
            return False
        finally:
            self.rfile = recorded.source
        if any(not _FIELD_LINE.fullmatch(line) for line in recorded.read[:-1]):
            self._refuse(errors.ValidationError(
                "A header line cannot be read: send `Name: value` lines, with no space before the colon, "
                "no folded lines and no control characters."))
            return False
        return True

    def _handle(self) -> None:
        if not self._framed():
            return
        try:
            http.parse_form(urlsplit(self.path).query, "query")
        except errors.GatewayError as error:  # chalice local would decode it leniently (parse_qs)
            self._answer(error, {})
            return
        super()._generic_handle()

    def _not_served(self) -> None:
        """405 in the one shape for a method no route serves (404 off every route).

        HEAD: chalice local's answer would carry a body, which a HEAD answer must not, and
        the next request on the connection would be read wrongly. OPTIONS: chalice local
        answers an empty 200 of its own (a CORS preflight); the gateway serves no browser."""
        if not self._framed():
            return
        allowed = self._allowed()
        if not allowed:
            self._answer(errors.NotFound("No such route."), {})
            return
        self._answer(errors.MethodNotAllowed(f"{self.command} is not served on this route; use {allowed}."),
                     {"Allow": allowed})

    do_HEAD = do_OPTIONS = _not_served
    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

    def _framed(self) -> bool:
        """Reads the body; False if it cannot be, the request refused and the connection closing."""
        try:
            self._payload = self._read_body()
        except TimeoutError:
            self._refuse(errors.RequestTimeout(f"The body did not come within {self.timeout:g} s."), drain=False)
            return False
        except errors.GatewayError as error:
            self._refuse(error)
            return False
        return True

    def _read_body(self) -> bytes | None:
        """The body as its Content-Length frames it (RFC 9112 6.3), or a refusal.

        A length that is not digits, two different lengths or a Transfer-Encoding would
        leave the connection out of step (chalice local reads only Content-Length, with
        int()); a length over the gateway's limit is refused before reading."""
        if "transfer-encoding" in self.headers:
            raise errors.ValidationError("Transfer-Encoding is not served here: send the body with a Content-Length.")
        lengths = {value.strip(" \t") for value in self.headers.get_all("content-length", [])}
        if not lengths:
            return None
        text = lengths.pop()
        if lengths or not _DIGITS.fullmatch(text):
            raise errors.ValidationError("Content-Length must be one decimal number of bytes, sent once.")
        digits = text.lstrip("0")
        if len(digits) > len(str(http.MAX_BODY_BYTES)) or int(digits or "0") > http.MAX_BODY_BYTES:
            raise errors.PayloadTooLarge(f"The body is over {http.MAX_BODY_BYTES} bytes.")
        length = int(digits or "0")
        body: bytes = self.rfile.read(length)
        if len(body) < length:
            raise errors.ValidationError(f"The body ended after {len(body)} of its {length} bytes.")
        return body or None

    def _parse_payload(self) -> tuple[dict[str, str], bytes | None]:
        lines: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            lines.setdefault(name.lower(), []).append(value)
        return HeaderLines(lines), self._payload

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._refuse(self.REFUSALS.get(code) or errors.ValidationError("The request cannot be read."))

    def _refuse(self, error: errors.GatewayError, *, drain: bool = True) -> None:
        """Answer `error` and close: what is left of the request cannot be told from a next one."""
        # A request line it could not read leaves HTTP/0.9, which has no status line or headers.
        self.request_version = self.protocol_version
        headers = {"Allow": self._allowed()} if isinstance(error, errors.MethodNotAllowed) else {}
        self._answer(error, {**headers, "Connection": "close"})
        if drain:
            self._drain()

    def _send_error_response(self, error: LocalGatewayException) -> None:
        if not isinstance(error, ForbiddenError):  # the only one without authorizers: no such route
            super()._send_error_response(error)
            return
        self._answer(errors.NotFound("No such route."), {})

    def _answer(self, error: errors.GatewayError, extra: dict[str, str]) -> None:
        request_id = os.urandom(16).hex()
        status, body, headers = http.error_answer(error, request_id)
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, **extra, "Content-Type": "application/json",
                            "Content-Length": str(len(data)), "X-Request-Id": request_id}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _allowed(self) -> str:
        try:
            route = RouteMatcher(list(self._routes)).match_route(self.path).route
        except (ValueError, AttributeError):  # no such route, or no path was read
            return ""
        return ", ".join(self._routes[route])

    def _drain(self) -> None:
        """Read what the client still sends (at most 1 MiB or 2 s) before the connection closes.

        Closing a socket with unread input resets the connection, and a client still
        sending its oversized request would then lose the answer."""
        self.wfile.flush()
        self.connection.settimeout(2)
        left = 1 << 20
        try:
            while left > 0 and (chunk := self.rfile.read1(65536)):
                left -= len(chunk)
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # http.server logs the whole request line, where a caller may have put a key
        # (?api_key=, ;api_key=, %3Fapi_key=): log the method, the path proper and the
        # version only. (Its send_error, which logged the request line again as the
        # reason, is replaced.)
        words = self.requestline.split()
        # a key pasted into the path itself (/orders/sgw_...) is the caller's mistake: not logged either
        shown = words[:1] + [_CALLER_KEY.sub(KEY_PREFIX + "…", _AFTER_PATH.split(word, 1)[0]) for word in words[1:2]]
        if len(words) == 3 and words[2].startswith("HTTP/"):
            shown.append(words[2])
        self.log_message('"%s" %s %s', " ".join(shown) or "-", code, size)


class WebhookPoller:
    """make run's stand-in for Lambda's SQS event source: receives the delivery queue's
    messages from moto and hands each, as a one-record SQS event, to the SAME function
    the deployed consumer runs (app.deliver_webhooks). A message is deleted once it is
    handled; one whose handling raised comes back after the visibility timeout, and goes
    to the dead-letter queue after local.aws.MAX_RECEIVES tries, as deployed."""

    def __init__(self, sqs: Any, queue_url: str, handler: Any, wait_seconds: int = 1, batch: int = 10) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._wait = wait_seconds
        self._batch = batch

    def poll_once(self) -> int:
        """Handle what the queue has now (waiting up to `wait_seconds` for it); returns how many."""
        got = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=self._batch, WaitTimeSeconds=self._wait,
                                        AttributeNames=["All"])
        messages = got.get("Messages", [])
        for message in messages:
            record = {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                      "body": message["Body"], "attributes": message.get("Attributes", {}),
                      "eventSource": "aws:sqs"}
            try:
                self._handler({"Records": [record]}, None)
            except Exception:  # the handler logged it; like Lambda, leave the message to come back
                continue
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def run(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                self.poll_once()
            except Exception:  # moto stopping under us, on the way out
                stopped.wait(1)


# Deployed, Lambda runs one delivery per invocation (batch size 1), many at once: a slow
# subscriber holds up only its own. The local run does the same with a few pollers.
LOCAL_WEBHOOK_WORKERS = 4


def start_webhook_worker(sqs: Any, queue_url: str, stopped: threading.Event) -> threading.Thread:
    """The webhook workers (LOCAL_WEBHOOK_WORKERS pollers taking one message at a time),
    polling until `stopped` is set; the thread returned ends when they all have."""

    def handler(event: dict[str, Any], context: Any) -> Any:
        import app  # imported here: `serve` sets up the app's module path and environment first

        return app.deliver_webhooks(event, context)

    pollers = [threading.Thread(target=WebhookPoller(sqs, queue_url, handler, batch=1).run, args=(stopped,),
                                name=f"webhook-worker-{n}", daemon=True) for n in range(LOCAL_WEBHOOK_WORKERS)]

    def run_all() -> None:
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()

    thread = threading.Thread(target=run_all, name="webhook-workers", daemon=True)
    thread.start()
    return thread


def port_is_free(port: int) -> bool:
    # SO_REUSEADDR as http.server binds, so connections in TIME_WAIT do not count.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def quiet_embedded_services() -> None:
    """Keep the output to the gateway's own lines.

    moto's server (werkzeug) would give itself a handler and log every AWS call the
    gateway makes. urllib3 warns when more requests than boto3's pool of 10 run at
    once, as the threaded server allows; the extra connection is simply not kept.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").addFilter(
        lambda record: not record.getMessage().startswith("Connection pool is full"))


def banner(port: int, caller_key: str, upstream: str, aws_endpoint: str, secret_max_age: str = "60") -> str:
    base = f"http://127.0.0.1:{port}"
    ops_env = (f"AWS_ENDPOINT_URL={aws_endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
               "AWS_DEFAULT_REGION=us-east-1")
    return "\n".join([
        "smm-gateway local run",
        f"  gateway:    {base}",
        f"  upstream:   {upstream}",
        f"  AWS:        embedded (moto) at {aws_endpoint}: DynamoDB, Secrets Manager and SQS, in memory",
        "  webhooks:   delivered by worker threads in this process; " + (
            "http and loopback targets allowed" if os.environ.get("WEBHOOK_ALLOW_PRIVATE_TARGETS", "").lower() == "true"
            else "https and public targets only (WEBHOOK_ALLOW_PRIVATE_TARGETS is not true)"),
        f"  caller key: {caller_key} (every scope, no restriction)",
        "",
        f'  curl -H "X-API-Key: {caller_key}" {base}/balance',
        f"  {ops_env} .venv/bin/python -m ops callers list",
        f"  {ops_env} .venv/bin/python -m ops --json callers create dashboard --scopes orders:read --own-orders-only",
        f"  (key changes reach this run within SECRET_MAX_AGE_SECONDS={secret_max_age} s)",
        "",
        "Ctrl-C stops everything.",
    ])


if __name__ == "__main__":
    sys.exit(main())

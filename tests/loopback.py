"""Loopback HTTP(S) servers for panels the sandbox does not imitate (redirects, odd
shapes, trickles, broken TLS), still over real sockets."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import requests

TRICKLE_EVERY = 0.5  # seconds between two bytes of a trickling answer
TRICKLE_FOR = 60.0  # how long a trickle lasts if nobody hangs up


class Handler(BaseHTTPRequestHandler):
    """Reads the whole request, keeps its form, and stays quiet."""

    protocol_version = "HTTP/1.1"
    received: list[bytes]  # every request body, shared by the server's handlers
    stopped: threading.Event  # set when the test is done with the server

    def read_request(self) -> None:
        self.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[Handler], tls: ssl.SSLContext | None = None,
            received: list[bytes] | None = None) -> Iterator[tuple[str, list[bytes]]]:
    """Serve `handler` on a loopback port; yields the panel URL and the request bodies
    (kept in `received` if given)."""
    received = [] if received is None else received
    stopped = threading.Event()
    bound = type(handler.__name__, (handler,), {"received": received, "stopped": stopped})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}/api/v2", received
    finally:
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def scripted_server(status: int, body: bytes = b"", headers: dict[str, str] | None = None, *,
                    received: list[bytes] | None = None) -> Iterator[str]:
    """A loopback server answering every POST with the same status, headers and body;
    the request bodies are kept in `received` if given."""

    class Scripted(Handler):
        def do_POST(self) -> None:
            self.read_request()
            self.answer(status, body, headers)

    with serving(Scripted, received=received) as (url, _):
        yield url


@contextlib.contextmanager
def trickling_server(part: str, tls: ssl.SSLContext | None = None, *,
                     framing: str = "length") -> Iterator[tuple[str, list[bytes]]]:
    """A panel that reads the request, then sends its answer one byte every
    TRICKLE_EVERY seconds for TRICKLE_FOR seconds: `part="body"` after prompt
    headers, `part="headers"` from the status line on. Each read gets a byte long
    before any per-read timeout, so only a deadline on the whole call ends it.

    `framing`: "length", a Content-Length on a kept-alive connection; "close", a
    Content-Length with `Connection: close`; "eof", no length at all, the answer
    running until the connection closes. The last two are answers http.client
    reads after it has let go of the connection's socket."""
    size = int(TRICKLE_FOR / TRICKLE_EVERY)
    body = b'{"balance": "' + b"1" * size + b'", "currency": "USD"}'
    framing_headers = {"length": f"Content-Length: {len(body)}\r\n",
                       "close": f"Content-Length: {len(body)}\r\nConnection: close\r\n",
                       "eof": "Connection: close\r\n"}[framing]
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing_headers}"
            f"X-Padding: {'p' * size}\r\n\r\n").encode()

    class Trickling(Handler):
        def do_POST(self) -> None:
            self.read_request()
            prompt, trickled = (head, body) if part == "body" else (b"", head + body)
            try:
                self.wfile.write(prompt)
                for byte in trickled:
                    if self.stopped.wait(TRICKLE_EVERY):
                        break
                    self.wfile.write(bytes([byte]))
            except OSError:
                pass  # the client hung up: what the test wants
            self.close_connection = True

    with serving(Trickling, tls) as served:
        yield served


@contextlib.contextmanager
def tls_breaking_server(tls: ssl.SSLContext, how: str) -> Iterator[tuple[str, list[bytes]]]:
    """A TLS panel that reads the whole request, then breaks the connection instead
    of answering: `how="garbage"` writes bytes that are not TLS on the raw socket,
    `how="reset"` closes with an RST."""

    class Breaking(Handler):
        def do_POST(self) -> None:
            self.read_request()
            if how == "garbage":
                with socket.fromfd(self.connection.fileno(), socket.AF_INET, socket.SOCK_STREAM) as raw:
                    raw.sendall(b"HTTP/1.1 200 OK but not inside TLS\r\n" * 8)
            else:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def finish(self) -> None:
            if how == "reset":  # no TLS close_notify: the RST must be the first thing the client sees
                self.connection.close()
            else:
                super().finish()

    with serving(Breaking, tls) as served:
        yield served


def trusted_tls(directory: Path) -> tuple[ssl.SSLContext, requests.Session]:
    """A server TLS context with a certificate for 127.0.0.1 from a throwaway CA, and a
    session that trusts only that CA (not the environment's CA bundle, nor its proxies)."""
    import trustme

    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    bundle = directory / "panel-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    session = requests.Session()
    session.trust_env = False
    session.verify = str(bundle)
    return server, session


class Delivered:
    """One request a webhook receiver got: its headers (names lower-cased) and body."""

    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body


@contextlib.contextmanager
def webhook_receiver(statuses: list[int] | None = None, then: int = 200, *, stall: float = 0.0,
                     headers: dict[str, str] | None = None,
                     body: bytes = b"ok") -> Iterator[tuple[str, list[Delivered]]]:
    """A webhook target on loopback: the n-th POST is answered statuses[n] (then `then`),
    with `headers` and `body`, after stalling `stall` seconds (cut short when the test ends).
    Yields its URL and the requests it got."""
    got: list[Delivered] = []
    script = list(statuses or [])
    lock = threading.Lock()

    class Receiver(Handler):
        def do_POST(self) -> None:
            self.read_request()
            with lock:
                got.append(Delivered({k.lower(): v for k, v in self.headers.items()}, self.received[-1]))
                status = script.pop(0) if script else then
            if stall:
                self.stopped.wait(stall)
            try:
                self.answer(status, body, headers)
            except OSError:
                pass  # the gateway hung up (a timeout): what the test wants

    with serving(Receiver) as (url, _):
        yield url.replace("/api/v2", "/hook"), got

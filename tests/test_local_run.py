"""`make run` as a newcomer meets it: `python -m local.run` in its own process.

Each test starts the real entry point as a subprocess (its own session, so
Ctrl-C can be sent the way a terminal sends it and leftovers can be found),
talks to it over loopback HTTP with `requests`, then interrupts it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from local.aws import free_port
from local.run import port_is_free
from sandbox import SandboxPanel

ROOT = Path(__file__).resolve().parent.parent
CALLER_KEY = "sgw_local_run_caller_key_0123456789"
UPSTREAM_KEY = "upstream-key-that-must-stay-secret"
READY_WITHIN = 30.0
STOPPED_WITHIN = 10.0
HTTP_TIMEOUT = 10.0
# Settings the shared fixtures put into this process's environment (conftest's `aws`)
# must not leak into the run under test: it has to work from a bare shell.
_NOT_INHERITED = ("AWS_", "SMM_", "GATEWAY_", "CATALOGUE_", "IDEMPOTENCY_", "MAX_ORDER_",
                  "DAILY_SPEND_", "BALANCE_LOW_", "SECRET_MAX_AGE_", "PORT", "WEBHOOK_")


@dataclass
class LocalRun:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def get(self, path: str, key: str | None = CALLER_KEY, **kw: Any) -> requests.Response:
        headers = {"X-API-Key": key} if key is not None else {}
        headers.update(kw.pop("headers", {}))
        return requests.get(self.base + path, headers=headers, timeout=HTTP_TIMEOUT, **kw)

    def order(self, idempotency_key: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.base + "/orders", json=body, timeout=HTTP_TIMEOUT,
                             headers={"X-API-Key": CALLER_KEY, "Idempotency-Key": idempotency_key})

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"local.run exited with {self.process.returncode} before it was ready:\n"
                            f"{self.output()}\n{self.errors()}")
            try:
                if requests.get(self.base + "/health", timeout=HTTP_TIMEOUT).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"/health did not answer 200 within {READY_WITHIN:.0f} s:\n{self.output()}\n{self.errors()}")

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it (to the whole process group); the exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=STOPPED_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"local.run still running {STOPPED_WITHIN:.0f} s after Ctrl-C:\n{self.errors()}")


def run_starter(directory: Path, started: list[LocalRun]) -> Callable[..., LocalRun]:
    """A function starting `python -m local.run` with the given environment, noting each in `started`."""

    def start(port: int | None = None, project: Path = ROOT, sigint_ignored: bool = False,
              **environ: str) -> LocalRun:
        port = port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update(PORT=str(port), GATEWAY_API_KEY=CALLER_KEY, PYTHONUNBUFFERED="1", **environ)
        name = f"run{len(started)}"
        stdout, stderr = directory / f"{name}.out", directory / f"{name}.err"
        # Files, not pipes: a full pipe would block the server under the concurrent test.
        with stdout.open("wb") as out, stderr.open("wb") as err:
            command = [sys.executable, "-m", "local.run"]
            if sigint_ignored:  # as a shell script starts a command in the background (`make run &`)
                command = ["sh", "-c", "trap '' INT; exec \"$0\" \"$@\"", *command]
            process = subprocess.Popen(command, cwd=project, env=env,
                                       stdout=out, stderr=err, start_new_session=True)
        run = LocalRun(process, port, stdout, stderr)
        started.append(run)
        return run

    return start


def kill_all(started: list[LocalRun]) -> None:
    for run in started:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait(timeout=STOPPED_WITHIN)


@pytest.fixture
def local_run(tmp_path: Path) -> Iterator[Callable[..., LocalRun]]:
    """Starts `python -m local.run` with the given environment; kills what is left at the end."""
    started: list[LocalRun] = []
    yield run_starter(tmp_path, started)
    kill_all(started)


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One run shared by the tests of how requests are read, with a 2 s read timeout
    so that a stalled request ends quickly (each start costs seconds)."""
    started: list[LocalRun] = []
    run = run_starter(tmp_path_factory.mktemp("strict"), started)(LOCAL_READ_TIMEOUT_SECONDS="2")
    try:
        run.wait_ready()
        yield run
    finally:
        kill_all(started)


@pytest.fixture
def panel() -> Iterator[SandboxPanel]:
    """A panel outside the run, with its own key: what SMM_API_URL points at."""
    with SandboxPanel(api_key="other-key", clock=None, services=300) as sandbox:
        yield sandbox


def project_copy(dest: Path, config_environment: dict[str, str]) -> Path:
    """What `make run` needs of the project, with extra .chalice/config.json variables."""
    for package in ("chalicelib", "local", "sandbox"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "app.py", dest / "app.py")
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["environment_variables"] = {**config.get("environment_variables", {}), **config_environment}
    (dest / ".chalice").mkdir()
    (dest / ".chalice" / "config.json").write_text(json.dumps(config))
    return dest


# -- what the process owns, read from /proc ---------------------------------------


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes matched against /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def session_members(session: int) -> list[int]:
    """Pids in the session the run was started in: it and anything it spawned."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry.name))
    return members


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    return port_is_free(port)


def raw_request(run: LocalRun, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends bytes as they are (odd methods, oversized lines); the answer's status, headers, body."""
    with socket.create_connection(("127.0.0.1", run.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def banner_upstream(output: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in output.splitlines()
                if line.strip().startswith("upstream:"))


# -- tests ------------------------------------------------------------------------


def test_serves_the_gateway_on_port_and_ctrl_c_leaves_nothing_running(
        local_run: Callable[..., LocalRun]) -> None:
    # Started with SIGINT ignored, as from a script in the background: Ctrl-C still stops it.
    run = local_run(SMM_API_KEY=UPSTREAM_KEY, sigint_ignored=True)
    run.wait_ready()

    health = run.get("/health", key=None)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})

    # The key is read from X-API-Key (any case), and only from there.
    balance = run.get("/balance")
    assert balance.status_code == 200
    assert Decimal(balance.json()["balance"]) == Decimal(1000)
    assert balance.json()["currency"] == "USD"
    assert run.get("/balance", key=None, headers={"x-api-key": CALLER_KEY}).status_code == 200
    unauthorized = run.get("/balance", key=None)
    assert (unauthorized.status_code, unauthorized.json()["error"]["code"]) == (401, "unauthorized")
    assert run.get("/balance", key=None, headers={"Authorization": f"Bearer {CALLER_KEY}"}).status_code == 401
    assert run.get("/balance", key="sgw_not_a_caller").status_code == 401

    first_body = {"service": 1, "link": "https://www.instagram.com/local_run_first/", "quantity": 100}
    placed = run.order("local-run-first", first_body)
    assert placed.status_code == 201, placed.text
    replayed = run.order("local-run-first", first_body)
    assert replayed.status_code == 201
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json() == placed.json()

    # 16 threads, one key, released together: chalice local serves them concurrently
    # and the serialised moto writes let exactly one of them place the order.
    race_body = {"service": 1, "link": "https://www.instagram.com/local_run_race/", "quantity": 200}
    start = threading.Barrier(16)

    def racer(_: int) -> requests.Response:
        start.wait()
        return run.order("local-run-race", race_body)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(racer, range(16)))
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    fresh = [a for a in answers if a.status_code == 201 and a.headers.get("Idempotent-Replayed") != "true"]
    assert len(fresh) == 1
    race_id = fresh[0].json()["id"]
    assert {a.json()["id"] for a in answers if a.status_code == 201} == {race_id}
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} <= {"idempotency_in_progress"}

    ledger = run.get("/orders")
    assert ledger.status_code == 200
    listed = [(o["id"], o["idempotency_key"]) for o in ledger.json()["orders"]]
    assert sorted(listed) == sorted([(placed.json()["id"], "local-run-first"), (race_id, "local-run-race")])
    # The panel charged two orders, not seventeen.
    spent = Decimal(placed.json()["estimated_charge"]) + Decimal(fresh[0].json()["estimated_charge"])
    assert Decimal(run.get("/balance").json()["balance"]) == Decimal(1000) - spent

    # Everything runs in this one process: gateway, moto and sandbox, and no children.
    ports = listening_ports(run.process.pid)
    assert run.port in ports and len(ports) == 3
    assert session_members(run.process.pid) == [run.process.pid]

    assert run.interrupt() == 0
    assert all(port_is_closed(port) for port in ports)
    assert session_members(run.process.pid) == []

    output, errors = run.output(), run.errors()
    assert f"caller key: {CALLER_KEY}" in output
    assert f'curl -H "X-API-Key: {CALLER_KEY}" {run.base}/balance' in output
    assert banner_upstream(output).startswith("sandbox panel at http://127.0.0.1:")
    assert UPSTREAM_KEY not in output + errors
    assert "Traceback" not in errors
    # After the banner, stdout is the gateway's JSON lines (no moto or botocore chatter).
    after_banner = output.split("Ctrl-C stops everything.", 1)[1].splitlines()
    assert [line for line in after_banner if line and not line.startswith("Serving on ")
            and not line.startswith("{")] == []
    assert all(json.loads(line)["logger"].startswith("chalicelib") for line in after_banner
               if line.startswith("{"))


def test_syncs_order_statuses_every_status_sync_seconds_so_events_come_without_a_request(
        local_run: Callable[..., LocalRun]) -> None:
    # given a run syncing every second, and an order (the sandbox runs it after 5 s)
    run = local_run(STATUS_SYNC_SECONDS="1")
    run.wait_ready()
    placed = run.order("local-run-events", {"service": 1, "link": "https://www.instagram.com/p/sync/",
                                            "quantity": 100})
    assert placed.status_code == 201, placed.text

    # when nothing but the sync asks the panel
    deadline, seen = time.monotonic() + 60, []
    while time.monotonic() < deadline and "order.in_progress" not in seen:
        time.sleep(0.5)
        seen = [event["type"] for event in run.get("/events").json()["events"]]

    # then
    assert seen == ["order.in_progress", "order.created"], run.output()[-3000:]
    assert run.interrupt() == 0
    assert "Traceback" not in run.errors() + run.output()


def test_refuses_a_status_sync_interval_that_is_no_number_of_seconds(local_run: Callable[..., LocalRun]) -> None:
    run = local_run(STATUS_SYNC_SECONDS="0")
    assert run.process.wait(timeout=STOPPED_WITHIN) == 1
    assert "STATUS_SYNC_SECONDS" in run.errors()


def test_uses_the_panel_in_smm_api_url_and_starts_no_sandbox(
        local_run: Callable[..., LocalRun], panel: SandboxPanel) -> None:
    panel.set_balance(Decimal("123.45"))
    run = local_run(SMM_API_URL=panel.url, SMM_API_KEY="other-key")
    run.wait_ready()

    balance = run.get("/balance")

    assert balance.status_code == 200, balance.text
    assert Decimal(balance.json()["balance"]) == Decimal("123.45")
    assert [action for action, _ in panel.calls] == ["balance"]
    # Only the gateway and moto listen: no built-in sandbox beside the given panel.
    assert len(listening_ports(run.process.pid)) == 2
    assert run.interrupt() == 0
    output = run.output()
    assert banner_upstream(output) == panel.url
    assert "other-key" not in output + run.errors()


def test_honours_smm_timeout_seconds_even_when_the_chalice_config_sets_one(
        local_run: Callable[..., LocalRun], panel: SandboxPanel, tmp_path: Path) -> None:
    # given a config that sets the default (`chalice local` copies its variables over
    # the environment) and a panel answering after 8 s: within 10 s, not within 3 s
    # (5 s past the timeout asked for: a margin that holds on a loaded machine)
    project = project_copy(tmp_path / "project", {"SMM_TIMEOUT_SECONDS": "10"})
    panel.inject("balance", "delay", seconds=8)
    run = local_run(project=project, SMM_API_URL=panel.url, SMM_API_KEY="other-key",
                    SMM_TIMEOUT_SECONDS="3")
    run.wait_ready()

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(run.get, "/balance")
        deadline = time.monotonic() + HTTP_TIMEOUT
        while not panel.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert panel.calls, "the balance call never reached the panel"
        # While one request waits on the panel, another is answered: the server is threaded.
        assert run.get("/health", key=None).status_code == 200
        assert not slow.done()
        timed_out = slow.result()

    assert timed_out.status_code == 504, timed_out.text
    assert timed_out.json()["error"]["code"] == "upstream_timeout"
    assert run.interrupt() == 0


def test_refuses_a_busy_port_with_one_clear_line(local_run: Callable[..., LocalRun]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = local_run(port=taken.getsockname()[1])
        assert run.process.wait(timeout=READY_WITHIN) == 1

    assert f"port {run.port} on 127.0.0.1 is in use" in run.errors()
    assert "Traceback" not in run.errors()
    assert run.output() == ""


def test_answers_what_the_local_server_refuses_itself_in_the_one_error_shape_and_logs_no_query(
        local_run: Callable[..., LocalRun]) -> None:
    run = local_run()
    run.wait_ready()
    secret = "sgw_sent_in_a_query_string_0123456789"

    def refused(status: int, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        document = json.loads(body)
        assert headers["content-type"] == "application/json", headers
        assert set(document) == {"error", "request_id"} and set(document["error"]) == {"code", "message", "upstream"}
        assert document["request_id"] == headers["x-request-id"] and document["request_id"]
        assert secret not in body.decode()
        return status, document["error"]["code"]

    # an unknown route: not_found, as API Gateway is set up to answer deployed
    for path in ("/nope", f"/orders/1/nope?api_key={secret}", "/"):
        answer = run.get(path)
        assert refused(answer.status_code, dict(answer.headers.lower_items()), answer.content) == (
            404, "not_found"), path
    assert requests.delete(run.base + "/nope", timeout=HTTP_TIMEOUT).status_code == 404

    # a method nothing serves, known or not to http.server
    for method in ("TRACE", "CONNECT", "FOO"):
        target = "127.0.0.1:443" if method == "CONNECT" else f"/balance?api_key={secret}"
        status, headers, body = raw_request(run, f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert refused(status, headers, body) == (405, "method_not_allowed"), method
    assert raw_request(run, b"FOO /balance HTTP/1.1\r\nHost: x\r\n\r\n")[1]["allow"] == "GET"

    # a request line, a header line or a header count over http.server's limits
    long_uri = f"GET /balance?api_key={secret}&pad={'a' * 70_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert refused(*raw_request(run, long_uri)) == (414, "uri_too_long")
    long_header = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 70_000}\r\n\r\n".encode()
    assert refused(*raw_request(run, long_header)) == (431, "headers_too_large")
    # http.server reads at most 99 header lines (its count of 100 includes the blank line)
    many = "".join(f"X-Pad-{n}: {n}\r\n" for n in range(100))
    assert refused(*raw_request(run, f"GET /health HTTP/1.1\r\n{many}\r\n".encode())) == (
        431, "headers_too_large")
    assert raw_request(run, f"GET /health HTTP/1.1\r\n{many[many.index('X-Pad-1:'):]}\r\n".encode())[0] == 200
    # a malformed request line: validation_error, its text not echoed
    for bad_line in (f"GET /balance?api_key={secret} HTTP/1.1 extra", f"GET /balance ?api_key={secret} HTTP/1.1"):
        assert refused(*raw_request(run, f"{bad_line}\r\n\r\n".encode())) == (400, "validation_error")
    # a key after the path proper, as path parameters or a percent-encoded "?"
    for path in (f"/health;api_key={secret}", f"/health%3Fapi_key={secret}", f"/health%3fapi_key={secret}"):
        answer = run.get(path, key=None)
        assert secret not in answer.text, path
    # a gateway key pasted into the path itself (the caller's mistake)
    pasted = "sgw_" + "k" * 43
    assert run.get(f"/orders/{pasted}").status_code == 400
    # and still serving
    assert run.get(f"/health?api_key={secret}", key=None).status_code == 400
    assert run.get("/health", key=None).status_code == 200

    assert run.interrupt() == 0
    # the access lines keep method, path and status, never a query string
    log = run.output() + run.errors()
    assert secret not in log and pasted not in log
    assert '"GET /orders/1/nope HTTP/1.1" 404' in log
    assert '"GET /orders/sgw_… HTTP/1.1" 400' in log
    assert '"FOO /balance HTTP/1.1" 405' in log
    assert '"GET /health HTTP/1.1" 400' in log and '"GET /health HTTP/1.1" 200' in log
    assert "Traceback" not in log


def test_a_content_type_in_any_case_or_with_parameters_is_served_by_the_local_run(
        local_run: Callable[..., LocalRun]) -> None:
    # chalice local matches a route's content types itself (415 before the view):
    # it must accept what the gateway reads as a form or as JSON.
    run = local_run()
    run.wait_ready()
    headers = {"X-API-Key": CALLER_KEY}

    form = requests.post(run.base + "/orders", data="service=1&link=https://x.com/local-form&quantity=100",
                         headers={**headers, "Idempotency-Key": "local-form",
                                  "Content-Type": "APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8"},
                         timeout=HTTP_TIMEOUT)
    json_order = requests.post(run.base + "/orders", timeout=HTTP_TIMEOUT,
                               data=json.dumps({"service": 1, "link": "https://x.com/local-json", "quantity": 100}),
                               headers={**headers, "Idempotency-Key": "local-json",
                                        "Content-Type": "Application/JSON; Charset=UTF-8"})

    assert (form.status_code, form.json()["quantity"]) == (201, 100), form.text
    assert (json_order.status_code, json_order.json()["quantity"]) == (201, 100), json_order.text
    assert run.interrupt() == 0


def test_a_header_sent_twice_is_decided_by_its_lines_as_deployed(local_run: Callable[..., LocalRun]) -> None:
    # http.client, because requests cannot send one header twice.
    run = local_run()
    run.wait_ready()

    def send(method: str, path: str, *lines: tuple[str, str], body: bytes = b"") -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", run.port, timeout=HTTP_TIMEOUT)
        try:
            connection.putrequest(method, path)
            for name, value in [*lines, *([("Content-Length", str(len(body)))] if body else [])]:
                connection.putheader(name, value)
            connection.endheaders(body or None)
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    def balance(*lines: tuple[str, str]) -> int:
        return send("GET", "/balance", *lines)[0]

    assert balance(("X-API-Key", CALLER_KEY)) == 200
    assert balance(("X-API-Key", f" {CALLER_KEY} \t")) == 200  # OWS is not part of the value
    # chalice local's dict(headers) kept the first line and hid the second
    assert balance(("X-API-Key", CALLER_KEY), ("X-API-Key", "sgw_wrong")) == 401
    assert balance(("X-API-Key", "sgw_wrong"), ("X-API-Key", CALLER_KEY)) == 401
    assert balance(("X-API-Key", CALLER_KEY), ("x-api-key", CALLER_KEY)) == 401

    # An Idempotency-Key sent twice is refused, not read as the new key "zap-77, zap-77":
    # a tool that duplicated the header and retries with one line orders once.
    order = json.dumps({"service": 1, "link": "https://x.com/local-zap-77", "quantity": 100}).encode()
    keyed = [("X-API-Key", CALLER_KEY), ("Content-Type", "application/json")]
    status, refused = send("POST", "/orders", *keyed, ("Idempotency-Key", "zap-77"), ("Idempotency-Key", "zap-77"),
                           body=order)
    assert (status, refused["error"]["code"]) == (400, "validation_error"), refused
    assert "once" in refused["error"]["message"]
    placed = send("POST", "/orders", *keyed, ("Idempotency-Key", "zap-77"), body=order)
    retried = send("POST", "/orders", *keyed, ("Idempotency-Key", "zap-77"), body=order)
    assert (placed[0], retried[0], retried[1]["id"]) == (201, 201, placed[1]["id"]), (placed, retried)
    assert [o["idempotency_key"] for o in run.get("/orders").json()["orders"]] == ["zap-77"]
    assert run.interrupt() == 0


def exchange(run: LocalRun, data: bytes, *, finish: bool = True, within: float = HTTP_TIMEOUT) -> bytes:
    """Sends bytes as they are and reads until the server closes; with `finish`, says it
    sends no more (else the server must end the connection itself, within `within` s)."""
    with socket.create_connection(("127.0.0.1", run.port), timeout=within) as sock:
        sock.sendall(data)
        if finish:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def answers(received: bytes) -> list[tuple[int, str]]:
    """The status and error code of each answer in what a connection received."""
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = int(next(line.split(":", 1)[1] for line in lines if line.lower().startswith("content-length:")))
        body, received = rest[:length], rest[length:]
        status, document = int(lines[0].split()[1]), json.loads(body)
        if status >= 400:
            assert set(document) == {"error", "request_id"}, document
        found.append((status, document["error"]["code"] if status >= 400 else ""))
    return found


ORDER = json.dumps({"service": 1, "link": "https://x.com/local-framing", "quantity": 100})


def order_request(*headers: str, body: str = ORDER) -> bytes:
    head = "".join(f"{line}\r\n" for line in ("POST /orders HTTP/1.1", "Host: x", f"X-API-Key: {CALLER_KEY}",
                                              "Content-Type: application/json", "Idempotency-Key: framing",
                                              *headers))
    return f"{head}\r\n{body}".encode()


def test_a_body_is_framed_by_one_decimal_content_length_or_refused_and_the_connection_closed(
        strict_run: LocalRun) -> None:
    # Lengths that are not one decimal number: one answer, then the connection closes.
    for length in ("abc", f"+{len(ORDER)}", f"{len(ORDER)}, {len(ORDER)}", f" 0x{len(ORDER):x}"):
        assert answers(exchange(strict_run, order_request(f"Content-Length: {length}"))) == [
            (400, "validation_error")], length
    assert answers(exchange(strict_run, order_request(f"Content-Length: {len(ORDER)}", "Content-Length: 3"))) == [
        (400, "validation_error")]
    # Over the body limit: 413 before reading it, however many digits.
    for length in ("99999999999999999999", "1000000000", str(256 * 1024 + 1), "9" * 5000):
        assert answers(exchange(strict_run, order_request(f"Content-Length: {length}"))) == [
            (413, "payload_too_large")], length[:20]
    # A chunked body is refused, and its chunks are not read as a next request.
    chunked = f"{len(ORDER):x}\r\n{ORDER}\r\n0\r\n\r\n"
    assert answers(exchange(strict_run, order_request("Transfer-Encoding: chunked", body=chunked))) == [
        (400, "validation_error")]
    # A body shorter than its length is refused, not read as far as it goes.
    assert answers(exchange(strict_run, order_request(f"Content-Length: {len(ORDER) + 10}"))) == [
        (400, "validation_error")]
    # None of it placed an order; the same length sent twice is one length.
    assert strict_run.get("/orders").json()["orders"] == []
    placed = exchange(strict_run, order_request(f"Content-Length: {len(ORDER)}", f"Content-Length: {len(ORDER)}"))
    assert answers(placed)[0][0] == 201
    assert "Traceback" not in strict_run.errors()


def test_a_request_that_stops_coming_ends_after_the_read_timeout(strict_run: LocalRun) -> None:
    # given a run whose read timeout is 2 s, and requests that stop part way
    stalled = {"in the request line": (b"GET /balance HTTP/1.1", []),
               "in the headers": (b"GET /balance HTTP/1.1\r\nHost: x\r\n", [(408, "request_timeout")]),
               "in the body": (order_request(f"Content-Length: {len(ORDER) + 10}"), [(408, "request_timeout")])}
    for case, (sent, expected) in stalled.items():
        started = time.monotonic()
        # when the client waits for the server (for up to 30 s)
        received = exchange(strict_run, sent, finish=False, within=30)
        # then the server ends the connection well before that, answering 408 once it has a request
        assert answers(received) == expected, case
        assert time.monotonic() - started < 25, case


def test_a_header_line_the_standard_parser_reads_leniently_is_refused(strict_run: LocalRun) -> None:
    # http.server's parser stopped at a space before the colon, split a line at a bare
    # CR (a second header), and unfolded a folded line.
    for line in (f"X-API-Key : {CALLER_KEY}", f"X-Note: a\rX-API-Key: {CALLER_KEY}", "X-Note: a\r\n X-API-Key",
                 "X-Note: a\x00b"):
        sent = f"GET /balance HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n".encode()
        assert answers(exchange(strict_run, sent)) == [(400, "validation_error")], line
    sent = f"GET /balance HTTP/1.1\r\nHost: x\r\nX-API-Key:{CALLER_KEY}\r\nX-Note: caf\xe9 \t!\r\n\r\n"
    assert answers(exchange(strict_run, sent.encode("latin-1")))[0][0] == 200


def test_a_query_that_is_not_percent_encoded_utf8_is_refused_naming_the_parameter(strict_run: LocalRun) -> None:
    # Sent raw: requests would rewrite "%zz" as "%25zz".
    for path, name in (("/services?q=%ff", "q"), ("/services?q=%zz", "q"), ("/services?q=%ED%A0%80", "q"),
                       ("/orders?ids=%ED%A0%80", "ids")):
        sent = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {CALLER_KEY}\r\n\r\n".encode()
        received = exchange(strict_run, sent)
        assert answers(received) == [(400, "validation_error")], path
        message = json.loads(received.partition(b"\r\n\r\n")[2])["error"]["message"]
        assert message.startswith(f"{name}: ") and "\ufffd" not in message, message
    assert strict_run.get("/services?q=%C3%A9").status_code == 200


def test_head_is_answered_without_a_body_so_the_connection_stays_in_step(strict_run: LocalRun) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", strict_run.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("HEAD", "/balance", headers={"X-API-Key": CALLER_KEY})
        head = connection.getresponse()
        assert (head.status, head.getheader("Allow"), head.read()) == (405, "GET", b"")
        connection.request("HEAD", "/nope")
        missing = connection.getresponse()
        assert (missing.status, missing.read()) == (404, b"")
        # the next request on the same connection is read from its own first byte
        connection.request("GET", "/health")
        health = connection.getresponse()
        assert (health.status, json.loads(health.read())) == (200, {"status": "ok"})
    finally:
        connection.close()


def test_options_is_a_method_not_allowed_in_the_one_shape(strict_run: LocalRun) -> None:
    # chalice local would answer an empty 200 of its own (a CORS preflight)
    answer = requests.options(strict_run.base + "/orders", timeout=HTTP_TIMEOUT)

    assert answer.status_code == 405 and set(answer.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert answer.json()["error"]["code"] == "method_not_allowed" and answer.headers["X-Request-Id"]


def test_a_loopback_receiver_subscribed_to_the_local_run_gets_signed_deliveries_and_ctrl_c_stops_the_worker(
        local_run: Callable[..., LocalRun]) -> None:
    from standardwebhooks.webhooks import Webhook as Verifier

    from tests.loopback import webhook_receiver

    run = local_run()
    run.wait_ready()
    key = {"X-API-Key": CALLER_KEY}
    with webhook_receiver() as (url, got):
        # http and loopback are allowed under make run (WEBHOOK_ALLOW_PRIVATE_TARGETS=true)
        created = requests.post(run.base + "/webhooks", json={"url": url, "events": ["*"]}, headers=key,
                                timeout=HTTP_TIMEOUT)
        assert created.status_code == 201, created.text
        webhook = created.json()
        sent = requests.post(f"{run.base}/webhooks/{webhook['id']}/test", headers=key, timeout=HTTP_TIMEOUT)
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + READY_WITHIN  # the worker thread polls moto's SQS: seconds, not minutes
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)

    assert len(got) == 1, run.errors()
    assert Verifier(webhook["secret"]).verify(got[0].body, got[0].headers)["id"] == sent.json()["id"]
    assert run.interrupt() == 0
    assert "Traceback" not in run.errors()


def test_a_key_made_with_the_banners_ops_environment_works_at_the_run_with_its_scopes(
        local_run: Callable[..., LocalRun]) -> None:
    # given a run that re-reads its secret at once, and the environment its banner prints for ops
    run = local_run(SECRET_MAX_AGE_SECONDS="0")
    run.wait_ready()
    line = next(line for line in run.output().splitlines() if "python -m ops callers list" in line)
    ops_env = dict(word.split("=", 1) for word in line.split() if "=" in word)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)} | ops_env

    # when an operator makes a read-only key with it
    made = subprocess.run([sys.executable, "-m", "ops", "--json", "callers", "create", "dashboard",
                           "--scopes", "orders:read"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)

    # then the run knows the key, and what it may not do
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert run.get("/orders", key=key).status_code == 200
    refused = run.get("/balance", key=key)
    assert refused.status_code == 403 and refused.json()["error"]["details"] == {"required_scope": "balance:read"}
    assert run.get("/balance").status_code == 200  # GATEWAY_API_KEY keeps every scope
    assert "SECRET_MAX_AGE_SECONDS=0 s" in run.output()
    assert run.interrupt() == 0

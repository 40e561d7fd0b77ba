"""A small, faithful API v2 panel on loopback HTTP, so the gateway is always tested
against real sockets, real answer shapes and the failures real panels show.

Orders move by the panel's clock (injectable; `clock=None` gives a manual one that
only `advance()` moves), seconds since the order was placed:

    0 ---- Pending ---- 5 ---------- In progress ---------- 30 ---- Completed
                                 (remains falls linearly)         or Partial (service id % 7 == 0)

A cancel accepted at time t freezes delivery at t and turns the order Canceled at
t + 2, refunding what was not delivered. Refills: Pending to 5 s, In progress to
20 s, then Completed. State is settled lazily, when a request looks at it, so
refunds happen exactly once and no background thread is needed.
"""

from __future__ import annotations

import copy
import functools
import hmac
import json
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping, TypeVar
from urllib.parse import parse_qsl, urlsplit

from sandbox.catalogue import INCORRECT_REQUEST, MONEY_PLACES, Catalogue, Refusal, placement

DEFAULT_KEY = "sandbox-key"
API_PATH = "/api/v2"
CURRENCY = "USD"
FIRST_ORDER_ID = 23501
MAX_BATCH = 100

PENDING_FOR = 5.0  # seconds an order stays Pending
DONE_AT = 30.0  # seconds after which it is Completed (or Partial)
CANCEL_TAKES = 2.0  # seconds between an accepted cancel and Canceled
REFILL_PENDING_FOR = 5.0
REFILL_DONE_AT = 20.0
ACTIVE = frozenset({"Pending", "In progress", "Processing"})
FINAL = frozenset({"Completed", "Partial", "Canceled"})

_T = TypeVar("_T")

FAULTS = frozenset({"delay", "html_502", "html_200", "truncated_json", "reset", "http_500", "error"})

_BAD_GATEWAY = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
"""
_CHALLENGE = b"""<!DOCTYPE html>
<html lang="en-US"><head><title>Just a moment...</title></head>
<body><h1>Checking your browser before accessing the site.</h1>
<p>This process is automatic. Your browser will redirect to your requested content shortly.</p>
<p>DDoS protection by Cloudflare</p></body></html>
"""
_NOT_FOUND = b"""<html>
<head><title>404 Not Found</title></head>
<body>
<center><h1>404 Not Found</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""


@dataclass
class Order:
    """An order as the panel keeps it; `status` and `remains` are as of the last look."""

    id: int
    service: int
    link: str
    quantity: int
    charge: Decimal
    created_at: float
    start_count: int
    status: str = "Pending"
    remains: int = 0
    refunded: Decimal = Decimal(0)
    cancel_requested_at: float | None = None
    runs: int | None = None
    interval: int | None = None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Refill:
    id: int
    order: int
    created_at: float


@dataclass
class _State:
    """Everything a request can change, in one object so a dry run can copy it."""

    balance: Decimal
    orders: dict[int, Order] = field(default_factory=dict)
    refills: dict[int, Refill] = field(default_factory=dict)
    unsettled: set[int] = field(default_factory=set)  # orders not yet in a final status
    next_order: int = FIRST_ORDER_ID
    next_refill: int = 1


@dataclass
class _Fault:
    action: str
    kind: str
    times: int
    seconds: float
    after_commit: bool
    text: str | None


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    reset: bool = False  # drop the connection instead of answering


class SandboxPanel:
    """An API v2 panel serving on loopback; see the module docstring for its timeline."""

    def __init__(self, api_key: str = DEFAULT_KEY, balance: Decimal = Decimal("1000"),
                 services: int = 3000, seed: int = 1,
                 clock: Callable[[], float] | None = time.monotonic,
                 one_order_per_link: bool = True) -> None:
        self._key = api_key
        self._catalogue = _catalogue(services, seed)
        self._manual = clock is None
        self._now = 0.0  # the manual clock
        self._clock: Callable[[], float] = clock if clock is not None else (lambda: self._now)
        self._one_order_per_link = one_order_per_link
        self._lock = threading.Lock()
        self._state = _State(Decimal(balance))
        self._faults: list[_Fault] = []
        self._calls: list[tuple[str, dict[str, str]]] = []
        self._add_calls_by_link: dict[str, int] = {}
        self._add_calls = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._released = threading.Event()  # set: every delay now being served ends

    # -- running -------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError("the sandbox panel is already started")
        self._server = _Server((host, port), self)
        # A short poll so stop() returns at once: shutdown() waits for the next poll.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="sandbox-panel", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.release_delays()  # a stalled handler must not outlive the panel
        server.shutdown()
        server.close_all()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> SandboxPanel:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox panel is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{API_PATH}"

    # -- what tests look at and steer -------------------------------------------

    @property
    def add_calls(self) -> int:
        with self._lock:
            return self._add_calls

    @property
    def add_calls_by_link(self) -> dict[str, int]:
        with self._lock:
            return dict(self._add_calls_by_link)

    @property
    def calls(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return list(self._calls)

    @property
    def balance(self) -> Decimal:
        with self._lock:
            self._settle_all()
            return self._state.balance

    def set_balance(self, amount: Decimal) -> None:
        with self._lock:
            self._state.balance = Decimal(amount)

    @property
    def orders(self) -> dict[int, Order]:
        with self._lock:
            self._settle_all()
            return dict(self._state.orders)

    def inject(self, action: str, fault: str, *, times: int = 1, seconds: float = 0.0,
               after_commit: bool = False, text: str | None = None) -> None:
        """Make the next `times` requests of `action` ("*" for any) fail with `fault`."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if fault == "error" and text is None:
            raise ValueError("the 'error' fault needs the error text")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Fault(action, fault, times, seconds, after_commit, text))

    def release_delays(self) -> None:
        """End every `delay` fault now being served, as if its time were up. A test that
        must see a timeout can stall the panel far longer than the timeout and still not
        wait for the stall; stop() does this too."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def advance(self, seconds: float) -> None:
        if not self._manual:
            raise RuntimeError("advance() needs a panel built with clock=None")
        with self._lock:
            self._now += seconds

    # -- one request ---------------------------------------------------------

    def handle(self, params: Mapping[str, str]) -> Reply:
        """Answer one POST to the API path, faults included (called by the HTTP handler)."""
        action = params.get("action", "")
        with self._lock:
            self._calls.append((action, {k: v for k, v in params.items() if k != "key"}))
            if action == "add":
                self._add_calls += 1
                if "link" in params:
                    link = params["link"]
                    self._add_calls_by_link[link] = self._add_calls_by_link.get(link, 0) + 1
            fault = self._take_fault(action)
            released = self._released

        if fault is None:
            return self._json_reply(self._answer(params, commit=True))
        if fault.kind == "delay":
            # Before the commit the client may give up with nothing placed; after it, the
            # order exists although the client never hears so (upstream-api.md, last section).
            if not fault.after_commit:
                released.wait(fault.seconds)
            reply = self._json_reply(self._answer(params, commit=True))
            if fault.after_commit:
                released.wait(fault.seconds)
            return reply
        answer = self._answer(params, commit=fault.after_commit) if (
            fault.after_commit or fault.kind == "truncated_json") else b""
        return _faulty_reply(fault, answer)

    def _take_fault(self, action: str) -> _Fault | None:
        for fault in self._faults:
            if fault.action in (action, "*"):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _json_reply(body: bytes) -> Reply:
        return Reply(200, "application/json", body)

    def _answer(self, params: Mapping[str, str], *, commit: bool) -> bytes:
        """The JSON the panel answers; with commit=False, computed on a copy and forgotten."""
        with self._lock:
            saved = None if commit else copy.deepcopy(self._state)
            try:
                return self._dispatch(params)
            finally:
                if saved is not None:
                    self._state = saved

    def _dispatch(self, params: Mapping[str, str]) -> bytes:
        if not hmac.compare_digest(params.get("key", "").encode(), self._key.encode()):
            return _encode({"error": "Invalid API key"})
        if params.get("action") == "services":
            return self._catalogue.body
        actions: dict[str, Callable[[Mapping[str, str], float], object]] = {
            "balance": self._balance, "add": self._add, "status": self._status,
            "refill": self._refill, "refill_status": self._refill_status, "cancel": self._cancel,
        }
        act = actions.get(params.get("action", ""))
        if act is None:
            return _encode({"error": INCORRECT_REQUEST})
        now = self._clock()
        self._settle_all(now)
        try:
            return _encode(act(params, now))
        except Refusal as refusal:
            return _encode({"error": str(refusal)})

    # -- actions (called under the lock, state settled to `now`) -------------

    def _balance(self, params: Mapping[str, str], now: float) -> object:
        return {"balance": _money(self._state.balance), "currency": CURRENCY}

    def _add(self, params: Mapping[str, str], now: float) -> object:
        raw_service = params.get("service", "").strip()
        if not raw_service:
            raise Refusal(INCORRECT_REQUEST)
        service = self._catalogue.get(raw_service)
        if service is None:
            raise Refusal("Incorrect service ID")
        placed = placement(service, params)
        state = self._state
        if self._one_order_per_link and placed.link and any(
                o.link == placed.link and o.status in ACTIVE for o in state.orders.values()):
            raise Refusal("You have active order with this link")
        if state.balance < placed.charge:
            raise Refusal("Not enough funds on balance")
        state.balance -= placed.charge
        order_id = state.next_order
        state.next_order += 1
        state.orders[order_id] = Order(
            id=order_id, service=service.id, link=placed.link, quantity=placed.quantity,
            charge=placed.charge, created_at=now, start_count=1000 + order_id * 7919 % 9000,
            remains=placed.quantity, runs=placed.runs, interval=placed.interval,
            fields=placed.fields)
        state.unsettled.add(order_id)
        return {"order": order_id}

    def _status(self, params: Mapping[str, str], now: float) -> object:
        if "orders" in params:
            ids = _batch(params["orders"])
            return {raw: self._order_view(raw) for raw in ids}
        if "order" in params:
            view = self._order_view(params["order"].strip())
            if "error" in view:
                raise Refusal(str(view["error"]))
            return view
        raise Refusal(INCORRECT_REQUEST)

    def _order_view(self, raw: str) -> dict[str, object]:
        order = _find(self._state.orders, raw)
        if order is None:
            return {"error": "Incorrect order ID"}
        unknown = order.status == "Pending" and order.service % 11 == 0
        return {"charge": _money(order.charge - order.refunded),
                "start_count": str(order.start_count), "status": order.status,
                "remains": "Unknown" if unknown else str(order.remains), "currency": CURRENCY}

    def _refill(self, params: Mapping[str, str], now: float) -> object:
        # `orders=` here CREATES refills: the erratum in upstream-api.md is exactly that
        # the panel page showed this call as "status of several refills".
        if "orders" in params:
            return [{"order": _number(raw), "refill": self._create_refill(raw, now)}
                    for raw in _batch(params["orders"])]
        if "order" in params:
            created = self._create_refill(params["order"].strip(), now)
            if isinstance(created, dict):
                raise Refusal(str(created["error"]))
            return {"refill": str(created)}
        raise Refusal(INCORRECT_REQUEST)

    def _create_refill(self, raw: str, now: float) -> int | dict[str, str]:
        order = _find(self._state.orders, raw)
        if order is None:
            return {"error": "Incorrect order ID"}
        service = self._catalogue.services[order.service]
        if not service.refill or order.status not in ("Completed", "Partial"):
            return {"error": "Order not eligible for refill"}
        refill_id = self._state.next_refill
        self._state.next_refill += 1
        self._state.refills[refill_id] = Refill(refill_id, order.id, now)
        return refill_id

    def _refill_status(self, params: Mapping[str, str], now: float) -> object:
        if "refills" in params:
            return [{"refill": _number(raw), "status": self._refill_view(raw, now)}
                    for raw in _batch(params["refills"])]
        if "refill" in params:
            status = self._refill_view(params["refill"].strip(), now)
            if isinstance(status, dict):
                raise Refusal(status["error"])
            return {"status": status}
        raise Refusal(INCORRECT_REQUEST)

    def _refill_view(self, raw: str, now: float) -> str | dict[str, str]:
        refill = _find(self._state.refills, raw)
        if refill is None:
            return {"error": "Refill not found"}
        age = now - refill.created_at
        if age < REFILL_PENDING_FOR:
            return "Pending"
        return "In progress" if age < REFILL_DONE_AT else "Completed"

    def _cancel(self, params: Mapping[str, str], now: float) -> object:
        if "orders" not in params:
            raise Refusal(INCORRECT_REQUEST)
        return [{"order": _number(raw), "cancel": self._request_cancel(raw, now)}
                for raw in _batch(params["orders"])]

    def _request_cancel(self, raw: str, now: float) -> int | dict[str, str]:
        order = _find(self._state.orders, raw)
        if order is None:
            return {"error": "Incorrect order ID"}
        cancellable = self._catalogue.services[order.service].cancel
        if not cancellable or order.status not in ACTIVE or order.cancel_requested_at is not None:
            return {"error": "Cannot cancel order"}
        order.cancel_requested_at = now
        return 1

    # -- the timeline --------------------------------------------------------

    def _settle_all(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        for order_id in list(self._state.unsettled):
            order = self._state.orders[order_id]
            self._settle(order, now)
            if order.status in FINAL:
                self._state.unsettled.discard(order_id)

    def _settle(self, order: Order, now: float) -> None:
        """Bring `order` to `now` on the timeline, refunding once when it ends short."""
        frozen = order.cancel_requested_at
        age = (now if frozen is None else min(now, frozen)) - order.created_at
        shortfall = max(1, order.quantity // 4) if order.service % 7 == 0 else 0
        target = order.quantity - shortfall
        if age < PENDING_FOR:
            status, delivered = "Pending", 0
        elif age < DONE_AT:
            status = "In progress"
            delivered = int(target * (age - PENDING_FOR) / (DONE_AT - PENDING_FOR))
        else:
            status, delivered = ("Partial" if shortfall else "Completed"), target
        order.status, order.remains = status, order.quantity - delivered
        if frozen is not None and now >= frozen + CANCEL_TAKES:
            order.status = "Canceled"
        if order.status in ("Canceled", "Partial"):
            refund = (order.charge * order.remains / order.quantity).quantize(
                MONEY_PLACES, rounding=ROUND_DOWN)
            order.refunded = refund
            self._state.balance += refund


@functools.lru_cache(maxsize=8)
def _catalogue(size: int, seed: int) -> Catalogue:
    # Shared between panels (it is never changed): tests build a panel per test.
    return Catalogue(size, seed)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs under concurrent tests: 1 s stalls

    def __init__(self, address: tuple[str, int], panel: SandboxPanel) -> None:
        self.panel = panel
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        # Tracked so stop() can also end idle keep-alive connections.
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        self.server_close()
        with self._connections_lock:
            for connection in list(self._connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        # Clients that time out and hang up are the point of the faults, not news;
        # anything else is a sandbox bug and should be seen.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    # Without TCP_NODELAY a keep-alive answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server
    timeout = 60  # seconds an idle keep-alive connection is kept

    def do_GET(self) -> None:
        if urlsplit(self.path).path != API_PATH:
            self._send(Reply(404, "text/html", _NOT_FOUND))
        else:
            self._send(Reply(200, "application/json", _encode({"error": INCORRECT_REQUEST})))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if urlsplit(self.path).path != API_PATH:
            self._send(Reply(404, "text/html", _NOT_FOUND))
            return
        self._send(self.server.panel.handle(_params(body, self.headers.get("Content-Type", ""))))

    def _send(self, reply: Reply) -> None:
        if reply.reset:
            # SO_LINGER 0 turns close() into a RST: the client sees "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the test output


def _params(body: bytes, content_type: str) -> dict[str, str]:
    """Form fields (last one wins, as in PHP), or the fields of a JSON object body."""
    text = body.decode("utf-8", "replace")
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return {str(k): _text(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(text, keep_blank_values=True))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return "\n".join(_text(item) for item in value)
    return "" if value is None else str(value)


def _faulty_reply(fault: _Fault, answer: bytes) -> Reply:
    if fault.kind == "html_502":
        return Reply(502, "text/html; charset=UTF-8", _BAD_GATEWAY)
    if fault.kind == "html_200":
        return Reply(200, "text/html; charset=UTF-8", _CHALLENGE)
    if fault.kind == "truncated_json":
        return Reply(200, "application/json", answer[: len(answer) // 2])
    if fault.kind == "reset":
        return Reply(0, "", b"", reset=True)
    if fault.kind == "http_500":
        return Reply(500, "application/json", _encode({"error": "Internal error"}))
    return Reply(200, "application/json", _encode({"error": fault.text}))


def _batch(raw: str) -> list[str]:
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if not ids or len(ids) > MAX_BATCH:
        raise Refusal(INCORRECT_REQUEST)
    return ids


def _find(table: Mapping[int, _T], raw: str) -> _T | None:
    """The entry with id `raw`; ids that are not numbers match nothing."""
    number = _number(raw)
    return table.get(number) if isinstance(number, int) else None


def _number(raw: str) -> int | str:
    """An id as list answers show it: a number when it is one, else as sent."""
    return int(raw) if raw.isascii() and raw.isdigit() else raw


def _money(amount: Decimal) -> str:
    return str(amount.quantize(MONEY_PLACES))


def _encode(answer: object) -> bytes:
    return json.dumps(answer).encode()

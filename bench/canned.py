"""A panel inside the process: a `requests` transport adapter that answers canned bytes.

Mounted on the gateway's own `requests.Session`, it replaces only the socket: the
gateway still builds and encodes the form, and reads the answer through urllib3's
response and `iter_content`, as it would from a real panel. Answers are prepared
before timing starts, so almost nothing of the panel's own work is timed.
"""

from __future__ import annotations

import io
import itertools
import json
from typing import Any, Iterable
from urllib.parse import parse_qsl

import requests.adapters
from urllib3 import HTTPResponse

PANEL_URL = "http://panel.bench.invalid/api/v2"  # .invalid: never resolvable, so never sent
STATUSES = ("Pending", "In progress", "Completed", "Partial", "Canceled")
MAX_CACHED = 2000  # answers kept by request body


def status_of(order_id: int) -> dict[str, Any]:
    """A panel status object, varied by id the way a real account's orders vary."""
    return {"charge": f"{order_id % 97}.{order_id % 100000:05d}", "start_count": str(order_id % 5000),
            "status": STATUSES[order_id % len(STATUSES)], "remains": str(order_id % 300), "currency": "USD"}


class CannedPanel(requests.adapters.HTTPAdapter):
    """Answers API v2 calls from prepared bytes; counts calls by action."""

    def __init__(self, services: bytes, balance: bytes = b'{"balance": "100.84292", "currency": "USD"}') -> None:
        super().__init__()
        self._services = services
        self._balance = balance
        self._by_body: dict[str, bytes] = {}  # multi-status answers by the `orders` text
        self._by_request: dict[str, tuple[str, bytes]] = {}  # (action, answer) by request body
        self._order_ids = itertools.count(23501)
        self.calls: dict[str, int] = {}

    def prepare_statuses(self, ids: Iterable[int]) -> None:
        """Pre-encode the multi-status answers for these chunks of ids (keyed by the `orders` text)."""
        for chunk in _chunks(list(ids), 100):
            text = ",".join(map(str, chunk))
            self._by_body[text] = json.dumps({str(i): status_of(i) for i in chunk}).encode()

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body if isinstance(request.body, str) else (request.body or b"").decode()
        known = self._by_request.get(body)
        if known is None:
            form = dict(parse_qsl(body))
            known = (form.get("action", ""), self._answer(form.get("action", ""), form))
            # Every add is a new order; multi-status answers are large and prepared apart; the
            # cache is bounded so that the memory figure measures the gateway, not this panel.
            if known[0] != "add" and "orders" not in form and len(self._by_request) < MAX_CACHED:
                self._by_request[body] = known
        self.calls[known[0]] = self.calls.get(known[0], 0) + 1
        raw = HTTPResponse(body=io.BytesIO(known[1]), status=200, reason="OK",
                           headers={"Content-Type": "application/json"}, preload_content=False,
                           decode_content=True)
        return self.build_response(request, raw)

    def _answer(self, action: str, form: dict[str, str]) -> bytes:
        if action == "services":
            return self._services
        if action == "balance":
            return self._balance
        if action == "status" and "order" in form:
            return json.dumps(status_of(int(form["order"]))).encode()
        if action == "status" and "orders" in form:
            prepared = self._by_body.get(form["orders"])
            if prepared is not None:
                return prepared
            return json.dumps({i: status_of(int(i)) for i in form["orders"].split(",")}).encode()
        if action == "add":
            return b'{"order": %d}' % next(self._order_ids)
        return b'{"error": "Incorrect request"}'


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]

"""The only code that talks to the panel.

Every call is a form-encoded POST of `key`, `action` and parameters to one URL.
This module turns what comes back — JSON, `{"error": ...}` with HTTP 200, HTML from
a CDN, a reset, silence — into normalised results or one of the errors in
`chalicelib.errors`, through a single mapping. Reads are retried with capped,
jittered backoff; `add`, `refill` and `cancel` never are, because the panel cannot
tell whether a lost call was carried out. The timeout bounds each whole call,
connect to last byte (`chalicelib.deadline`), and never reaches past what the
Lambda function has left.
"""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal
from typing import Any, Callable, NamedTuple
from urllib.parse import urlencode

import requests
import urllib3.exceptions

from chalicelib import errors, values
from chalicelib.deadline import WATCHDOG, DeadlineAdapter
from chalicelib.timing import record_upstream

READS = frozenset({"balance", "services", "status", "refill_status"})
MAX_BATCH = 100
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class PanelConfig(NamedTuple):
    url: str
    key: str


# (parts of the panel's error text, error class, code, our message). First match wins.
_PANEL_ERRORS: tuple[tuple[tuple[str, ...], type[errors.GatewayError], str, str], ...] = (
    (("api key", "apikey"), errors.UpstreamAuthFailed, "upstream_auth_failed",
     "The panel refused the gateway's API key."),
    (("incorrect request",), errors.UpstreamAuthFailed, "upstream_auth_failed",
     "The panel refused the gateway's request as malformed."),
    (("not enough funds", "insufficient funds", "low balance"), errors.InsufficientFunds,
     "insufficient_funds", "The panel account's balance does not cover this order."),
    (("active order",), errors.Refused, "link_has_active_order",
     "The panel already has an unfinished order on this link."),
    (("quantity",), errors.Refused, "quantity_out_of_range",
     "The quantity is outside what the service accepts."),
    (("refill not found", "incorrect refill"), errors.NotFound, "refill_not_found",
     "No such refill."),
    (("order id", "order not found", "incorrect order"), errors.NotFound, "order_not_found",
     "No such order."),
    # Before "link" and "service": "Refill is disabled for this service" is a refill refusal.
    (("refill",), errors.Refused, "refill_refused", "The panel refused the refill."),
    (("cancel",), errors.Refused, "cancel_refused", "The panel refused the cancel."),
    (("link",), errors.Refused, "invalid_link", "The panel refused the link."),
    (("service",), errors.Refused, "unknown_service", "The panel does not know this service."),
)


def panel_error(text: str) -> errors.GatewayError:
    """Map a panel's `{"error": text}` to a domain error (case-insensitive, by part)."""
    lowered = text.lower()
    for parts, cls, code, message in _PANEL_ERRORS:
        if any(part in lowered for part in parts):
            return cls(message, upstream=text, code=code)
    return errors.Refused("The panel refused the request.", upstream=text)


class PanelClient:
    """API v2 client: one session, one deadline per call, no redirects.

    `remaining` tells the seconds the Lambda function has left (None: no limit);
    `reserve` of them are kept back to record the outcome and answer.
    """

    def __init__(
        self,
        session: requests.Session,
        config: Callable[[], PanelConfig],
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.05,
        read_attempts: int = 3,
        read_budget: float = 20.0,
        backoff: float = 0.1,
        max_backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        remaining: Callable[[], float | None] = lambda: None,
        reserve: float = 2.0,
    ) -> None:
        self._session = session
        adapter = DeadlineAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._config = config
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._remaining = remaining
        self._reserve = reserve
        self._read_attempts = read_attempts
        self._read_budget = read_budget
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._environment: dict[str, Any] = {}  # per URL: requests' proxies, verify, cert, stream

    # -- actions ------------------------------------------------------------------

    def balance(self) -> dict[str, Any]:
        answer = self._object(self.call("balance"))
        return {"balance": _read(values.money, answer.get("balance")),
                "currency": _text(answer.get("currency"))}

    def services(self) -> list[Any]:
        answer = self.call("services")
        if not isinstance(answer, list):
            raise errors.UpstreamBadResponse("The panel's service list is not a list.")
        return answer

    def add(self, params: dict[str, str]) -> int:
        """Place an order. Never retried: a lost answer means the outcome is unknown."""
        answer = self._object(self.call("add", params))
        return _read(values.identifier, answer.get("order"))

    def status(self, order_id: int) -> dict[str, Any]:
        return order_status(order_id, self._object(self.call("status", {"order": str(order_id)})))

    def statuses(self, ids: list[int]) -> dict[int, dict[str, Any] | errors.GatewayError]:
        """Status of up to 100 orders; per-item errors are values, not failures."""
        answer = self._object(self.call("status", {"orders": _join(ids)}))
        found: dict[int, dict[str, Any] | errors.GatewayError] = {}
        for raw_id, item in answer.items():
            order_id = _read(values.identifier, raw_id)
            found[order_id] = _item(order_id, item, order_status)
        return found

    def refill(self, order_id: int) -> int:
        answer = self._object(self.call("refill", {"order": str(order_id)}))
        return _read(values.identifier, answer.get("refill"))

    def refills(self, ids: list[int]) -> dict[int, int | errors.GatewayError]:
        """Create refills for up to 100 orders (`action=refill`, `orders=`)."""
        return self._list_by("refill", {"orders": _join(ids)}, "order", "refill",
                             lambda _order, value: _read(values.identifier, value))

    def refill_status(self, refill_id: int) -> dict[str, Any]:
        answer = self._object(self.call("refill_status", {"refill": str(refill_id)}))
        return refill_status(refill_id, answer.get("status"))

    def refill_statuses(self, ids: list[int]) -> dict[int, dict[str, Any] | errors.GatewayError]:
        """Status of up to 100 refills: `refill_status` with `refills=` (see the erratum)."""
        return self._list_by("refill_status", {"refills": _join(ids)}, "refill", "status",
                             refill_status)

    def cancel(self, ids: list[int]) -> dict[int, bool | errors.GatewayError]:
        return self._list_by("cancel", {"orders": _join(ids)}, "order", "cancel",
                             lambda _order, _value: True)

    # -- transport -----------------------------------------------------------------

    def call(self, action: str, params: dict[str, str] | None = None) -> Any:
        """One action, retried only when it is a read and the failure is transient."""
        attempts = self._read_attempts if action in READS else 1
        started = self._clock()
        for attempt in range(1, attempts + 1):
            try:
                return self._call_once(action, params or {})
            except (errors.Refused, errors.InsufficientFunds) as exc:
                if action not in READS:
                    raise
                # A read has nothing to refuse: the panel is misbehaving, not the caller.
                raise errors.UpstreamBadResponse("The panel refused a read it should answer.",
                                                 upstream=exc.upstream) from exc
            except (errors.UpstreamUnavailable, errors.UpstreamBadResponse):
                # A read timeout is not retried: the budget is spent and API Gateway
                # cuts every request at 29 s.
                if attempt == attempts:
                    raise
                pause = self._jitter() * min(self._max_backoff, self._backoff * 2 ** attempt)
                if not self._another_try_fits(self._clock() - started, pause):
                    raise
                self._sleep(pause)
        raise AssertionError("unreachable")

    def _another_try_fits(self, spent: float, pause: float) -> bool:
        """After the pause, a whole try must fit in the read budget and in what the
        function has left."""
        left = self._remaining()
        return (spent + pause + self._timeout <= self._read_budget
                and (left is None or left - self._reserve - pause >= self._timeout))

    def _seconds(self) -> float:
        """This call's deadline: the timeout, or less if the function has less left."""
        left = self._remaining()
        if left is None:
            return self._timeout
        seconds = min(self._timeout, left - self._reserve)
        if seconds < min(self._timeout, 1.0):  # too short to be worth a call an `add` cannot take back
            raise errors.UpstreamUnavailable("The function has too little time left to call the panel; "
                                             "nothing was sent.")
        return seconds

    def _call_once(self, action: str, params: dict[str, str]) -> Any:
        config = self._config()
        seconds = self._seconds()
        started = self._clock()
        try:
            with WATCHDOG.guard(seconds) as deadline:
                try:
                    response = self._post(config.url, {"key": config.key, "action": action, **params},
                                          seconds)
                    with response:
                        body = self._read_body(response)
                except requests.exceptions.RequestException as exc:
                    raise _failure(exc, deadline.expired) from exc
                if deadline.expired and not _framed(response):
                    # The cut socket looked like the end of an answer that runs until close.
                    raise errors.UpstreamTimeout("The panel did not answer in time.")
        finally:
            record_upstream(self._clock() - started)
        if config.key:  # a panel that echoes the key in an error text must not leak it onward
            body = body.replace(config.key.encode("utf-8"), b"[redacted]")
        return self._parse(response.status_code, body)

    def _post(self, url: str, form: dict[str, str], seconds: float) -> requests.Response:
        """`session.post`, less its per-call cost: it re-reads the process environment
        (proxies, CA bundle) on every call, half of a status read's own time. A
        container's environment does not change, so it is read once per URL here."""
        settings = self._environment.get(url)
        if settings is None:
            settings = self._session.merge_environment_settings(url, {}, True, None, None)
            self._environment[url] = settings
        # Encoded here: requests' own encoding of a dict goes through slow protocol checks.
        prepared = self._session.prepare_request(requests.Request("POST", url, data=urlencode(form),
                                                                  headers=_FORM))
        # The socket timeouts only end a silent panel early; the deadline bounds the call.
        timeout = (min(self._connect_timeout, seconds), seconds)
        return self._session.send(prepared, timeout=timeout, allow_redirects=False, **settings)

    @staticmethod
    def _read_body(response: requests.Response) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise errors.UpstreamBadResponse("The panel's answer is too large.")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(status: int, body: bytes) -> Any:
        if 300 <= status < 400:
            raise errors.UpstreamBadResponse(f"The panel answered a redirect (HTTP {status}); not followed.")
        try:
            answer = json.loads(body, parse_float=Decimal)
        except ValueError:
            kind = "an HTML page" if body.lstrip()[:1] == b"<" else "something that is not JSON"
            raise errors.UpstreamBadResponse(f"The panel answered {kind} (HTTP {status}).") from None
        if status >= 500:
            raise errors.UpstreamBadResponse(f"The panel failed (HTTP {status}).")
        if isinstance(answer, dict):
            error = _error_text(answer.get("error"))
            if error is not None and _carries_id(answer):
                # An order (or refill) id next to an error: it may well have been placed.
                raise errors.UpstreamBadResponse("The panel answered an id and an error at once.",
                                                 upstream=error)
            if error is not None:
                raise panel_error(error)
        if status >= 400:
            raise errors.UpstreamBadResponse(f"The panel answered HTTP {status}.")
        return answer

    @staticmethod
    def _object(answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise errors.UpstreamBadResponse("The panel's answer is not a JSON object.")
        return answer

    def _list_by(self, action: str, params: dict[str, str], id_field: str, value_field: str,
                 convert: Callable[[int, Any], Any]) -> dict[int, Any]:
        answer = self.call(action, params)
        if not isinstance(answer, list):
            raise errors.UpstreamBadResponse("The panel's batch answer is not a list.")
        found: dict[int, Any] = {}
        for entry in answer:
            if not isinstance(entry, dict):
                raise errors.UpstreamBadResponse("The panel's batch answer holds a non-object.")
            item_id = _read(values.identifier, entry.get(id_field))
            found[item_id] = _item(item_id, entry.get(value_field), convert)
        return found


def order_status(order_id: int, obj: Any) -> dict[str, Any]:
    status = obj.get("status") if isinstance(obj, dict) else None
    if not isinstance(status, str):
        raise errors.UpstreamBadResponse("The panel's order status has no status text.")
    return {
        "id": order_id,
        "status": status,
        "state": values.order_state(status),
        "charge": _read(values.money, obj.get("charge", "0")),
        "start_count": values.count(obj.get("start_count")),
        "remains": values.count(obj.get("remains")),
        "currency": _text(obj.get("currency")),
    }


def refill_status(refill_id: int, status: Any) -> dict[str, Any]:
    if not isinstance(status, str):
        raise errors.UpstreamBadResponse("The panel's refill status has no status text.")
    return {"id": refill_id, "status": status, "state": values.refill_state(status)}


def _item(item_id: int, value: Any, convert: Callable[[int, Any], Any]) -> Any:
    """One entry of a batch answer: `{"error": text}` becomes an error value."""
    error = _error_text(value.get("error")) if isinstance(value, dict) else None
    if error is not None:
        return panel_error(error)
    return convert(item_id, value)


def _error_text(value: Any) -> str | None:
    """The text of a panel's `error` field; None when it says no error (absent, null,
    false or blank), as some panels send `{"order": 9002, "error": null}`."""
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return None
    return str(value)


def _carries_id(answer: dict[str, Any]) -> bool:
    return any(answer.get(field) not in (None, "", 0, False) for field in ("order", "refill"))


def _read(convert: Callable[[Any], Any], value: Any) -> Any:
    try:
        return convert(value)
    except ValueError as exc:
        raise errors.UpstreamBadResponse(f"The panel sent an unreadable value: {exc}") from exc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _join(ids: list[int]) -> str:
    if not 0 < len(ids) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} ids, not {len(ids)}")
    return ",".join(str(i) for i in ids)


def _failure(exc: requests.exceptions.RequestException, expired: bool) -> errors.GatewayError:
    """The one mapping of transport failures. Only a failure to connect proves that no
    byte of the request left, so only it may free an `add`'s Idempotency-Key; a TLS
    error or a reset can come after the panel read the whole request. `expired`: the
    deadline cut the call, whatever the cut looked like to requests."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return errors.UpstreamUnavailable("The panel could not be reached (connect timeout); nothing was "
                                          "sent, so trying again is safe.")
    if _nothing_sent(exc):
        return errors.UpstreamUnavailable("The panel could not be reached; nothing was sent, so trying "
                                          "again is safe.")
    if expired or isinstance(exc, requests.exceptions.Timeout) or _timed_out(exc):
        return errors.UpstreamTimeout("The panel did not answer in time.")
    if isinstance(exc, requests.exceptions.ConnectionError):  # SSLError included
        return errors.UpstreamConnectionLost("The connection to the panel broke after the request may "
                                             "have been sent.")
    return errors.UpstreamBadResponse("The panel's answer could not be read.")


def _framed(response: requests.Response) -> bool:
    """True when the answer's length was known, so that a cut would have shown as an error."""
    return "content-length" in response.headers or "chunked" in response.headers.get("transfer-encoding", "")


def _timed_out(exc: requests.exceptions.RequestException) -> bool:
    """requests reports a read timeout in the middle of a body as a ConnectionError."""
    return bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)


def _nothing_sent(exc: requests.exceptions.RequestException) -> bool:
    """True when the failure happened while connecting, before any byte was sent."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (urllib3.exceptions.NewConnectionError,
                               urllib3.exceptions.ConnectTimeoutError,
                               urllib3.exceptions.NameResolutionError))

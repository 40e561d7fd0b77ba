"""`POST /orders`: the one place where the gateway spends the user's money.

The panel's `add` has no idempotency and cannot be looked up afterwards, so the
rule here is: claim the Idempotency-Key before anything is sent; send at most once;
afterwards record exactly what is known. Nothing is sent again automatically.

    validate ─► claim ─► add ─┬─ order id ──────────► complete (201, replayed later)
       │          │           ├─ refused / not sent ─► release  (the key can be retried)
       │          │           └─ timeout / garbage ──► unknown  (409 until resolved)
       │          └─ key held ► replay 201 · 409 in progress · 409 unknown · 422 reused
       └─ 400 / 422, nothing written

A replay needs only the stored answer: a request that the catalogue, the panel or
today's caps would refuse first looks its key up, and a key already used with this
body answers as it did (201 replay, 409). The happy path reads nothing extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from chalicelib import errors, logs
from chalicelib.orders import rules
from chalicelib.http import MAX_ID, coerce_form
from chalicelib.orders.store import COMPLETED, OPEN_STATES, UNKNOWN, Attempt, Record, Store, iso, order_facts

log = logging.getLogger(__name__)
LEDGER_STATES = frozenset({"submitting", "unknown", "pending", "in_progress", "processing",
                           "completed", "partial", "canceled"})
MAX_LEDGER_PAGES = 10


@dataclass(frozen=True)
class Policy:
    key_required: bool = True
    retention_seconds: float = 7 * 86400
    lease_seconds: float = 50.0
    max_order_charge: Decimal | None = None
    daily_spend_limit: Decimal | None = None

    def within(self, max_order_charge: Decimal | None, daily_spend_limit: Decimal | None) -> Policy:
        """This policy with a key's own caps on top: for each cap, the stricter one."""
        return replace(self, max_order_charge=_stricter(self.max_order_charge, max_order_charge),
                       daily_spend_limit=_stricter(self.daily_spend_limit, daily_spend_limit))


def _stricter(first: Decimal | None, second: Decimal | None) -> Decimal | None:
    return second if first is None else first if second is None else min(first, second)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class OrderDesk:
    def __init__(self, panel: Any, catalogue: Any, store: Store, schemas: Any, policy: Policy, *,
                 clock: Callable[[], float] = time.time,
                 token: Callable[[], str] = lambda: uuid.uuid4().hex,
                 currency: Callable[[], str | None] = lambda: None) -> None:
        self._panel = panel
        self._currency = currency  # the account's, cached (chalicelib/account.py); None if unknown
        self._catalogue = catalogue
        self._store = store
        self._schemas = schemas
        self._policy = policy
        self._clock = clock
        self._token = token

    def place(self, caller: str, key_header: str | None, body: Any, *, form: bool = False,
              max_order_charge: Decimal | None = None, daily_spend_limit: Decimal | None = None) -> Answer:
        """Place an order for `caller`; the caps of its key, if any, apply on top of the policy's."""
        key = self._key(key_header)
        request = self.validated(body, form=form)
        try:
            prepared = rules.prepare(request, self._service(request["service"]))
            attempt = self._attempt(caller, key, request, prepared,
                                    self._policy.within(max_order_charge, daily_spend_limit))
        except errors.GatewayError as refusal:
            # Only here does the store get read first: a key that was already used
            # answers as it did, whatever the catalogue, the panel or the caps say now.
            return self._earlier(caller, key, request, refusal)
        # Asked before the claim: between `add` and `complete` nothing may wait on the
        # panel, or a slow answer could outlast the function and lose the order's record.
        currency = self._currency()
        held = self._store.claim(attempt, self._clock())
        if held is not None:
            return self._held(attempt.caller, attempt.key_hash, attempt.fingerprint, held,
                              order_facts(request, prepared.quantity, key))
        order_id = self._send(attempt, prepared.params)
        answer = Answer(201, {
            "id": order_id, "service": request["service"], "link": request.get("link"),
            "quantity": prepared.quantity, "estimated_charge": attempt.estimated_charge,
            "currency": currency, "created_at": iso(attempt.created_at), "idempotency_key": key,
        }, {})
        try:
            self._store.complete(attempt, order_id, _stored(answer), self._clock() + self._policy.retention_seconds)
        except errors.GatewayError:
            # The panel took the order: answer it. The record stays in flight, so its
            # lease runs out into `unknown` and a retry can never send it again.
            logs.event(log, "order placed but not recorded", logging.ERROR, order_id=order_id,
                       caller=caller, idempotency_key=key, ledger_sk=attempt.ledger_sk)
        return answer

    def validated(self, body: Any, *, form: bool = False) -> dict[str, Any]:
        if form and isinstance(body, dict):
            body = coerce_form(body, self._schemas.schema("OrderRequest"))
        return self._schemas.checked("OrderRequest", body)

    def ledger(self, caller: str, limit: int = 25, cursor: str | None = None,
               state: str | None = None) -> dict[str, Any]:
        """The caller's orders placed through the gateway, newest first."""
        if state is not None and state not in LEDGER_STATES:
            raise errors.ValidationError(f"state must be one of {', '.join(sorted(LEDGER_STATES))}.",
                                         details={"field": "state"})
        now = self._clock()
        found: list[dict[str, Any]] = []
        for _ in range(MAX_LEDGER_PAGES):
            items, cursor = self._store.ledger(caller, limit - len(found), cursor)
            entries = self._refreshed(caller, items, now)
            found += [e for e in entries if state in (None, e["state"])]
            if len(found) >= limit or cursor is None:
                break
        return {"orders": found, "next_cursor": cursor}

    def _refreshed(self, caller: str, items: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """Ledger entries with the panel's current status for orders not yet final.

        One panel call per page (pages hold at most 100); what changed is written back
        through the store's one status write (with its event), so the stored status is
        the last one known and the `state` filter follows the orders. A panel that
        cannot answer leaves the stored values: the ledger is the gateway's own and
        stays readable."""
        entries = [_ledger_entry(item, now) for item in items]
        open_ids = [e["id"] for e in entries if e["id"] is not None and e["state"] in OPEN_STATES]
        if not open_ids:
            return entries
        try:
            live = self._panel.statuses(open_ids)
        except errors.GatewayError as exc:
            logs.event(log, "ledger status refresh failed", logging.WARNING, code=exc.code)
            return entries
        for item, entry in zip(items, entries):
            current = live.get(entry["id"])
            if not isinstance(current, dict) or current["status"] == entry["status"]:
                continue
            entry.update(status=current["status"], state=current["state"])
            try:
                self._store.record_status(caller, item, current)
            except errors.GatewayError:
                pass  # written on the next read or sync; the answer already has it
        return entries

    def resolve(self, caller: str, key: str, order_id: int | None) -> None:
        """Operator: record the real order id of an unknown outcome, or release the key."""
        if order_id is not None and (isinstance(order_id, bool) or not 0 < order_id <= MAX_ID):
            raise errors.ValidationError(f"order_id must be a positive integer, not {order_id}.",
                                         details={"field": "order_id"})
        key_hash = _sha256(self._key(key))
        answer = None
        if order_id is not None:
            answer = _stored(Answer(201, {"id": order_id, "idempotency_key": key, "resolved": True}, {}))
        now = self._clock()
        self._store.resolve(caller, key_hash, order_id, answer, now + self._policy.retention_seconds, now)

    def unknown(self, caller: str) -> list[dict[str, Any]]:
        """Operator: the caller's orders whose outcome is unknown, newest first.

        A claim whose lease ran out counts, as in the ledger: its request crashed mid-order."""
        now = self._clock()
        entries = [_ledger_entry(item, now) for item in self._store.unsettled(caller)]
        return [entry for entry in entries if entry["state"] == UNKNOWN]

    # -- steps ----------------------------------------------------------------------

    def _key(self, header: str | None) -> str:
        if header is None or not header.strip():
            if self._policy.key_required:
                raise errors.IdempotencyKeyRequired(
                    "POST /orders needs an Idempotency-Key header (1-255 printable ASCII characters).")
            return "auto-" + self._token()
        key = header.strip()
        if len(key) >= 2 and key[0] == key[-1] == '"':  # the IETF draft's quoted form
            key = key[1:-1]
        if not 1 <= len(key) <= 255 or any(not " " <= c <= "~" for c in key):
            raise errors.ValidationError("Idempotency-Key must be 1-255 printable ASCII characters.",
                                         details={"field": "Idempotency-Key"})
        return key

    def _service(self, service_id: int) -> Any:
        try:
            return self._catalogue.get(service_id)
        except errors.NotFound as exc:
            raise errors.Refused(f"service: the panel's catalogue has no service {service_id}.",
                                 code="unknown_service", details={"field": "service"}) from exc

    def _attempt(self, caller: str, key: str, request: dict[str, Any],
                 prepared: rules.Prepared, policy: Policy) -> Attempt:
        # The daily cap is one reservation on the caller's SPEND# item in the claim's own
        # transaction, conditional on the room left under the stricter cap: racing
        # requests cannot pass it together, and it costs no DynamoDB request of its own.
        charge = prepared.estimated_charge
        cap = policy.max_order_charge
        if cap is not None and charge > cap:
            raise errors.Refused(f"The estimated charge {charge} is over the per-order limit {cap}.",
                                 code="spending_limit_exceeded")
        now = self._clock()
        daily = policy.daily_spend_limit
        if daily is not None and charge > daily:
            raise errors.Refused(f"The estimated charge {charge} is over the daily limit {daily}.",
                                 code="spending_limit_exceeded")
        return Attempt(
            caller=caller, key=key, key_hash=_sha256(key), owner=self._token(),
            fingerprint=_fingerprint(request), created_at=now,
            lease_until=now + self._policy.lease_seconds, request=request,
            estimated_charge=format(charge, "f"), quantity=prepared.quantity,
            spend_day=_day(now) if daily is not None else None,
            spend_room=daily - charge if daily is not None else None,
        )

    def _earlier(self, caller: str, key: str, request: dict[str, Any], refusal: errors.GatewayError) -> Answer:
        """The answer for a key this request already used, else `refusal`."""
        key_hash = _sha256(key)
        try:
            held = self._store.find(caller, key_hash)
        except errors.GatewayError:
            held = None  # the refusal is still the answer for a new order
        if held is None or held.fingerprint != _fingerprint(request) or _expired(held, self._clock()):
            raise refusal
        return self._held(caller, key_hash, held.fingerprint, held, order_facts(request, request.get("quantity"), key))

    def _held(self, caller: str, key_hash: str, fingerprint: str, held: Record, facts: dict[str, Any]) -> Answer:
        if held.fingerprint != fingerprint:
            raise errors.Refused("This Idempotency-Key was used with a different request body.",
                                 code="idempotency_key_reused")
        if held.state == COMPLETED and held.answer is not None:
            return Answer(held.answer["status"], held.answer["body"],
                          {**held.answer.get("headers", {}), "Idempotent-Replayed": "true"})
        now = self._clock()
        if held.state != UNKNOWN and held.lease_until > now:
            wait = max(1, math.ceil(held.lease_until - now))
            raise errors.IdempotencyConflict("A request with this Idempotency-Key is still in flight; retry after "
                                             f"{wait} seconds for its answer.",
                                             headers={"Retry-After": str(wait)})
        if held.state != UNKNOWN:  # the lease ran out without completion: a crash mid-order
            try:
                self._store.mark_unknown(caller, key_hash, held.owner, held.ledger_sk, facts)
            except errors.GatewayError:
                pass  # the ledger shows an expired lease as unknown anyway
        raise errors.OutcomeUnknown(
            "An earlier request with this Idempotency-Key may have placed the order; it is not sent "
            "again. Check the panel, then have an operator resolve the key.")

    def _send(self, attempt: Attempt, params: dict[str, str]) -> int:
        try:
            return self._panel.add(params)
        except (errors.UpstreamTimeout, errors.UpstreamBadResponse) as exc:
            self._settle_unknown(attempt)
            raise _unknown(exc) from exc
        except errors.GatewayError:
            # A definite refusal by the panel, or nothing was sent: free the key.
            self._settle(lambda: self._store.release(attempt), attempt, "release")
            raise
        except Exception:
            self._settle_unknown(attempt)
            raise

    def _settle_unknown(self, attempt: Attempt) -> None:
        facts = order_facts(attempt.request, attempt.quantity, attempt.key)
        self._settle(lambda: self._store.mark_unknown(attempt.caller, attempt.key_hash, attempt.owner,
                                                      attempt.ledger_sk, facts), attempt, "mark unknown")

    @staticmethod
    def _settle(write: Callable[[], None], attempt: Attempt, what: str) -> None:
        try:
            write()
        except errors.GatewayError:
            # Left in flight, the record turns unknown when its lease ends: safe either way.
            logs.event(log, f"could not {what} an idempotency record", logging.ERROR,
                       caller=attempt.caller, idempotency_key=attempt.key, ledger_sk=attempt.ledger_sk)


def _unknown(cause: errors.GatewayError) -> errors.OutcomeUnknown:
    err = errors.OutcomeUnknown(
        f"{cause.message} The order may or may not have been placed; it will not be sent again "
        "with this Idempotency-Key.", upstream=cause.upstream)
    err.status = 504 if isinstance(cause, errors.UpstreamTimeout) else 502
    return err


def _ledger_entry(item: dict[str, Any], now: float) -> dict[str, Any]:
    state = item.get("state", "unknown")
    if state == "submitting" and float(item.get("lease_until", 0)) < now:
        state = "unknown"
    request = json.loads(item.get("request", "{}"))
    order_id = item.get("order_id")
    quantity = item.get("quantity")
    return {
        "id": int(order_id) if order_id is not None else None,
        "service": request.get("service"),
        "link": request.get("link"),
        "quantity": int(quantity) if quantity is not None else None,
        "estimated_charge": item.get("estimated_charge"),
        "created_at": item.get("created_at"),
        "idempotency_key": item.get("idempotency_key"),
        "state": state,
        "status": item.get("status"),
    }


def _stored(answer: Answer) -> dict[str, Any]:
    return {"status": answer.status, "body": answer.body, "headers": answer.headers}


def _expired(held: Record, now: float) -> bool:
    """A completed record past retention: the key is free again, as `claim` treats it."""
    return held.state == COMPLETED and held.expires_at is not None and held.expires_at < now


def _fingerprint(request: dict[str, Any]) -> str:
    return _sha256("POST /orders\n" + json.dumps(request, sort_keys=True, separators=(",", ":")))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")

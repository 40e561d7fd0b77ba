"""One event: its id, its type, and its item in the table.

Ids are `evt_` + a ULID (48 bits of milliseconds, 80 random bits, Crockford base32),
so they sort by time as strings: the event log's sort key is the id itself, and a
newest-first page or a cursor costs one Query. Within one millisecond a process
increments the random part, so its own ids never tie.

    EVENTS#<caller> / <event id>   type, created_at, data (JSON text), expires_at (TTL),
                                   work = "outbox" until every publisher has it

`work` puts a new event in the table's sparse WORK_INDEX: what is still to be
published (EventBridge, webhooks) is found there without reading the log.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from chalicelib import errors

RETENTION_SECONDS = 30 * 86400
OUTBOX = "outbox"  # the WORK_INDEX value of an event not yet published everywhere

ORDER_STATE_TYPES = ("order.in_progress", "order.processing", "order.completed", "order.partial",
                     "order.canceled")
REFILL_STATE_TYPES = ("refill.in_progress", "refill.completed", "refill.rejected")
TYPES = frozenset({"order.created", "order.outcome_unknown", *ORDER_STATE_TYPES,
                   "refill.created", *REFILL_STATE_TYPES, "balance.low", "webhook.test"})
FAMILIES = ("order.*", "refill.*")  # a filter on every type of one family


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: str  # RFC 3339, UTC, milliseconds
    data: dict[str, Any] = field(default_factory=dict)
    caller: str = ""  # whose event it is; not part of what callers see

    def public(self) -> dict[str, Any]:
        """The event as `GET /events`, EventBridge and webhooks carry it."""
        return {"id": self.id, "type": self.type, "created_at": self.created_at, "data": self.data}


def new(caller: str, type_: str, data: dict[str, Any], now: float | None = None) -> Event:
    """A new event of a known type, stamped now."""
    if type_ not in TYPES:
        raise ValueError(f"not an event type: {type_}")
    at = time.time() if now is None else now
    return Event(new_id(at), type_, rfc3339(at), data, caller)


def state_type(family: str, state: str) -> str | None:
    """The event type of an order or refill entering `state`, or None if that state has none
    (`pending` is where everything starts; `unknown` is a status the gateway cannot read)."""
    name = f"{family}.{state}"
    return name if name in TYPES and state not in {"created", "outcome_unknown"} else None


def type_filter(text: str | None) -> Callable[[str], bool]:
    """The `type` query parameter as a test on event types: exact, a family, or absent."""
    if text is None:
        return lambda _: True
    if text in TYPES:
        return lambda type_: type_ == text
    if text in FAMILIES:
        prefix = text[:-1]
        return lambda type_: type_.startswith(prefix)
    raise errors.ValidationError(
        f"type must be an event type ({', '.join(sorted(TYPES))}) or one of {', '.join(FAMILIES)}.",
        details={"field": "type"})


def to_item(event: Event) -> dict[str, Any]:
    """The event's item (plain values: a store types it through dynamo.Table.item)."""
    created = _epoch(event.created_at)
    return {"pk": pk(event.caller), "sk": event.id, "type": event.type, "created_at": event.created_at,
            "data": json.dumps(event.data, separators=(",", ":"), sort_keys=True),
            "caller": event.caller, "expires_at": int(created + RETENTION_SECONDS), "work": OUTBOX}


def from_item(item: dict[str, Any]) -> Event:
    return Event(id=item["sk"], type=item["type"], created_at=item["created_at"],
                 data=json.loads(item["data"]), caller=item["caller"])


def pk(caller: str) -> str:
    return f"EVENTS#{caller}"


# -- ids -------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)  # (milliseconds, random part) of this process's last id


def new_id(now: float) -> str:
    global _last
    ms = int(now * 1000)
    with _lock:
        last_ms, last_random = _last
        if ms <= last_ms:  # same millisecond (or a clock step back): stay after the last id
            ms, random = last_ms, last_random + 1
        else:
            random = int.from_bytes(os.urandom(10), "big")
        _last = (ms, random)
    return "evt_" + _base32((ms << 80) | (random & ((1 << 80) - 1)), 26)


def is_event_id(text: str) -> bool:
    return len(text) == 30 and text.startswith("evt_") and all(c in _CROCKFORD for c in text[4:])


def first_id_at(at: float) -> str:
    """The smallest id of the millisecond `at`: every id made before it sorts under it."""
    return "evt_" + _base32(int(at * 1000) << 80, 26)


def _base32(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        digits.append(_CROCKFORD[digit])
    return "".join(reversed(digits))


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

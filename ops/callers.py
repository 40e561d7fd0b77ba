"""`ops callers create|list|update|revoke`: the gateway's own API keys and what each may do.

A new key is printed once and stored only as a salted hash (chalicelib/callers.py).
The caller's name is their identity in the table (ledger, idempotency records,
spending), so rotating a key keeps the name: `create NAME --additional` adds a
second key (with the scopes and limits of NAME's newest key, unless told others),
the client switches, `revoke NAME --key-id OLD` retires the first. A key's scopes,
own-orders-only flag and caps change with `update`, the key itself staying the same.
Every change reaches running containers within SECRET_MAX_AGE_SECONDS (60 s).

Keys live in the secret, beside the panel key: authenticating then costs no
DynamoDB request, and the secret's 64 KB hold 130 keys of the largest form (a name of
64 characters, every scope, both caps, own-orders-only) and some 260 of a usual one;
a write that would pass the limit is refused (ops/secret_doc.py) and changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from chalicelib.callers import CAPS, SCOPES, new_key, record_for, restrict
from ops.secret_doc import OpsError, SecretDocument

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # no '#': it separates the table's key parts
RESTRICTIONS = ("scopes", "own_orders_only", *CAPS)


@dataclass(frozen=True)
class Limits:
    """What an operator asked to set; None leaves a setting as it is (or, for a new key, at its default)."""

    scopes: list[str] | None = None
    own_orders_only: bool | None = None
    max_order_charge: Decimal | None = None
    daily_spend_limit: Decimal | None = None
    unset: tuple[str, ...] = ()  # caps to remove

    def given(self) -> bool:
        return any(v is not None for v in (self.scopes, self.own_orders_only, self.max_order_charge,
                                           self.daily_spend_limit)) or bool(self.unset)


def create(doc: SecretDocument, name: str, *, additional: bool = False, limits: Limits = Limits(),
           now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """A new key for `name`: (the key, to show once; its listing entry).

    Without scopes given it gets every scope; with `additional`, what is not given is
    copied from NAME's newest key, so a rotation neither widens nor narrows it."""
    if not NAME.fullmatch(name):
        raise OpsError("a caller name is 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
    key = new_key()
    record: dict[str, Any] = dict(record_for(name, key, scopes=SCOPES))
    record["created_at"] = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")

    def change(data: dict[str, Any]) -> None:
        callers = data.setdefault("callers", [])
        mine = [c for c in callers if isinstance(c, dict) and c.get("name") == name]
        if mine and not additional:
            raise OpsError(f"caller {name!r} already has a key; --additional adds a second one (rotation)")
        if mine:
            newest = max(mine, key=lambda c: str(c.get("created_at") or ""))
            record.pop("scopes")
            record.update({field: newest[field] for field in RESTRICTIONS if field in newest})
        _apply(record, limits)
        callers.append(record)

    doc.update(change)
    return key, entry(record)


def listing(doc: SecretDocument) -> list[dict[str, Any]]:
    return [entry(c) for c in doc.read().data.get("callers", []) if isinstance(c, dict)]


def update(doc: SecretDocument, name: str, key_id: str | None, limits: Limits) -> list[dict[str, Any]]:
    """Change the scopes and limits of NAME's key `key_id` (or of all of NAME's keys); the keys stay."""
    if not limits.given():
        raise OpsError("nothing to change: give --scopes, --own-orders-only/--all-orders, "
                       "--max-order-charge or --daily-spend-limit")

    def change(data: dict[str, Any]) -> list[dict[str, Any]]:
        chosen = [c for c in data.get("callers", []) if isinstance(c, dict) and c.get("name") == name
                  and (key_id is None or entry(c)["key_id"] == key_id)]
        if not chosen:
            raise OpsError(f"no key of caller {name!r}" + (f" with key id {key_id}" if key_id else ""))
        for record in chosen:
            _apply(record, limits)
        return [entry(c) for c in chosen]

    return doc.update(change)


def revoke(doc: SecretDocument, name: str, key_id: str | None = None) -> list[dict[str, Any]]:
    """Remove every key of `name`, or only the one with `key_id`; returns what was removed."""

    def change(data: dict[str, Any]) -> list[dict[str, Any]]:
        callers = data.get("callers", [])
        gone = [c for c in callers if c.get("name") == name and (key_id is None or entry(c)["key_id"] == key_id)]
        if not gone:
            raise OpsError(f"no key of caller {name!r}" + (f" with key id {key_id}" if key_id else ""))
        data["callers"] = [c for c in callers if c not in gone]
        return [entry(c) for c in gone]

    return doc.update(change)


def entry(record: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a stored key: never its hash. The key id is the salt's start,
    which is random and says nothing about the key. A key without `scopes` was made
    before scopes existed and has every one."""
    scopes = record.get("scopes")
    return {"name": str(record.get("name")), "key_id": str(record.get("salt", ""))[:8],
            "created_at": str(record.get("created_at") or "-"),
            "scopes": list(SCOPES) if scopes is None else list(scopes),
            "own_orders_only": bool(record.get("own_orders_only", False)),
            "max_order_charge": record.get("max_order_charge"),
            "daily_spend_limit": record.get("daily_spend_limit")}


def _apply(record: dict[str, Any], limits: Limits) -> None:
    try:
        restrict(record, scopes=limits.scopes, own_orders_only=limits.own_orders_only,
                 max_order_charge=limits.max_order_charge, daily_spend_limit=limits.daily_spend_limit,
                 unset=limits.unset)
    except ValueError as exc:
        raise OpsError(str(exc)) from None

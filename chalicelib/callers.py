"""Caller keys: the gateway's own API keys, stored only as salted hashes, and what each may do.

Keys are issued as 256 random bits, so a fast salted hash is enough (a slow KDF
protects guessable passwords, not random tokens) and keeps every request cheap.
Every stored record is checked in constant time, so timing says nothing about
which record, if any, was close.

A record may also restrict its key (least privilege, as Stripe's restricted keys):
`scopes` (the routes it may use), `own_orders_only` (only orders in its caller's
ledger) and its own spending caps. A record without `scopes` was made before scopes
existed and keeps every scope, so upgrading breaks no key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, NotRequired, TypedDict

KEY_PREFIX = "sgw_"
# Every scope a key can hold; `orders:write` is placing, refilling and cancelling.
SCOPES = ("balance:read", "services:read", "orders:read", "orders:write", "events:read", "webhooks:write")
CAPS = ("max_order_charge", "daily_spend_limit")


class CallerRecord(TypedDict):
    name: str
    salt: str
    hash: str
    scopes: NotRequired[list[str]]
    own_orders_only: NotRequired[bool]
    max_order_charge: NotRequired[str]
    daily_spend_limit: NotRequired[str]


@dataclass(frozen=True)
class Caller:
    """Whose key was presented, and what the key may do."""

    name: str
    scopes: frozenset[str] = frozenset(SCOPES)
    own_orders_only: bool = False
    max_order_charge: Decimal | None = None
    daily_spend_limit: Decimal | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def record_for(name: str, key: str, *, scopes: Iterable[str] | None = None, own_orders_only: bool = False,
               max_order_charge: Decimal | str | None = None,
               daily_spend_limit: Decimal | str | None = None) -> CallerRecord:
    """The stored form of `key`; restrictions are written only when given (None: every scope)."""
    salt = secrets.token_hex(16)
    record: CallerRecord = {"name": name, "salt": salt, "hash": _digest(salt, key)}
    restrict(record, scopes=scopes, own_orders_only=own_orders_only,
             max_order_charge=max_order_charge, daily_spend_limit=daily_spend_limit)
    return record


def restrict(record: Any, *, scopes: Iterable[str] | None = None, own_orders_only: bool | None = None,
             max_order_charge: Decimal | str | None = None, daily_spend_limit: Decimal | str | None = None,
             unset: Iterable[str] = ()) -> None:
    """Change a record's restrictions in place: what is given is set, the `unset` caps are removed."""
    if scopes is not None:
        record["scopes"] = checked_scopes(scopes)
    if own_orders_only is not None:
        if own_orders_only:
            record["own_orders_only"] = True
        else:
            record.pop("own_orders_only", None)
    for name, value in (("max_order_charge", max_order_charge), ("daily_spend_limit", daily_spend_limit)):
        if value is not None:
            record[name] = format(checked_cap(value, name), "f")
    for name in unset:
        record.pop(name, None)


def checked_scopes(scopes: Iterable[str]) -> list[str]:
    """Known scopes, in SCOPES order; ValueError names an unknown one."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in wanted]


def checked_cap(value: Decimal | str, what: str) -> Decimal:
    """A spending cap: a positive, finite decimal amount."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} must be a decimal amount such as 25.00, not {str(value)[:40]!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{what} must be a positive amount, not {value}")
    return amount


def caller_of(record: CallerRecord) -> Caller:
    """What a stored record allows; ValueError if its restrictions are malformed.

    Unknown scope names (from a newer version) grant nothing rather than spoil the key."""
    scopes = record.get("scopes")
    if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
        raise ValueError("scopes must be a list of strings")
    own = record.get("own_orders_only", False)
    if not isinstance(own, bool):
        raise ValueError("own_orders_only must be true or false")
    caps = {name: _stored_cap(record.get(name), name) for name in CAPS}
    return Caller(record["name"], frozenset(SCOPES) if scopes is None else frozenset(scopes) & frozenset(SCOPES),
                  own, caps["max_order_charge"], caps["daily_spend_limit"])


def _stored_cap(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):  # money is stored as a decimal string, never a float
        raise ValueError(f"{name} must be a decimal string")
    return checked_cap(value, name)


def identify(presented: str | None, records: list[CallerRecord]) -> Caller | None:
    """The caller whose key this is, with what the key may do, or None."""
    if not presented:
        return None
    found = None
    for record in records:
        if hmac.compare_digest(_digest(record["salt"], presented), record["hash"]):
            found = record
    return caller_of(found) if found is not None else None


def _digest(salt: str, key: str) -> str:
    return hmac.new(salt.encode(), key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

"""Normalisation of the loosely typed values panels send.

Panels send money as strings (sometimes numbers), counts as strings or numbers or
words like "Unknown", ids as numbers or strings, and statuses in several spellings.
Callers get one form: money as decimal strings, counts and ids as ints, plus a
`state` enum next to the panel's own status text. A value that cannot be read
raises `ValueError`; the upstream client turns that into `UpstreamBadResponse`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_INT_TEXT = re.compile(r"^\s*-?\d+\s*$")
# Already canonical ("0.27819", "100"): what `money` would return. Most panel amounts are;
# skipping Decimal for them takes a fifth off a 1000-order status read.
_PLAIN_MONEY = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")

ORDER_STATES = {
    "pending": "pending",
    "in progress": "in_progress",
    "inprogress": "in_progress",
    "processing": "processing",
    "completed": "completed",
    "complete": "completed",
    "partial": "partial",
    "canceled": "canceled",
    "cancelled": "canceled",
    "refunded": "canceled",
}

REFILL_STATES = {
    "pending": "pending",
    "awaiting": "pending",
    "in progress": "in_progress",
    "inprogress": "in_progress",
    "refilling": "in_progress",
    "processing": "in_progress",
    "completed": "completed",
    "complete": "completed",
    "rejected": "rejected",
    "error": "rejected",
    "failed": "rejected",
    "canceled": "rejected",
    "cancelled": "rejected",
}


def money(value: Any) -> str:
    """A decimal string such as "0.27819"; floats never enter (JSON is parsed to Decimal)."""
    if isinstance(value, str) and _PLAIN_MONEY.fullmatch(value):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return format(amount, "f")


def identifier(value: Any) -> int:
    """A positive integer id, from 23501 or "23501"."""
    if isinstance(value, bool):
        raise ValueError(f"not an id: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_TEXT.match(value):
        number = int(value)
    elif isinstance(value, Decimal) and value == value.to_integral_value():
        number = int(value)
    else:
        raise ValueError(f"not an id: {value!r}")
    if number < 1:
        raise ValueError(f"not an id: {value!r}")
    return number


def count(value: Any) -> int | None:
    """A count, or None for what is not a number ("Unknown", "", null)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_TEXT.match(value):  # the usual "3572": no Decimal needed
        return int(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


def flag(value: Any) -> bool:
    """A panel boolean: true/false, 1/0, "1"/"0", "true"/"false"; absent means False."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def order_state(status: str) -> str:
    return ORDER_STATES.get(_status_key(status), "unknown")


def refill_state(status: str) -> str:
    return REFILL_STATES.get(_status_key(status), "unknown")


def _status_key(status: str) -> str:
    return " ".join(status.replace("_", " ").split()).lower()

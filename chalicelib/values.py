"""Normalisation of the loosely typed values panels send.

Panels send money as strings (sometimes numbers), counts as strings or numbers or
words like "Unknown", ids as numbers or strings, and statuses in several spellings.
Callers get one form: money as decimal strings, counts and ids as ints, plus a
`state` enum next to the panel's own status text. A value that cannot be read
raises `ValueError`; the upstream client turns that into `UpstreamBadResponse`.
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Any

# Bounds on what a panel may send, so that no value costs more than a few digits' work
# or comes out longer than a few dozen characters ("1e5000" is not a count; "1e999999999"
# would take minutes to write out in full).
INT64_MAX = 2 ** 63 - 1  # counts are the contract's int64
MAX_ID = 2 ** 53 - 1  # ids: the contract's ResourceId, exact in every JSON reader
MONEY_WHOLE_DIGITS = 18  # amounts below 10**18
MONEY_PLACES = 18  # and at most 18 decimal places, trailing zeros aside
_MAX_DIGITS = 64  # a number written with more characters than this is not read at all
_EXACT = Context(prec=_MAX_DIGITS, Emax=MAX_EMAX, Emin=MIN_EMIN)  # exact for what is read

_INT_TEXT = re.compile(r"^\s*-?\d{1,19}\s*$")  # longer digit runs go through the bounded path
# Already canonical ("0.27819", "100"): what `money` would return. Most panel amounts are;
# skipping Decimal for them takes a fifth off a 1000-order status read.
_PLAIN_MONEY = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,18})?")

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
    amount = None if isinstance(value, bool) else _decimal(value)
    if amount is None or amount.adjusted() >= MONEY_WHOLE_DIGITS:
        raise ValueError(f"not an amount: {_shown(value)}")
    if amount.as_tuple().exponent < -MONEY_PLACES:  # type: ignore[operator]  # finite: an int
        amount = amount.normalize(_EXACT)  # "0.1000000000000000000000" has one place
        if amount.as_tuple().exponent < -MONEY_PLACES:  # type: ignore[operator]
            raise ValueError(f"not an amount: {_shown(value)}")
    return format(amount, "f")


def identifier(value: Any) -> int:
    """A positive integer id, from 23501 or "23501"."""
    if isinstance(value, bool):
        raise ValueError(f"not an id: {_shown(value)}")
    number = value if isinstance(value, int) else _integer(value)
    if number is None or not 1 <= number <= MAX_ID:
        raise ValueError(f"not an id: {_shown(value)}")
    return number


def count(value: Any) -> int | None:
    """A count, or None for what is not a number ("Unknown", "", null) or none the
    contract's int64 can hold."""
    if value is None or isinstance(value, bool):
        return None
    number = value if isinstance(value, int) else _integer(value)
    if number is None or not -INT64_MAX - 1 <= number <= INT64_MAX:
        return None
    return number


def _integer(value: Any) -> int | None:
    """An integer from its text ("3572") or an integral Decimal ("1E+3"); None otherwise."""
    if isinstance(value, str) and _INT_TEXT.match(value):  # the usual "3572": no Decimal needed
        return int(value)
    number = _decimal(value)
    # `adjusted` first: int() of 1E+999999999 would write out a billion digits.
    if number is None or number.adjusted() > 18 or number != number.to_integral_value():
        return None
    return int(number)


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal of at most _MAX_DIGITS characters or digits, or None."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if value.bit_length() > 4 * _MAX_DIGITS:
            return None
        number = Decimal(value)
    elif isinstance(value, (str, float)):
        text = str(value).strip()
        if len(text) > _MAX_DIGITS:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if not number.is_finite() or len(number.as_tuple().digits) > _MAX_DIGITS:
        return None
    return number


def _shown(value: Any) -> str:
    """A value for an error message, cut short: the message must not be the blow-up."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


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

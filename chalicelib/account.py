"""The panel account: its balance, watched against the operator's BALANCE_LOW_THRESHOLD,
and its currency, for order answers.

Every reading of the balance (GET /balance and the currency lookup) goes through
`Account.balance`, which logs one "balance low" line whenever the balance read is
under the threshold: the `balance-low` alarm counts those lines (infra/resources.json).
It is a line per reading; a `BalanceWatch` (chalicelib/events/balance.py) is told of
every reading too, and makes the `balance.low` events, one per crossing.

The panel names its currency only in the `balance` answer. An order must neither
wait for that on every request nor fail without it, so `AccountCurrency` asks once
per container, on the first order, and keeps the answer; after a failure the next
order asks again no sooner than `retry_after` seconds, and until then answers None.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, Callable, Mapping, Protocol

from chalicelib import logs, values

log = logging.getLogger(__name__)


def threshold(text: str | None) -> Decimal | None:
    """The threshold set as text, or None when unset. An unreadable one must not stop
    the gateway answering: it is logged as an error (once per container, as app.py
    reads it once) and watches nothing."""
    if not text:
        return None
    try:
        amount = Decimal(values.money(text.strip()))
    except ValueError:
        amount = None
    if amount is None or amount < 0:
        logs.event(log, "BALANCE_LOW_THRESHOLD unreadable: the balance is not watched", logging.ERROR, value=text)
        return None
    return amount


class BalanceWatch(Protocol):
    def reading(self, balance: str, currency: str | None, threshold: Decimal) -> None:
        """Told of every balance read while a threshold is set; never raises."""


class Account:
    def __init__(self, balance: Callable[[], Mapping[str, Any]], low: Decimal | None,
                 watch: BalanceWatch | None = None) -> None:
        self._balance = balance
        self._low = low
        self._watch = watch

    def balance(self) -> dict[str, Any]:
        """The panel's balance answer; logs "balance low" if it is under the threshold."""
        answer = dict(self._balance())
        if self._low is None:
            return answer
        if Decimal(answer["balance"]) < self._low:
            logs.event(log, "balance low", logging.WARNING, balance=answer["balance"],
                       currency=answer.get("currency"), threshold=str(self._low))
        if self._watch is not None:
            self._watch.reading(answer["balance"], answer.get("currency"), self._low)
        return answer


class AccountCurrency:
    def __init__(self, balance: Callable[[], Mapping[str, Any]], *, retry_after: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._balance = balance
        self._retry_after = retry_after
        self._clock = clock
        self._known: str | None = None
        self._next_try = float("-inf")

    def __call__(self) -> str | None:
        """The currency code, or None while it cannot be learned."""
        if self._known is not None:
            return self._known
        now = self._clock()
        if now < self._next_try:
            return None
        self._next_try = now + self._retry_after  # also keeps concurrent requests from all asking
        try:
            currency = self._balance().get("currency")
        except Exception as exc:  # never let the currency fail an order that was placed
            logs.event(log, "account currency lookup failed", logging.WARNING, error=type(exc).__name__,
                       code=getattr(exc, "code", None))
            return None
        if isinstance(currency, str) and currency:
            self._known = currency
        return self._known

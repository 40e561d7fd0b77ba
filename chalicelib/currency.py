"""The panel account's currency, for order answers, learned from `balance` once per container.

The panel names its currency only in the `balance` answer. An order must neither
wait for that on every request nor fail without it, so the first order of a
container asks once and the answer is kept; after a failure the next order asks
again no sooner than `retry_after` seconds, and until then answers None.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from chalicelib import logs

log = logging.getLogger(__name__)


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

"""The panel account's balance, watched against the operator's BALANCE_LOW_THRESHOLD.

Every reading of the balance (GET /balance and the currency lookup) goes through
`Account.balance`, which logs one "balance low" line whenever the balance read is
under the threshold: the `balance-low` alarm counts those lines (infra/resources.json).
It is a line per reading, not per crossing (issue 10's `balance.low` events will be that).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Callable, Mapping

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


class Account:
    def __init__(self, balance: Callable[[], Mapping[str, Any]], low: Decimal | None) -> None:
        self._balance = balance
        self._low = low

    def balance(self) -> dict[str, Any]:
        """The panel's balance answer; logs "balance low" if it is under the threshold."""
        answer = dict(self._balance())
        if self._low is not None and Decimal(answer["balance"]) < self._low:
            logs.event(log, "balance low", logging.WARNING, balance=answer["balance"],
                       currency=answer.get("currency"), threshold=str(self._low))
        return answer

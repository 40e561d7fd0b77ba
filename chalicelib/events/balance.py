"""`balance.low`: one event per crossing of BALANCE_LOW_THRESHOLD, not one per reading.

The account's state is one item, flipped by a conditional write:

    ACCOUNT / BALANCE_LOW   low (bool), balance, currency, threshold, changed_at

A reading under the threshold sets `low` only if it was not set, in the same
transaction as the events, so two readings crossing at once make one set of events
(the loser's condition fails and it writes nothing). A reading at or above the
threshold clears `low` (re-arms, no event); a reading that changes nothing writes
nothing but the refused condition.

Whose event: an event belongs to a caller, and the balance to the whole deployment, so
each crossing makes one event per caller the secret knows (`callers`), each on its own
log. The first transaction holds the flip and up to 99 of them (DynamoDB's limit is 100
items); further callers' events follow in transactions of their own (a crash between
them loses those callers' events: a deployment with a hundred keys is not one this
gateway is built for).
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, Callable, Sequence

from chalicelib import logs
from chalicelib.dynamo import Cancelled, Table
from chalicelib.events import model
from chalicelib.events.model import Event

log = logging.getLogger(__name__)

STATE = {"pk": "ACCOUNT", "sk": "BALANCE_LOW"}
PER_TRANSACTION = 100


def _no_op(events: Sequence[Event]) -> None:
    pass


class BalanceLowEvents:
    """Told of every balance reading (`chalicelib.account.BalanceWatch`)."""

    def __init__(self, client: Any, table: str, callers: Callable[[], Sequence[str]],
                 published: Callable[[Sequence[Event]], None] = _no_op, clock: Callable[[], float] = time.time) -> None:
        self._db = Table(client, table)
        self._table = table
        self._callers = callers
        self._published = published
        self._clock = clock

    def reading(self, balance: str, currency: str | None, threshold: Decimal) -> None:
        """Record this reading; never raises (the balance was read: answering it matters more)."""
        try:
            if Decimal(balance) < threshold:
                self._fell({"balance": balance, "currency": currency, "threshold": str(threshold)})
            else:
                self._rose()
        except Exception as exc:
            logs.event(log, "balance.low not recorded", logging.WARNING, error=type(exc).__name__)

    def _fell(self, data: dict[str, Any]) -> None:
        now = self._clock()
        events = [model.new(caller, "balance.low", data, now) for caller in dict.fromkeys(self._callers())]
        flip = {"Update": {
            "TableName": self._table, "Key": self._db.item(STATE),
            "UpdateExpression": "SET low = :low, balance = :balance, currency = :currency, "
                                "threshold = :threshold, changed_at = :at",
            "ConditionExpression": "attribute_not_exists(low) OR low = :armed",
            "ExpressionAttributeValues": self._db.values({
                ":low": True, ":armed": False, ":balance": data["balance"], ":currency": data["currency"],
                ":threshold": data["threshold"], ":at": model.rfc3339(now)})}}
        puts = [{"Put": {"TableName": self._table, "Item": self._db.item(model.to_item(event)),
                         "ConditionExpression": "attribute_not_exists(pk)"}} for event in events]
        first = PER_TRANSACTION - 1
        try:
            self._db.transact([flip, *puts[:first]])
        except Cancelled as exc:
            if exc.reasons[0].get("Code") == "ConditionalCheckFailed":
                return  # already low: this reading crossed nothing
            raise
        written = len(puts[:first])
        try:
            for start in range(first, len(puts), PER_TRANSACTION):
                self._db.transact(puts[start:start + PER_TRANSACTION])
                written = start + len(puts[start:start + PER_TRANSACTION])
        finally:
            logs.event(log, "balance.low events written", balance=data["balance"], threshold=data["threshold"], events=written)
            self._published(events[:written])

    def _rose(self) -> None:
        self._db.conditional(
            "update_item", TableName=self._table, Key=self._db.item(STATE),
            UpdateExpression="SET low = :armed, changed_at = :at", ConditionExpression="low = :low",
            ExpressionAttributeValues=self._db.values({":low": True, ":armed": False,
                                                       ":at": model.rfc3339(self._clock())}))


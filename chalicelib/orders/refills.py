"""Refills made through the gateway: whose they are, and their last known status.

    REFILL#<refill id> / REFILL   refill_id, order_id, caller, status, state, created_at,
                                  work = "refill" while the refill may still change

The panel cannot say who asked for a refill, so the gateway records each one it
creates: a key limited to its own orders sees only its refills, and the status
sync finds the open ones through the table's sparse WORK_INDEX.
"""

from __future__ import annotations

from typing import Any, Protocol

from chalicelib.dynamo import Table
from chalicelib.events.model import rfc3339

OPEN_REFILL_STATES = frozenset({"pending", "in_progress"})


class RefillStore(Protocol):
    def record(self, caller: str, created: list[tuple[int, int]], now: float) -> None:
        """Keep the refills `caller` just created, as (refill id, order id) pairs."""

    def owners(self, refill_ids: list[int]) -> dict[int, str]:
        """The caller of each refill made through the gateway; others are left out."""


class DynamoRefills:
    def __init__(self, client: Any, table: str) -> None:
        self._db = Table(client, table)
        self._table = table

    def record(self, caller: str, created: list[tuple[int, int]], now: float) -> None:
        for start in range(0, len(created), 100):  # a transaction holds at most 100 items
            self._db.transact([{"Put": {"TableName": self._table, "Item": self._db.item({
                **_key(refill_id), "refill_id": refill_id, "order_id": order_id, "caller": caller,
                "status": "Pending", "state": "pending", "created_at": rfc3339(now), "work": "refill"})}}
                for refill_id, order_id in created[start:start + 100]])

    def owners(self, refill_ids: list[int]) -> dict[int, str]:
        items = self._db.batch_get([_key(i) for i in dict.fromkeys(refill_ids)])
        return {int(item["refill_id"]): item["caller"] for item in items}


def _key(refill_id: int) -> dict[str, str]:
    return {"pk": f"REFILL#{refill_id}", "sk": "REFILL"}

"""Refills made through the gateway: whose they are, and their last known status.

    REFILL#<refill id> / REFILL   refill_id, order_id, caller, status, state, created_at,
                                  work = "refill" while the refill may still change

The panel cannot say who asked for a refill, so the gateway records each one it
creates: a key limited to its own orders sees only its refills, and the status
sync finds the open ones through the table's sparse WORK_INDEX. A refill's record
and its `refill.created` event are one transaction, and so is each change of its
status and its `refill.<state>` event, conditional on the status it was read with.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from chalicelib.dynamo import Table
from chalicelib.events import model
from chalicelib.events.model import Event, rfc3339
from chalicelib.orders.store import write_change

OPEN_REFILL_STATES = frozenset({"pending", "in_progress"})
FINAL_REFILL_STATES = frozenset({"completed", "rejected"})  # the sync lets go of them
REFILL_WORK = "refill"


class RefillStore(Protocol):
    def record(self, caller: str, created: list[tuple[int, int]], now: float) -> None:
        """Keep the refills `caller` just created, as (refill id, order id) pairs."""

    def owners(self, refill_ids: list[int]) -> dict[int, str]:
        """The caller of each refill made through the gateway; others are left out."""

    def open_refills(self) -> list[dict[str, Any]]:
        """Every recorded refill, of any caller, that may still change (the WORK_INDEX)."""

    def record_status(self, item: dict[str, Any], current: dict[str, Any]) -> Event | None:
        """The one write of a new panel status of a recorded refill, with its event."""


class DynamoRefills:
    def __init__(self, client: Any, table: str,
                 published: Callable[[Sequence[Event]], None] = lambda _events: None) -> None:
        self._db = Table(client, table)
        self._table = table
        self._published = published

    def record(self, caller: str, created: list[tuple[int, int]], now: float) -> None:
        events: list[Event] = []
        for start in range(0, len(created), 50):  # a transaction holds at most 100 items: 2 per refill
            part = [(refill_id, order_id, model.new(caller, "refill.created", _data(
                refill_id, order_id, "Pending", "pending"), now)) for refill_id, order_id in created[start:start + 50]]
            # The token makes an SDK retry of a write that did happen a no-op, not a second event.
            self._db.transact([item for refill_id, order_id, event in part for item in (
                {"Put": {"TableName": self._table, "Item": self._db.item({
                    **_key(refill_id), "refill_id": refill_id, "order_id": order_id, "caller": caller,
                    "status": "Pending", "state": "pending", "created_at": rfc3339(now), "work": REFILL_WORK})}},
                self._db.put_new(model.to_item(event)))], token=part[0][2].id.removeprefix("evt_"))
            events += [event for _, _, event in part]
        self._published(events)

    def owners(self, refill_ids: list[int]) -> dict[int, str]:
        items = self._db.batch_get([_key(i) for i in dict.fromkeys(refill_ids)])
        return {int(item["refill_id"]): item["caller"] for item in items}

    def open_refills(self) -> list[dict[str, Any]]:
        return self._db.work(REFILL_WORK)

    def record_status(self, item: dict[str, Any], current: dict[str, Any]) -> Event | None:
        """As the order ledger's `record_status`: conditional on the status read, the event
        when the state changed, nothing raised when another writer was first."""
        previous = item.get("status")
        if current["status"] == previous:
            return None
        refill_id, order_id, state = int(item["refill_id"]), int(item["order_id"]), current["state"]
        type_ = model.state_type("refill", state) if state != item.get("state") else None
        event = model.new(item["caller"], type_, _data(refill_id, order_id, current["status"], state)) \
            if type_ else None
        expression = "SET #status = :status, #state = :state"
        values: dict[str, Any] = {":status": current["status"], ":state": state, ":previous": previous}
        if state in FINAL_REFILL_STATES:
            expression += " REMOVE #work"
        else:
            expression += ", #work = :work"
            values[":work"] = REFILL_WORK
        update = {"Update": {
            "TableName": self._table, "Key": self._db.item(_key(refill_id)), "UpdateExpression": expression,
            "ConditionExpression": "#status = :previous",
            "ExpressionAttributeNames": {"#status": "status", "#state": "state", "#work": "work"},
            "ExpressionAttributeValues": self._db.values(values)}}
        return write_change(self._db, update, event, self._published)


def _data(refill_id: int, order_id: int, status: str, state: str) -> dict[str, Any]:
    return {"id": refill_id, "order": order_id, "status": status, "state": state}


def _key(refill_id: int) -> dict[str, str]:
    return {"pk": f"REFILL#{refill_id}", "sk": "REFILL"}

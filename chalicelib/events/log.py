"""The event log as callers read it: `GET /events` (a page, newest first) and `GET /events/{id}`.

A caller's events are one partition (`EVENTS#<caller>`) sorted by id, and ids sort
by time (events.model), so a newest-first page is one Query read backwards. The
cursor is the id of the last event a page returned: the next page starts right
after it, so pages never repeat or skip an event, however the type filter thins
them out. It goes out opaque and comes back checked.
"""

from __future__ import annotations

from typing import Any, Protocol

from chalicelib import dynamo, errors
from chalicelib.dynamo import Table
from chalicelib.events import model
from chalicelib.events.model import Event

MAX_PAGES = 10  # DynamoDB pages read for one answer with a type filter (as desk.MAX_LEDGER_PAGES)


class EventLog(Protocol):
    def page(self, caller: str, limit: int = 25, cursor: str | None = None,
             type: str | None = None) -> dict[str, Any]:
        """`{"events": [...], "next_cursor": ...}`, newest first; `type` exact or a family."""

    def get(self, caller: str, event_id: str) -> dict[str, Any]:
        """The caller's event `event_id`, or NotFound(event_not_found)."""


class DynamoEventLog:
    def __init__(self, client: Any, table: str) -> None:
        self._db = Table(client, table)
        self._table = table

    def page(self, caller: str, limit: int = 25, cursor: str | None = None,
             type: str | None = None) -> dict[str, Any]:
        wanted = model.type_filter(type)
        after = dynamo.read_cursor(cursor, model.is_event_id) if cursor else None
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": self._db.values({":pk": model.pk(caller)}),
            "ScanIndexForward": False,
        }
        found: list[Event] = []
        for _ in range(MAX_PAGES):
            if after is not None:
                params["ExclusiveStartKey"] = self._db.item({"pk": model.pk(caller), "sk": after})
            # Unfiltered, a read of what is missing fills the page; filtered, read more at a time.
            params["Limit"] = limit - len(found) if type is None else min(1000, limit * 4)
            answer = self._db.call("query", **params)
            items = [self._db.plain(item) for item in answer.get("Items", [])]
            for item in items:
                after = item["sk"]  # examined: the next read starts after it
                if wanted(item["type"]):
                    found.append(model.from_item(item))
                    if len(found) == limit:
                        break
            if len(found) == limit:
                more = after != items[-1]["sk"] or "LastEvaluatedKey" in answer
                return _answer(found, after if more else None)
            if not answer.get("LastEvaluatedKey"):
                return _answer(found, None)
        # The filter kept too little of what was read: a short page, and where to go on.
        return _answer(found, after)

    def get(self, caller: str, event_id: str) -> dict[str, Any]:
        if model.is_event_id(event_id):
            found = self._db.call("get_item", TableName=self._table, ConsistentRead=True,
                                  Key=self._db.item({"pk": model.pk(caller), "sk": event_id}))
            if found.get("Item"):
                return model.from_item(self._db.plain(found["Item"])).public()
        # Another caller's event is not found either: a key learns nothing of others' events.
        raise errors.EventNotFound("No such event.")


def _answer(events: list[Event], after: str | None) -> dict[str, Any]:
    return {"events": [event.public() for event in events],
            "next_cursor": dynamo.cursor(after) if after is not None else None}

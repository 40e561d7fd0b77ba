"""The outbox: every event reaches every publisher at least once, whatever crashes.

An event is written in the same transaction as the change that made it, carrying
`work = "outbox"` (events.model.to_item), so the table's sparse WORK_INDEX holds
exactly the events some publisher (a `Sink`: EventBridge, webhooks) may not have yet.
Right after its transaction the writer hands the events to `Outbox.dispatch`, which
publishes them in-line; the scheduled `sweep` publishes whatever dispatch could not
(a publisher down, a crash between the write and the publish):

    transaction: change + event (work = "outbox")
        -> dispatch / sweep: sink.publish(events not yet in the sink's name)
        -> per event: ADD published {sinks that took it}; REMOVE work once all have it

Each item keeps the names of the sinks that took it (`published`, a string set), so a
sink is not given an event again because another one failed. A crash between a publish
and its record gives that event once more: at least once, never lost. Consumers tell
repeats apart by the event's id (webhooks: one delivery per event and subscription;
EventBridge: `detail.id`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

from chalicelib import errors, logs
from chalicelib.dynamo import WORK_INDEX, Table
from chalicelib.events import model
from chalicelib.events.model import Event

log = logging.getLogger(__name__)

PUBLISHED = "published"  # the item's string set of the sinks that have the event


class Sink(Protocol):
    name: str  # recorded on each event it took: keep it stable ("eventbridge", "webhooks")

    def publish(self, events: Sequence[Event]) -> None:
        """Hand these events on. Raise on failure: `errors.PublishFailed` naming the ones
        that failed when the others went through, anything else for the whole batch."""


class Outbox:
    """Publishes events to every sink and records, per event, which sinks have it.

    `settle_seconds`: the sweep leaves younger events to their writer's dispatch, so the
    two rarely publish the same event twice. `page`, `max_events`: one sweep reads at most
    `max_events` events, `page` per Query, oldest first, so its work is bounded.
    `stale_seconds`: a sink failing on events older than this is logged as an error (the
    `error-lines` alarm), younger ones as a warning (a blip the next sweep repairs)."""

    def __init__(self, client: Any, table: str, sinks: Sequence[Sink], *, settle_seconds: float = 30.0,
                 page: int = 100, max_events: int = 500, stale_seconds: float = 900.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = Table(client, table)
        self._table = table
        self._sinks = list(sinks)
        self._names = frozenset(sink.name for sink in self._sinks)
        self._settle = settle_seconds
        self._page = page
        self._max = max_events
        self._stale = stale_seconds
        self._clock = clock

    def dispatch(self, events: Sequence[Event]) -> None:
        """Publish events just written, in-line. Never raises: the writer's change is made,
        and what fails here is still in the outbox for the sweep."""
        if not events:
            return
        try:
            self._publish([(event, frozenset()) for event in events])
        except Exception as exc:
            logs.event(log, "outbox dispatch failed", logging.WARNING, error=type(exc).__name__, events=len(events))

    def sweep(self) -> int:
        """Publish what is still in the outbox and older than `settle_seconds`, oldest first,
        at most `max_events`; returns how many events it read. DynamoDB failures raise."""
        cutoff = model.first_id_at(self._clock() - self._settle)
        read = 0
        start: dict[str, Any] | None = None
        while read < self._max:
            params: dict[str, Any] = {
                "TableName": self._table, "IndexName": WORK_INDEX, "Limit": min(self._page, self._max - read),
                "KeyConditionExpression": "#work = :outbox AND sk < :cutoff",
                "ExpressionAttributeNames": {"#work": "work"},
                "ExpressionAttributeValues": self._db.values({":outbox": model.OUTBOX, ":cutoff": cutoff})}
            if start is not None:
                params["ExclusiveStartKey"] = start
            answer = self._db.call("query", **params)
            items = [self._db.plain(item) for item in answer.get("Items", [])]
            read += len(items)
            self._publish([(model.from_item(item), frozenset(item.get(PUBLISHED, ()))) for item in items])
            start = answer.get("LastEvaluatedKey")
            if start is None:
                break
        return read

    def _publish(self, pending: list[tuple[Event, frozenset[str]]]) -> None:
        """Give each sink the events it lacks, then record what each event reached."""
        reached = {event.id: set(had) for event, had in pending}
        for sink in self._sinks:
            wanted = [event for event, had in pending if sink.name not in had]
            if wanted:
                for event_id in self._publish_to(sink, wanted):
                    reached[event_id].add(sink.name)
        for event, had in pending:
            self._record(event, reached[event.id] - had, done=reached[event.id] >= self._names)

    def _publish_to(self, sink: Sink, events: list[Event]) -> Iterable[str]:
        """The ids of the events `sink` took."""
        try:
            sink.publish(events)
            return [event.id for event in events]
        except Exception as exc:  # a sink down must not keep the others from publishing
            failed = exc.failed if isinstance(exc, errors.PublishFailed) and exc.failed else None
            oldest = min(event.id for event in events)
            stale = oldest < model.first_id_at(self._clock() - self._stale)
            logs.event(log, "publish failed", logging.ERROR if stale else logging.WARNING, sink=sink.name,
                       error=type(exc).__name__, events=len(events),
                       failed=len(failed) if failed is not None else len(events), oldest=oldest)
            return [event.id for event in events if failed is not None and event.id not in failed]

    def _record(self, event: Event, took: set[str], *, done: bool) -> None:
        if not took and not done:
            return
        # The item must exist: an update of an expired event would write a stray item.
        actions = ([f"ADD {PUBLISHED} :took"] if took else []) + (["REMOVE #work"] if done else [])
        params: dict[str, Any] = {
            "TableName": self._table, "Key": self._db.item({"pk": model.pk(event.caller), "sk": event.id}),
            "UpdateExpression": " ".join(actions), "ConditionExpression": "attribute_exists(pk)"}
        if done:
            params["ExpressionAttributeNames"] = {"#work": "work"}
        if took:
            params["ExpressionAttributeValues"] = self._db.values({":took": set(took)})
        self._db.conditional("update_item", **params)

"""The EventBridge sink: each event on the operator's bus, where any AWS service can
subscribe to it with a rule (source `smm-gateway`, detail-type the event type).

PutEvents takes at most 10 entries a call, and may refuse some entries and take the
rest (FailedEntryCount, an ErrorCode in the refused entries' places): the refused ones
are raised as `PublishFailed`, so the outbox gives them again and only them. A call
that fails whole stops this publish (every event not yet put is failed): a bus that is
down costs one bounded call, not one per batch, and never holds up the sync.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from chalicelib import errors
from chalicelib.events.model import Event

SOURCE = "smm-gateway"
MAX_ENTRIES = 10  # PutEvents' limit per call


class EventBridgeSink:
    name = "eventbridge"

    def __init__(self, client: Any, bus: str) -> None:
        self._client = client
        self._bus = bus

    def publish(self, events: Sequence[Event]) -> None:
        # A webhook.test event is for the one subscription it names, not for the bus.
        events = [event for event in events if event.type != "webhook.test"]
        failed: set[str] = set()
        for start in range(0, len(events), MAX_ENTRIES):
            batch = events[start:start + MAX_ENTRIES]
            try:
                answer = self._client.put_events(Entries=[self._entry(event) for event in batch])
            except Exception as exc:
                failed.update(event.id for event in events[start:])
                raise errors.PublishFailed("EventBridge did not answer.", frozenset(failed)) from exc
            if answer.get("FailedEntryCount"):
                entries = answer.get("Entries") or []
                if len(entries) != len(batch):  # which ones is unknown: all of them again
                    entries = [{"ErrorCode": "Unknown"}] * len(batch)
                failed.update(event.id for event, entry in zip(batch, entries) if entry.get("ErrorCode"))
        if failed:
            raise errors.PublishFailed(f"EventBridge refused {len(failed)} of {len(events)} events.",
                                       frozenset(failed))

    def _entry(self, event: Event) -> dict[str, Any]:
        return {"EventBusName": self._bus, "Source": SOURCE, "DetailType": event.type,
                "Detail": json.dumps(event.public(), separators=(",", ":")),
                "Time": datetime.fromisoformat(event.created_at.replace("Z", "+00:00"))}

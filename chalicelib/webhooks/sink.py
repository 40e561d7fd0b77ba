"""The outbox's webhook sink: events become deliveries and queue messages, never HTTP.

For each event, every enabled subscription of the event's caller whose filter takes
it gets one delivery (its id follows from the event, so a second publish of the
same event finds it) and one message for its first attempt. Publishing is DynamoDB
and SQS calls only: whoever publishes (the status sync, an order) never waits on a
subscriber.

Crash points, and what recovers each (the outbox gives an event to a sink again
until `publish` returns, events/outbox.py):

    dies before the delivery is written     the sweep publishes again: it is written then
    dies between the delivery and its send  the sweep publishes again: the delivery is
                                            found unattempted and its message is sent
    dies after the send                     the sweep may publish again: a second message
                                            for attempt 1 finds it claimed or made (worker.py)
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from chalicelib.events.model import Event
from chalicelib.webhooks.deliveries import PENDING, Delivery, DeliveryStore
from chalicelib.webhooks.queue import Message, Queue
from chalicelib.webhooks.subscriptions import SubscriptionStore, Webhook


class WebhookSink:
    name = "webhooks"

    def __init__(self, subscriptions: SubscriptionStore, deliveries: DeliveryStore, queue: Queue,
                 clock: Callable[[], float] = time.time) -> None:
        self._subscriptions = subscriptions
        self._deliveries = deliveries
        self._queue = queue
        self._clock = clock

    def publish(self, events: Sequence[Event]) -> None:
        """Raises (StorageUnavailable, QueueUnavailable) if any step fails: the outbox retries all."""
        known: dict[str, list[Webhook]] = {}
        for event in events:
            if event.caller not in known:
                known[event.caller] = self._subscriptions.all(event.caller)
            for webhook in known[event.caller]:
                if webhook.wants(event):
                    self._deliver(event, webhook)

    def _deliver(self, event: Event, webhook: Webhook) -> None:
        delivery = Delivery.of(event, webhook, self._clock())
        found = self._deliveries.create(delivery)
        if found is not None and (found.status != PENDING or found.attempts > 0):
            return  # made before, and its first attempt is known to have been queued
        self._queue.send(Message(webhook.caller, webhook.id, delivery.id, 1))

"""The delivery worker: one queue message, at most one attempt, every attempt logged.

The deployed SQS consumer and the local run's polling thread both hand each message
to `Worker.handle`. A message says which attempt of which delivery to make; the
worker makes it only if the delivery still wants it (see deliveries.py for the
claim and the record), and enqueues the next attempt itself:

    2xx           delivered
    410           failed, and the subscription is disabled at once
    anything else retrying after the next delay of WEBHOOK_RETRY_SECONDS (with jitter),
                  or failed once the delays are used up

SQS delays stop at 900 s: a longer wait is enqueued with 900 s, and a message that
arrives before the delivery's `next_attempt_at` is simply sent on again.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, Sequence

from chalicelib import errors, logs
from chalicelib.webhooks import deliveries as d
from chalicelib.webhooks.deliveries import Delivery, DeliveryStore, Outcome
from chalicelib.webhooks.queue import Message, Queue
from chalicelib.webhooks.sender import Answer, Sender
from chalicelib.webhooks.subscriptions import ENABLED, SubscriptionStore
from chalicelib.webhooks.targets import Targets

LOG = logging.getLogger("chalicelib.webhooks")
DEFAULT_RETRY_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1  # each delay is stretched or shrunk by up to 10 %


def retry_seconds(text: str | None) -> tuple[float, ...]:
    """WEBHOOK_RETRY_SECONDS: comma-separated delays, each a non-negative number of seconds."""
    if not text or not text.strip():
        return DEFAULT_RETRY_SECONDS
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"WEBHOOK_RETRY_SECONDS must be comma-separated seconds, not {text!r}") from None
    if any(not 0 <= delay < 10**7 for delay in delays):
        raise ValueError(f"WEBHOOK_RETRY_SECONDS must hold delays from 0 to 10^7 seconds, not {text!r}")
    return delays


class Worker:
    def __init__(self, subscriptions: SubscriptionStore, deliveries: DeliveryStore, queue: Queue,
                 targets: Targets, sender: Sender, delays: Sequence[float] = DEFAULT_RETRY_SECONDS,
                 clock: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random) -> None:
        self._subscriptions = subscriptions
        self._deliveries = deliveries
        self._queue = queue
        self._targets = targets
        self._sender = sender
        self._delays = tuple(delays)
        self._clock = clock
        self._jitter = jitter

    def handle(self, message: Message) -> str:
        """Do what `message` asks, if it is still to do; returns what happened (for logs and tests).

        Raises only when the table or the queue fails: the message then comes back (SQS)."""
        delivery = self._deliveries.get(message.caller, message.webhook_id, message.delivery_id)
        if delivery is not None and delivery.attempts == message.attempt:
            # Made and recorded: again what follows it, which a worker dying right after
            # the record would have left undone (a second message for the next attempt is harmless).
            self._follow_up(message, delivery.status, delivery.response_status, delivery.next_attempt_at)
            return "done"
        if delivery is None or delivery.status not in d.OPEN or delivery.attempts > message.attempt:
            return "done"
        now = self._clock()
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + 1:
            self._queue.send(message, delay=delivery.next_attempt_at - now)
            return "waiting"
        webhook = self._subscriptions.get(message.caller, message.webhook_id)
        if webhook is None or webhook.status != ENABLED:
            self._deliveries.stop(delivery, "the subscription was deleted or disabled", now)
            return "stopped"
        claim = self._deliveries.claim(delivery, message.attempt, now)
        if claim == d.GONE:
            self._deliveries.stop(delivery, "the subscription was deleted or disabled", now)
            return "stopped"
        if claim == d.TAKEN:
            current = self._deliveries.get(message.caller, message.webhook_id, message.delivery_id)
            if current is None or current.status not in d.OPEN or current.attempts != message.attempt - 1:
                return "done"  # made (or closed) meanwhile
            # Another copy holds the attempt, or a write conflicted: this copy comes back when
            # that claim's lease ends (or in a second), so an attempt whose worker died, or
            # that lost a race nobody won, is still made: never dropped.
            self._queue.send(message, delay=max(1.0, (current.inflight_until or now) - now + 1))
            return "busy"
        answer = self._attempt(webhook.url, webhook.secret, delivery)
        outcome = self._outcome(delivery, message.attempt, answer, now)
        if not self._deliveries.record(delivery, message.attempt, outcome):
            return "done"  # recorded already: a copy whose claim had run out made it too
        logs.event(LOG, "webhook attempt", logging.INFO if outcome.status == d.DELIVERED else logging.WARNING,
                   caller=message.caller, webhook_id=message.webhook_id, delivery_id=delivery.id,
                   event_id=delivery.event_id, attempt=message.attempt, status=outcome.status,
                   response_status=answer.status, error=answer.error, duration_ms=answer.duration_ms)
        self._follow_up(message, outcome.status, answer.status, outcome.next_attempt_at)
        return outcome.status

    def _follow_up(self, message: Message, status: str, response_status: int | None,
                   next_attempt_at: float | None) -> None:
        """After attempt `message.attempt` is recorded: 410 disables the subscription; a retry is queued."""
        if response_status == 410:
            self._subscriptions.disable(message.caller, message.webhook_id)
        if status == d.RETRYING and next_attempt_at is not None:
            self._queue.send(Message(message.caller, message.webhook_id, message.delivery_id, message.attempt + 1),
                             delay=next_attempt_at - self._clock())

    def _attempt(self, url: str, secret: str, delivery: Delivery) -> Answer:
        try:
            target = self._targets.check(url)  # again: what the name resolves to may have changed
        except errors.InvalidWebhookUrl as refused:
            return Answer(None, f"target refused: {refused.message}", None, 0.0)
        return self._sender.post(target, secret, delivery.event_id, delivery.body.encode())

    def _outcome(self, delivery: Delivery, attempt: int, answer: Answer, now: float) -> Outcome:
        done = self._clock()
        if answer.status is not None and 200 <= answer.status < 300:
            return Outcome(d.DELIVERED, answer.status, None, answer.body, now, answer.duration_ms)
        retry = attempt - delivery.retry_from  # how many delays this run has used
        if answer.status == 410 or retry >= len(self._delays):
            return Outcome(d.FAILED, answer.status, answer.error, answer.body, now, answer.duration_ms)
        delay = self._delays[retry] * (1 + JITTER * (2 * self._jitter() - 1))
        return Outcome(d.RETRYING, answer.status, answer.error, answer.body, now, answer.duration_ms,
                       next_attempt_at=done + delay)

"""The webhook sink and worker: deliveries, retries, 410, timeouts, redirects, crash points.

The stores are the DynamoDB ones on moto; the queue is a list that behaves as SQS
does for the worker (a delay capped at 900 s, a message handled when its delay is
over); the clock is injected, so a schedule of hours runs at once. Receivers are
loopback servers, and each request is checked with the `standardwebhooks` package.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from chalicelib import errors
from chalicelib.events import model
from chalicelib.events.model import Event
from chalicelib.webhooks import deliveries as d
from chalicelib.webhooks.deliveries import DynamoDeliveries
from chalicelib.webhooks.queue import MAX_DELAY, Message
from chalicelib.webhooks.sender import Sender
from chalicelib.webhooks.sink import WebhookSink
from chalicelib.webhooks.subscriptions import DynamoSubscriptions, Subscriptions, Webhook
from chalicelib.webhooks.targets import Targets
from chalicelib.webhooks.worker import Worker, retry_seconds
from local.aws import TABLE, VISIBILITY_SECONDS, EmbeddedAws
from tests.loopback import webhook_receiver

START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class ListQueue:
    """SQS as the worker sees it: each message visible after its delay (at most 900 s)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waiting: list[tuple[float, Message]] = []
        self.delays: list[float] = []
        self.fail_next = 0

    def send(self, message: Message, delay: float = 0) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise errors.QueueUnavailable("SQS did not take the delivery message.")
        self.delays.append(delay)
        self.waiting.append((self.clock() + min(delay, MAX_DELAY), message))


class Kit:
    def __init__(self, aws: EmbeddedAws, timeout: float = 10.0, delays: tuple[float, ...] = (5, 300, 1800),
                 targets: Targets | None = None) -> None:
        client = aws.client("dynamodb")
        self.clock = Clock()
        self.queue = ListQueue(self.clock)
        self.subscriptions = DynamoSubscriptions(client, TABLE)
        self.deliveries = DynamoDeliveries(client, TABLE)
        self.sink = WebhookSink(self.subscriptions, self.deliveries, self.queue, clock=self.clock)
        # The signature's timestamp is real time: the verifier compares it with its own clock.
        self.worker = Worker(self.subscriptions, self.deliveries, self.queue, targets or Targets(allow_private=True),
                             Sender(timeout=timeout), delays=delays, clock=self.clock, jitter=lambda: 0.5)
        self.outcomes: list[str] = []

    def subscribe(self, url: str, events: tuple[str, ...] = ("*",), caller: str = "alice") -> Webhook:
        public = Targets(allow_private=True, resolve=lambda host, port: ["93.184.215.14"])  # no DNS in tests
        service = Subscriptions(self.subscriptions, public, self.sink.publish, clock=self.clock)
        return service.create(caller, {"url": url, "events": list(events)})

    def event(self, type_: str = "order.completed", caller: str = "alice") -> Event:
        return model.new(caller, type_, {"id": 23501, "state": "completed"}, now=self.clock())

    def run(self, until: float = START + 7 * 86400) -> list[str]:
        """Handle messages as they become visible, moving the clock to the next one, until none is left."""
        while self.queue.waiting:
            self.queue.waiting.sort(key=lambda entry: entry[0])
            if self.queue.waiting[0][0] > until:
                break
            visible_at, message = self.queue.waiting.pop(0)
            self.clock.now = max(self.clock.now, visible_at)
            self.outcomes.append(self.worker.handle(message))
        return self.outcomes

    def delivery(self, webhook: Webhook, event: Event) -> d.Delivery:
        found = self.deliveries.get(webhook.caller, webhook.id, "dlv_" + event.id[4:])
        assert found is not None
        return found


@pytest.fixture
def kit(resources: EmbeddedAws) -> Kit:
    return Kit(resources)


def verify(webhook: Webhook, request: Any) -> dict[str, Any]:
    return Verifier(webhook.secret).verify(request.body, request.headers)  # type: ignore[no-any-return]


# -- the sink -------------------------------------------------------------------------------


def test_each_matching_enabled_subscription_of_the_events_caller_gets_one_delivery(kit: Kit) -> None:
    url = "https://93.184.215.14/hook"
    every, orders, refills, exact = (kit.subscribe(url, events) for events in (
        ("*",), ("order.*",), ("refill.*",), ("order.completed", "balance.low")))
    disabled = kit.subscribe(url)
    kit.subscriptions.disable("alice", disabled.id)
    bobs = kit.subscribe(url, caller="bob")

    event = kit.event("order.completed")
    kit.sink.publish([event])

    sent = {message.webhook_id for _, message in kit.queue.waiting}
    assert sent == {every.id, orders.id, exact.id}
    assert refills.id not in sent and disabled.id not in sent and bobs.id not in sent
    assert kit.delivery(every, event).status == d.PENDING


def test_a_test_event_goes_only_to_the_subscription_it_names(kit: Kit) -> None:
    named, other = kit.subscribe("https://93.184.215.14/a"), kit.subscribe("https://93.184.215.14/b")

    kit.sink.publish([model.new("alice", "webhook.test", {"webhook_id": named.id})])

    assert [message.webhook_id for _, message in kit.queue.waiting] == [named.id]
    assert other.id != named.id


def test_publishing_an_event_again_makes_no_second_delivery_or_attempt(kit: Kit) -> None:
    with webhook_receiver() as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.sink.publish([event])  # the outbox gave it again (say, its mark was lost)
        kit.run()
        kit.sink.publish([event])  # and again, after it was delivered
        kit.run()

    assert len(got) == 1
    assert kit.delivery(webhook, event).attempts == 1


def test_a_crash_between_the_delivery_write_and_the_queue_send_is_recovered_by_publishing_again(kit: Kit) -> None:
    # The outbox keeps an event for a sink until its publish returns, and its sweep
    # publishes it again (events/outbox.py): the delivery is found unattempted and queued.
    with webhook_receiver() as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.queue.fail_next = 1
        with pytest.raises(errors.QueueUnavailable):
            kit.sink.publish([event])
        assert kit.queue.waiting == [] and kit.delivery(webhook, event).status == d.PENDING

        kit.sink.publish([event])  # the sweep
        kit.run()

    assert len(got) == 1 and kit.delivery(webhook, event).status == d.DELIVERED


# -- attempts and retries ---------------------------------------------------------------------


def test_a_receiver_failing_twice_gets_the_same_signed_event_a_third_time_and_it_is_delivered(kit: Kit) -> None:
    with webhook_receiver([500, 503]) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.run()

    assert [verify(webhook, request) for request in got] == [event.public()] * 3
    assert {request.headers["webhook-id"] for request in got} == {event.id}
    delivery = kit.delivery(webhook, event)
    assert (delivery.status, delivery.attempts) == (d.DELIVERED, 3)
    assert [entry["response_status"] for entry in delivery.history] == [500, 503, 200]
    assert [entry["attempt"] for entry in delivery.history] == [1, 2, 3]
    # the delays of WEBHOOK_RETRY_SECONDS, in order (jitter at its middle: none)
    assert [entry["at"] - START for entry in delivery.history] == [0, 5, 305]
    assert delivery.public()["next_attempt_at"] is None


def test_the_delays_have_up_to_ten_percent_of_jitter(resources: EmbeddedAws) -> None:
    for jitter, expected in ((0.0, 4.5), (1.0, 5.5)):
        kit = Kit(resources)
        kit.worker._jitter = lambda value=jitter: value  # type: ignore[misc]
        with webhook_receiver([500]) as (url, _):
            caller = f"jitter-{jitter}"  # the table is shared by both rounds
            kit.subscribe(url, caller=caller)
            kit.sink.publish([kit.event(caller=caller)])
            kit.run()
        assert kit.queue.delays[1] == pytest.approx(expected)


def test_a_wait_over_900_seconds_is_enqueued_again_until_the_attempt_is_due(kit: Kit) -> None:
    kit.worker._delays = (1800,)  # type: ignore[misc]
    with webhook_receiver([500]) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        outcomes = kit.run()

    assert outcomes == [d.RETRYING, "waiting", d.DELIVERED]
    assert kit.queue.delays == [0, 1800, 900]  # SQS caps each at 900 s (ListQueue, as SqsQueue)
    assert len(got) == 2 and kit.delivery(webhook, event).history[1]["at"] - START == 1800


def test_a_delivery_fails_once_the_delays_are_used_up(kit: Kit) -> None:
    with webhook_receiver(then=500, body=b"x" * 5000) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.run()

    delivery = kit.delivery(webhook, event)
    assert len(got) == 4 and (delivery.status, delivery.attempts) == (d.FAILED, 4)
    assert delivery.error == "answered 500" and delivery.next_attempt_at is None
    assert delivery.response_body == "x" * 256  # of the 1 KB read, 256 bytes are kept


def test_410_gone_disables_the_subscription_at_once(kit: Kit) -> None:
    with webhook_receiver([410]) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.run()
        kit.sink.publish([kit.event()])  # a later event is not even queued
        kit.run()

    assert len(got) == 1
    assert kit.delivery(webhook, event).status == d.FAILED
    assert kit.subscriptions.get("alice", webhook.id).status == "disabled"  # type: ignore[union-attr]


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(resources: EmbeddedAws) -> None:
    kit = Kit(resources, timeout=2.0)
    with webhook_receiver(stall=30) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        started = time.monotonic()
        kit.worker.handle(kit.queue.waiting.pop(0)[1])
        took = time.monotonic() - started

    assert len(got) == 1 and took < 20  # 2 s timeout against a 30 s stall
    delivery = kit.delivery(webhook, event)
    assert (delivery.status, delivery.response_status) == (d.RETRYING, None)
    assert delivery.error == "no answer within 2 s"


def test_a_redirect_is_not_followed(kit: Kit) -> None:
    with webhook_receiver() as (elsewhere, followed):
        with webhook_receiver([302], headers={"Location": elsewhere}) as (url, got):
            webhook = kit.subscribe(url)
            event = kit.event()
            kit.sink.publish([event])
            kit.worker.handle(kit.queue.waiting.pop(0)[1])

    assert len(got) == 1 and followed == []
    delivery = kit.delivery(webhook, event)
    assert delivery.status == d.RETRYING and delivery.response_status == 302
    assert "redirects are not followed" in (delivery.error or "")


def test_a_target_that_now_resolves_privately_is_refused_before_sending(resources: EmbeddedAws) -> None:
    # subscribed while public; its name now answers a private address (DNS changed)
    kit = Kit(resources, targets=Targets(resolve=lambda host, port: ["10.0.0.7"]))
    webhook = kit.subscribe("https://hooks.example/x")
    event = kit.event()
    kit.sink.publish([event])

    assert kit.worker.handle(kit.queue.waiting.pop(0)[1]) == d.RETRYING
    delivery = kit.delivery(webhook, event)
    assert delivery.error is not None and delivery.error.startswith("target refused: ")
    assert "10.0.0.7" in delivery.error and delivery.response_status is None


# -- at least once, never corrupted ---------------------------------------------------------------


def test_a_message_seen_twice_makes_one_attempt(kit: Kit) -> None:
    with webhook_receiver() as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.queue.waiting.append(kit.queue.waiting[0])  # SQS delivered it twice
        outcomes = kit.run()

    assert outcomes == [d.DELIVERED, "done"] and len(got) == 1
    assert kit.delivery(webhook, event).attempts == 1


def test_a_copy_arriving_while_the_attempt_is_claimed_waits_for_the_claim_and_sends_nothing(kit: Kit) -> None:
    with webhook_receiver() as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        (_, message), = kit.queue.waiting
        assert kit.deliveries.claim(kit.delivery(webhook, event), 1, kit.clock()) == d.CLAIMED  # the other copy

        assert kit.worker.handle(message) == "busy"
        assert got == []
        assert kit.queue.delays[-1] > d.LEASE_SECONDS - 5  # it comes back when the claim's lease is over


def test_a_worker_dying_after_sending_before_logging_makes_one_more_attempt_and_logs_it_once(kit: Kit) -> None:
    class DiesOnce(DynamoDeliveries):
        died = False

        def record(self, delivery: d.Delivery, attempt: int, outcome: d.Outcome) -> bool:
            if not self.died:
                self.died = True
                raise SystemExit("the worker's process died here")
            return super().record(delivery, attempt, outcome)

    kit.worker._deliveries = DiesOnce(kit.deliveries._db.client, TABLE)  # type: ignore[attr-defined]
    with webhook_receiver() as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        (_, message), = kit.queue.waiting
        with pytest.raises(SystemExit):
            kit.run()
        # SQS shows the undeleted message again after its visibility timeout
        kit.queue.waiting.append((kit.clock() + VISIBILITY_SECONDS, message))
        kit.run()

    assert len(got) == 2 and {r.headers["webhook-id"] for r in got} == {event.id}  # at least once
    delivery = kit.delivery(webhook, event)
    assert (delivery.status, delivery.attempts, len(delivery.history)) == (d.DELIVERED, 1, 1)  # logged once


def test_no_attempt_starts_once_the_subscription_is_deleted(kit: Kit) -> None:
    with webhook_receiver([500]) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.run(until=START)  # the first attempt fails; the retry is queued
        assert kit.subscriptions.remove("alice", webhook.id)
        outcomes = kit.run()

    assert outcomes == [d.RETRYING, "stopped"] and len(got) == 1
    delivery = kit.delivery(webhook, event)
    assert delivery.status == d.FAILED and delivery.error == "the subscription was deleted or disabled"


def test_a_redelivery_after_failing_starts_a_new_run_of_retries(kit: Kit) -> None:
    from chalicelib.webhooks.deliveries import DeliveryLog

    kit.worker._delays = (5,)  # type: ignore[misc]
    with webhook_receiver([500, 500, 500]) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        kit.run()
        assert kit.delivery(webhook, event).status == d.FAILED

        DeliveryLog(kit.deliveries, kit.queue).redeliver(webhook, "dlv_" + event.id[4:], kit.clock())
        kit.run()

    delivery = kit.delivery(webhook, event)
    assert len(got) == 4 and (delivery.status, delivery.attempts) == (d.DELIVERED, 4)
    assert [e["response_status"] for e in delivery.history] == [500, 500, 500, 200]


def test_retry_seconds_read_the_setting_or_default_to_the_contracts_schedule() -> None:
    assert retry_seconds(None) == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert retry_seconds("1, 2.5,60") == (1, 2.5, 60)
    for bad in ("a,b", "-1", "1,,2"):
        with pytest.raises(ValueError):
            retry_seconds(bad)


def test_a_refused_connection_is_a_failed_attempt_whose_error_does_not_repeat_the_url(kit: Kit) -> None:
    from local.aws import free_port

    webhook = kit.subscribe(f"http://127.0.0.1:{free_port()}/hook?sig=receivers-own-token")
    event = kit.event()
    kit.sink.publish([event])

    assert kit.worker.handle(kit.queue.waiting.pop(0)[1]) == d.RETRYING
    delivery = kit.delivery(webhook, event)
    assert delivery.error == "connection refused" and delivery.response_status is None


def test_a_delivery_is_redelivered_at_most_up_to_its_hundredth_attempt(kit: Kit) -> None:
    from chalicelib.webhooks.deliveries import MAX_ATTEMPTS, DeliveryLog

    webhook = kit.subscribe("https://93.184.215.14/hook")
    event = kit.event()
    kit.sink.publish([event])
    delivery = kit.delivery(webhook, event)
    for attempt in range(1, MAX_ATTEMPTS + 1):  # its log as 100 attempts leave it
        kit.deliveries.record(delivery, attempt, d.Outcome(d.FAILED, 500, "answered 500", "x" * 256, START, 1.0))

    with pytest.raises(errors.Refused) as refused:
        DeliveryLog(kit.deliveries, kit.queue).redeliver(webhook, delivery.id, kit.clock())
    assert refused.value.code == "delivery_attempts_exhausted" and refused.value.status == 422


def test_a_claim_lost_to_a_conflicting_write_is_tried_again_not_dropped(kit: Kit) -> None:
    class ConflictsOnce(DynamoDeliveries):
        conflicted = False

        def claim(self, delivery: d.Delivery, attempt: int, now: float) -> str:
            if not self.conflicted:  # DynamoDB's TransactionConflict: no claim was taken by anyone
                self.conflicted = True
                return d.TAKEN
            return super().claim(delivery, attempt, now)

    kit.worker._deliveries = ConflictsOnce(kit.deliveries._db.client, TABLE)  # type: ignore[attr-defined]
    with webhook_receiver() as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        outcomes = kit.run()

    assert outcomes == ["busy", d.DELIVERED] and len(got) == 1
    assert kit.delivery(webhook, event).attempts == 1


def test_a_worker_dying_between_the_record_and_queueing_the_retry_leaves_the_retry_to_the_messages_return(
        kit: Kit) -> None:
    with webhook_receiver([500]) as (url, got):
        webhook = kit.subscribe(url)
        event = kit.event()
        kit.sink.publish([event])
        (_, message), = kit.queue.waiting
        kit.queue.waiting.clear()
        kit.queue.fail_next = 1  # the retry's message is not taken: the worker's run fails there
        with pytest.raises(errors.QueueUnavailable):
            kit.worker.handle(message)
        assert kit.delivery(webhook, event).status == d.RETRYING and kit.queue.waiting == []

        kit.queue.waiting.append((kit.clock() + VISIBILITY_SECONDS, message))  # SQS shows it again
        outcomes = kit.run()

    assert outcomes == ["done", d.DELIVERED] and len(got) == 2
    assert kit.delivery(webhook, event).attempts == 2

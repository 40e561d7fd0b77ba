"""The EventBridge sink, against moto: a rule on the bus routes the gateway's events to an
SQS queue, as a cloud consumer would subscribe, and the test reads them back."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.events import model
from chalicelib.events.eventbridge import EventBridgeSink
from chalicelib.events.outbox import Outbox
from local.aws import TABLE, EmbeddedAws, create_table

BUS = "smm-gateway-events"


@pytest.fixture
def bus(aws: EmbeddedAws) -> dict[str, Any]:
    """A bus and a rule sending every `order.*` event of the gateway to a queue."""
    aws.reset()
    events, sqs = aws.client("events"), aws.client("sqs")
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="orders", EventBusName=BUS, EventPattern=json.dumps(
        {"source": ["smm-gateway"], "detail-type": [{"prefix": "order."}]}))
    events.put_targets(Rule="orders", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
    return {"queue": queue}


def received(aws: EmbeddedAws, queue: str, count: int) -> list[dict[str, Any]]:
    """The EventBridge envelopes the queue got, once `count` have arrived (or 30 s passed)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(found) < count and time.monotonic() < deadline:
        answer = aws.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        found += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
    return found


def test_a_rule_on_the_bus_receives_each_event_with_source_type_and_the_event_as_detail(
        aws: EmbeddedAws, bus: dict[str, Any]) -> None:
    # given 23 events (three PutEvents calls of at most 10), one of a type the rule does not want
    events = [model.new("alice", "order.completed", {"id": n, "state": "completed"}) for n in range(22)]
    events.append(model.new("alice", "balance.low", {"balance": "1.00", "currency": "USD", "threshold": "5"}))
    calls: list[int] = []
    client = aws.new_client("events")
    client.meta.events.register("before-parameter-build.events.PutEvents",
                                lambda params, **_: calls.append(len(params["Entries"])))

    # when
    EventBridgeSink(client, BUS).publish(events)

    # then the rule's queue has every order event, as each event's public form
    got = received(aws, bus["queue"], 22)
    assert calls == [10, 10, 3]
    assert sorted(e["detail"]["id"] for e in got) == sorted(e.id for e in events[:22])
    first = next(e for e in got if e["detail"]["id"] == events[0].id)
    assert first["source"] == "smm-gateway" and first["detail-type"] == "order.completed"
    assert first["detail"] == events[0].public()


def test_entries_the_bus_refuses_are_raised_by_id_so_the_outbox_gives_them_again(aws: EmbeddedAws) -> None:
    # given a bus that refuses the second entry of a call (as PutEvents reports a partial failure)
    aws.reset()
    client = aws.new_client("events")
    client.create_event_bus(Name=BUS)

    def refuse_second(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Entries") and len(parsed["Entries"]) > 1:
            parsed["Entries"][1] = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
            parsed["FailedEntryCount"] = 1

    client.meta.events.register("after-call.events.PutEvents", refuse_second)
    events = [model.new("alice", "order.completed", {"id": n}) for n in range(3)]

    with pytest.raises(errors.PublishFailed) as failed:
        EventBridgeSink(client, BUS).publish(events)

    assert failed.value.failed == {events[1].id}


def test_a_bus_that_does_not_answer_fails_the_rest_of_the_publish_at_once(aws: EmbeddedAws) -> None:
    aws.reset()
    client = aws.new_client("events")
    calls: list[int] = []

    def down(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["Entries"]))
        raise ConnectionError("no route to the bus")

    client.meta.events.register("before-parameter-build.events.PutEvents", down)
    events = [model.new("alice", "order.completed", {"id": n}) for n in range(25)]

    with pytest.raises(errors.PublishFailed) as failed:
        EventBridgeSink(client, BUS).publish(events)

    assert calls == [10] and failed.value.failed == {e.id for e in events}


def test_the_outbox_publishes_to_the_bus_again_after_it_failed(aws: EmbeddedAws, bus: dict[str, Any]) -> None:
    # given an event written with its change, and a bus down while it is dispatched
    dynamodb = aws.client("dynamodb")
    create_table(dynamodb)
    from chalicelib.dynamo import Table

    event = model.new("alice", "order.in_progress", {"id": 9, "state": "in_progress"})
    table = Table(dynamodb, TABLE)
    table.transact([{"Put": {"TableName": TABLE, "Item": table.item(model.to_item(event))}}])
    client = aws.new_client("events")
    down = [True]

    def maybe_down(**_: Any) -> None:
        if down[0]:
            raise ConnectionError("bus down")

    client.meta.events.register("before-call.events.PutEvents", maybe_down)
    outbox = Outbox(dynamodb, TABLE, [EventBridgeSink(client, BUS)], clock=lambda: 4_000_000_000.0)
    outbox.dispatch([event])
    nothing = aws.client("sqs").receive_message(QueueUrl=bus["queue"], WaitTimeSeconds=1)
    assert "Messages" not in nothing

    # when the bus is back and the sweep runs
    down[0] = False
    assert outbox.sweep() == 1

    # then the rule gets the event, and the outbox is empty
    (got,) = received(aws, bus["queue"], 1)
    assert got["detail"]["id"] == event.id and got["detail-type"] == "order.in_progress"
    assert outbox.sweep() == 0

"""app.py's publishing: the outbox with its sinks from the environment, and the sweep the
scheduled function runs (`publish_pending`)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chalicelib.dynamo import Table
from chalicelib.events import model
from local.aws import TABLE, EmbeddedAws
from tests.test_eventbridge import BUS, received

SCHEDULED = {"source": "aws.events", "detail_type": "Scheduled Event", "detail": {}, "resources": []}


def unpublished(aws: EmbeddedAws, caller: str = "alice", age: float = 120.0) -> model.Event:
    """An event its writer wrote `age` seconds ago and never dispatched (it crashed)."""
    event = model.Event(model.first_id_at(time.time() - age), "order.completed", model.rfc3339(time.time() - age),
                        {"id": 5, "state": "completed"}, caller)
    table = Table(aws.client("dynamodb"), TABLE)
    table.transact([{"Put": {"TableName": TABLE, "Item": table.item(model.to_item(event))}}])
    return event


def in_outbox(aws: EmbeddedAws, event: model.Event) -> bool:
    key = {"pk": {"S": model.pk(event.caller)}, "sk": {"S": event.id}}
    return "work" in aws.client("dynamodb").get_item(TableName=TABLE, Key=key)["Item"]


@pytest.fixture
def bus(resources: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> str:
    events, sqs = resources.client("events"), resources.client("sqs")
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="everything")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["smm-gateway"]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    return str(queue)


def test_publish_pending_puts_what_a_crashed_writer_left_on_the_bus_named_by_event_bus_name(
        gateway: Any, resources: EmbeddedAws, bus: str) -> None:
    event = unpublished(resources)

    assert gateway.publish_pending() == 1

    (got,) = received(resources, bus, 1)
    assert got["detail"] == event.public() and got["detail-type"] == "order.completed"
    assert not in_outbox(resources, event)


def test_without_event_bus_name_the_outbox_has_only_the_webhook_sink_and_empties(
        gateway: Any, resources: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    event = unpublished(resources)  # its caller has no webhook subscription

    assert [sink.name for sink in gateway.outbox()._sinks] == ["webhooks"]
    assert gateway.publish_pending() == 1 and not in_outbox(resources, event)


def test_the_scheduled_function_runs_the_sweep(gateway: Any, resources: EmbeddedAws, bus: str) -> None:
    from chalice.test import Client

    event = unpublished(resources, "bob")

    with Client(gateway.app) as client:
        client.lambda_.invoke("sync_statuses", client.events.generate_cw_event(**SCHEDULED))

    assert [got["detail"]["id"] for got in received(resources, bus, 1)] == [event.id]
    assert not in_outbox(resources, event)


def test_a_balance_low_event_reaches_the_bus_in_line(client: Any, gateway: Any, panel: Any,
                                                     resources: EmbeddedAws, bus: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from decimal import Decimal

    monkeypatch.setenv("BALANCE_LOW_THRESHOLD", "100")
    panel.set_balance(Decimal("7"))

    assert client.get("/balance").status_code == 200

    got = received(resources, bus, 2)  # alice's and bob's, without waiting for a sweep
    assert sorted(g["detail"]["type"] for g in got) == ["balance.low", "balance.low"]
    assert {g["detail-type"] for g in got} == {"balance.low"}

"""`balance.low`: one event per caller for each crossing of BALANCE_LOW_THRESHOLD, whichever
call read the balance; none for the readings in between, none for going back up."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.dynamo import Table
from chalicelib.events import model
from chalicelib.events.balance import STATE, BalanceLowEvents
from local.aws import TABLE, EmbeddedAws

ORDER = {"service": 1, "link": "https://www.instagram.com/p/balance-events/", "quantity": 100}


def events_of(aws: EmbeddedAws, caller: str) -> list[dict[str, Any]]:
    table = Table(aws.client("dynamodb"), TABLE)
    answer = aws.client("dynamodb").query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                                          ExpressionAttributeValues={":pk": {"S": model.pk(caller)}})
    return [table.plain(item) for item in answer["Items"]]


def low_events(aws: EmbeddedAws, caller: str) -> list[dict[str, Any]]:
    return [model.from_item(item).data for item in events_of(aws, caller) if item["type"] == "balance.low"]


@pytest.fixture
def watched(gateway: Any, panel: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BALANCE_LOW_THRESHOLD", "50")
    return panel


def test_a_reading_under_the_threshold_makes_one_event_for_each_caller(
        client: Any, watched: Any, resources: EmbeddedAws) -> None:
    watched.set_balance(Decimal("49.99"))

    assert client.get("/balance").status_code == 200

    (alice,), (bob,) = low_events(resources, "alice"), low_events(resources, "bob")
    assert alice == bob and set(alice) == {"balance", "currency", "threshold"}
    assert (Decimal(alice["balance"]), alice["currency"], alice["threshold"]) == (Decimal("49.99"), "USD", "50")


def test_readings_while_it_stays_low_make_no_more_events(client: Any, watched: Any, resources: EmbeddedAws) -> None:
    watched.set_balance(Decimal("10"))
    for _ in range(3):
        assert client.get("/balance").status_code == 200
    watched.set_balance(Decimal("5"))
    assert client.get("/balance").status_code == 200

    assert len(low_events(resources, "alice")) == 1 and len(low_events(resources, "bob")) == 1


def test_going_back_up_re_arms_without_an_event_and_the_next_crossing_makes_one(
        client: Any, watched: Any, resources: EmbeddedAws) -> None:
    # given a crossing, then a top-up
    watched.set_balance(Decimal("10"))
    client.get("/balance")
    watched.set_balance(Decimal("50"))  # at the threshold is not under it
    client.get("/balance")
    assert [Decimal(e["balance"]) for e in low_events(resources, "alice")] == [10]

    # when it falls again
    watched.set_balance(Decimal("20"))
    client.get("/balance")
    client.get("/balance")

    # then that is a second crossing: one more event
    assert sorted(Decimal(e["balance"]) for e in low_events(resources, "alice")) == [10, 20]


def test_the_currency_lookup_of_an_order_reports_a_crossing_too(
        client: Any, watched: Any, resources: EmbeddedAws) -> None:
    watched.set_balance(Decimal("40"))

    placed = client.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "balance-events-1"})

    assert placed.status_code == 201
    assert [Decimal(e["balance"]) for e in low_events(resources, "bob")] == [40]


def test_the_events_are_handed_to_the_outbox_at_once(client: Any, watched: Any, resources: EmbeddedAws) -> None:
    # no sink is configured here, so a dispatched event leaves the outbox at once
    watched.set_balance(Decimal("1"))

    client.get("/balance")

    items = events_of(resources, "alice")
    assert [item["type"] for item in items] == ["balance.low"] and "work" not in items[0]


def test_without_a_threshold_nothing_is_written(client: Any, gateway: Any, panel: Any, resources: EmbeddedAws,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BALANCE_LOW_THRESHOLD", raising=False)
    panel.set_balance(Decimal("0"))

    client.get("/balance")

    assert events_of(resources, "alice") == []


def test_two_readings_crossing_at_once_make_one_event_per_caller(resources: EmbeddedAws) -> None:
    published: list[str] = []
    watchers = [BalanceLowEvents(resources.new_client("dynamodb"), TABLE, lambda: ["alice", "bob", "alice"],
                                 published=lambda events: published.extend(e.caller for e in events))
                for _ in range(4)]
    start = threading.Barrier(len(watchers))

    def read(watch: BalanceLowEvents) -> None:
        start.wait()
        watch.reading("3.50", "USD", Decimal("5"))

    threads = [threading.Thread(target=read, args=(watch,)) for watch in watchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(low_events(resources, "alice")) == len(low_events(resources, "bob")) == 1
    assert sorted(published) == ["alice", "bob"]  # the winner's events, dispatched once


def test_a_table_that_fails_does_not_fail_the_reading(aws: EmbeddedAws, log_lines: Any) -> None:
    broken = aws.new_client("dynamodb")
    broken.meta.events.register("before-call.dynamodb.TransactWriteItems",
                                lambda **_: (_ for _ in ()).throw(ConnectionError("gone")))

    BalanceLowEvents(broken, TABLE, lambda: ["alice"]).reading("1", "USD", Decimal("5"))  # does not raise

    assert [line["message"] for line in log_lines] == ["balance.low not recorded"]


def test_more_callers_than_one_transaction_holds_each_get_their_event(resources: EmbeddedAws) -> None:
    callers = [f"caller-{n:03}" for n in range(150)]
    published: list[Any] = []

    BalanceLowEvents(resources.client("dynamodb"), TABLE, lambda: callers,
                     published=published.extend).reading("1", "USD", Decimal("5"))

    assert all(len(low_events(resources, caller)) == 1 for caller in callers)
    assert len(published) == 150
    state = Table(resources.client("dynamodb"), TABLE).plain(
        resources.client("dynamodb").get_item(TableName=TABLE, Key={k: {"S": v} for k, v in STATE.items()})["Item"])
    assert state["low"] is True and state["balance"] == "1"

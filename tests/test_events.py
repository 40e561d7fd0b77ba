"""Order events (issue 10): the status sync, the one status write, and the event log.

Orders are placed through the real desk on the sandbox (manual clock: Pending for
5 s, In progress until 30 s, then Completed) and moto; the sync and the log run on
DynamoDB clients of their own, so faults and request counts hook into one of them.
"""

from __future__ import annotations

from types import SimpleNamespace

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
import requests

from chalicelib import errors
from chalicelib.events import model
from chalicelib.events.log import DynamoEventLog
from chalicelib.orders.existing import Orders
from chalicelib.orders.refills import DynamoRefills
from chalicelib.orders.store import DynamoStore
from chalicelib.orders.sync import StatusSync
from chalicelib.upstream import PanelClient
from local.aws import TABLE
from local.run import scheduled_event
from sandbox import DEFAULT_KEY
from tests.conftest import DEFAULT_TIMEOUT, OTHER_KEY
from tests.ordering_kit import DynamoFault, Rig, Upstream, default_order, make_rig

LIFE = ["order.created", "order.in_progress", "order.completed"]


class Side:
    """The status sync, the event log and a status read, each on its own DynamoDB client."""

    def __init__(self, resources: Any, panel_url: str, pool: ThreadPoolExecutor) -> None:
        self.dynamodb = resources.new_client("dynamodb")
        self.store = DynamoStore(self.dynamodb, TABLE)
        self.client = PanelClient(requests.Session(), Upstream(panel_url), timeout=DEFAULT_TIMEOUT,
                                  sleep=lambda _: None)
        self.refills = DynamoRefills(self.dynamodb, TABLE)
        self.sync = StatusSync(self.client, self.store, self.refills, pool)
        self.orders = Orders(self.client, pool, self.refills, observed=self.sync.observed)
        self.log = DynamoEventLog(resources.new_client("dynamodb"), TABLE)

    def events(self, caller: str = "alice", type_: str | None = None) -> list[dict[str, Any]]:
        """Every event of `caller`, oldest first (read page by page, newest first)."""
        found, cursor = [], None
        while True:
            page = self.log.page(caller, 100, cursor, type_)
            found += page["events"]
            cursor = page["next_cursor"]
            if cursor is None:
                return found[::-1]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=10) as executor:
        yield executor


@pytest.fixture
def rig(resources: Any, panel: Any) -> Rig:
    return make_rig(resources, panel.url)


@pytest.fixture
def side(resources: Any, panel: Any, pool: ThreadPoolExecutor) -> Side:
    return Side(resources, panel.url, pool)


def types(events: list[dict[str, Any]], order_id: int | None = None) -> list[str]:
    return [e["type"] for e in events if order_id is None or e["data"]["id"] == order_id]


def place(rig: Rig, n: int = 1) -> int:
    return rig.place(default_order(f"https://www.instagram.com/p/ev{n}/"), key=f"key-{n}").body["id"]


# -- one order's life -------------------------------------------------------------------


def test_an_order_that_runs_to_completion_makes_created_in_progress_completed_once_each(
        rig: Rig, side: Side, panel: Any) -> None:
    order_id = place(rig)

    side.sync.run()  # still Pending: nothing changes
    panel.advance(6)
    side.sync.run()
    side.sync.run()
    panel.advance(30)
    side.sync.run()
    side.sync.run()

    events = side.events()
    assert types(events) == LIFE
    created, running, done = (e["data"] for e in events)
    assert created == {"id": order_id, "service": 1, "link": "https://www.instagram.com/p/ev1/", "quantity": 100,
                       "state": "pending", "status": "Pending", "charge": None, "remains": None,
                       "idempotency_key": "key-1", "previous_state": None, "previous_status": None}
    assert (running["state"], running["previous_state"], running["previous_status"]) == (
        "in_progress", "pending", "Pending")
    assert (done["state"], done["status"], done["remains"], done["previous_state"]) == (
        "completed", "Completed", 0, "in_progress")
    assert done["charge"] == format(panel.orders[order_id].charge, "f")
    # final: the sync lets go of it
    assert side.store.open_orders() == []


def test_event_ids_are_unique_and_sort_by_time_and_each_event_reads_back_by_id(
        rig: Rig, side: Side, panel: Any) -> None:
    place(rig)
    panel.advance(6)
    side.sync.run()
    panel.advance(30)
    side.sync.run()

    events = side.events()
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [side.log.get("alice", i) for i in ids] == events
    with pytest.raises(errors.NotFound) as other:
        side.log.get("bob", ids[0])
    assert other.value.code == "event_not_found"


# -- overlap and failure ----------------------------------------------------------------------


def test_overlapping_syncs_record_each_change_once(rig: Rig, side: Side, panel: Any, resources: Any,
                                                   pool: ThreadPoolExecutor) -> None:
    ids = [place(rig, n) for n in range(1, 4)]
    other = Side(resources, panel.url, pool)

    def both() -> None:
        start = threading.Barrier(2)

        def one(sync: StatusSync) -> None:
            start.wait(timeout=30)
            sync.run()

        threads = [threading.Thread(target=one, args=(s,)) for s in (side.sync, other.sync)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    for step in (6, 30):
        panel.advance(step)
        for _ in range(3):
            both()

    events = side.events()
    assert all(types(events, i) == LIFE for i in ids)


def test_a_sync_that_loses_the_race_to_another_writes_nothing_and_raises_nothing(
        rig: Rig, side: Side, panel: Any, resources: Any, pool: ThreadPoolExecutor) -> None:
    # given both syncs have read the order as Pending, and the other writes first
    place(rig)
    panel.advance(6)
    other = Side(resources, panel.url, pool)
    fired: list[Any] = []

    def other_first(**_: Any) -> None:
        if not fired:
            fired.append(other.sync.run())

    side.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", other_first)

    # when
    counts = side.sync.run()

    # then
    assert fired[0]["events"] == 1 and counts["events"] == 0 and counts["failed"] == 0
    assert types(side.events()) == ["order.created", "order.in_progress"]


def test_a_panel_failing_mid_sync_loses_nothing_and_doubles_nothing(rig: Rig, side: Side, panel: Any) -> None:
    # given more open orders than one status call holds, so a sync makes two calls
    ids = [place(rig, n) for n in range(1, 4)]
    seeded = seed_open_orders(side, panel, 101)
    panel.advance(6)

    # when one of its status calls fails (a read the panel refuses is not retried)
    panel.inject("status", "error", text="Server is busy")
    first = side.sync.run()
    second = side.sync.run()
    third = side.sync.run()

    # then the orders of the failed call were taken up by the next run, each change once
    assert first["panel_calls"] == 2 and first["failed"] in (4, 100) and first["events"] == 104 - first["failed"]
    assert (second["failed"], second["events"], third["changed"]) == (0, first["failed"], 0)
    events = side.events()
    assert all(types(events, i) == ["order.created", "order.in_progress"] for i in ids)
    assert all(types(events, i) == ["order.in_progress"] for i in seeded)


def test_a_dynamodb_error_between_steps_is_taken_up_by_the_next_sync(rig: Rig, side: Side, panel: Any) -> None:
    ids = [place(rig, n) for n in range(1, 3)]
    panel.advance(6)
    DynamoFault(side.dynamodb, "TransactWriteItems", calls={1})  # the first status write fails

    first = side.sync.run()
    second = side.sync.run()
    panel.advance(30)
    side.sync.run()

    assert (first["failed"], first["events"], second["events"]) == (1, 1, 1)
    assert all(types(side.events(), i) == LIFE for i in ids)


def test_a_crash_after_the_status_write_loses_no_event_and_repeats_none(rig: Rig, side: Side, panel: Any) -> None:
    # given the function dies right after DynamoDB committed the first status write
    order_id = place(rig)
    panel.advance(6)
    crashes = []

    def crash(**_: Any) -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("crash")

    side.dynamodb.meta.events.register("after-call.dynamodb.TransactWriteItems", crash)

    # when
    first = side.sync.run()
    side.sync.run()
    panel.advance(30)
    side.sync.run()

    # then the committed change kept its event, and the next run found nothing more to write
    assert first["failed"] == 1 and crashes == [1]
    assert types(side.events(), order_id) == LIFE


# -- cost -------------------------------------------------------------------------------------


def seed_open_orders(side: Side, panel: Any, count: int, first_link: int = 0,
                     caller: str = "alice") -> list[int]:
    """`count` orders placed on the sandbox and in `caller`'s ledger as open and Pending, as
    completions leave them (written in batches: 1000 orders through the desk would take minutes)."""
    ids = [int(model_free_add(panel, f"https://x.com/seed{first_link + n}")) for n in range(count)]
    items = []
    for n, order_id in enumerate(ids):
        sk = f"2026-01-01T00:00:{n // 1000:02d}.{n % 1000:03d}Z#seed{first_link + n}"
        items.append({"pk": f"LEDGER#{caller}", "sk": sk, "order_id": order_id, "state": "pending",
                      "status": "Pending", "work": "order", "idempotency_key": f"seed-{first_link + n}",
                      "request": '{"link": "https://x.com/", "quantity": 100, "service": 1}', "quantity": 100})
        items.append({"pk": f"ORDER#{order_id}", "sk": "ORDER", "order_id": order_id, "caller": caller,
                      "ledger_sk": sk})
    write_batches(side.dynamodb, items)
    return ids


def model_free_add(panel: Any, link: str) -> int:
    import json

    return json.loads(panel.handle({"key": DEFAULT_KEY, "action": "add", "service": "1", "link": link,
                                    "quantity": "100"}).body)["order"]


def write_batches(dynamodb: Any, items: list[dict[str, Any]]) -> None:
    from chalicelib.dynamo import Table

    table = Table(dynamodb, TABLE)
    for start in range(0, len(items), 25):
        dynamodb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": table.item(item)}}
                                                        for item in items[start:start + 25]]})


class Requests:
    """The DynamoDB operations a client sends (botocore's own event hook)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-call.dynamodb", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


def status_calls(panel: Any) -> int:
    return sum(1 for action, _ in panel.calls if action == "status")


def test_a_thousand_open_orders_cost_ten_status_calls_and_no_write_when_nothing_changed(
        side: Side, panel: Any) -> None:
    seed_open_orders(side, panel, 1000)
    sent = Requests(side.dynamodb)
    before = status_calls(panel)

    counts = side.sync.run()

    assert status_calls(panel) - before == 10
    assert counts == {"orders": 1000, "refills": 0, "panel_calls": 10, "changed": 0, "events": 0, "failed": 0}
    assert set(sent.names) == {"Query"}  # the work index, one page or a few; never a Scan, never a write
    assert all(len(params["orders"].split(",")) <= 100 for action, params in panel.calls if action == "status")


def test_only_the_changed_orders_are_written(side: Side, panel: Any) -> None:
    seed_open_orders(side, panel, 101)
    panel.advance(6)
    sent = Requests(side.dynamodb)

    counts = side.sync.run()
    again = side.sync.run()

    assert (counts["changed"], counts["events"], again["changed"]) == (101, 101, 0)
    assert sent.names.count("TransactWriteItems") == 101


# -- every path that learns a status writes through the one write ---------------------------------


def test_the_ledger_read_and_a_single_order_read_record_changes_the_sync_then_does_not_repeat(
        rig: Rig, side: Side, panel: Any) -> None:
    order_id = place(rig)
    panel.advance(6)

    listed = rig.desk.ledger("alice")  # GET /orders
    after_list = side.sync.run()
    panel.advance(30)
    read = side.orders.status(order_id)  # GET /orders/{id}
    after_read = side.sync.run()

    assert listed["orders"][0]["state"] == "in_progress" and read["state"] == "completed"
    assert (after_list["changed"], after_read["orders"]) == (0, 0)
    assert types(side.events()) == LIFE


def test_a_read_and_the_sync_that_see_the_same_change_make_one_event(
        rig: Rig, side: Side, panel: Any, resources: Any, pool: ThreadPoolExecutor) -> None:
    # given the sync has read the order as Pending, and a GET /orders/{id} records In progress first
    order_id = place(rig)
    panel.advance(6)
    reader = Side(resources, panel.url, pool)  # another container
    reads: list[Any] = []

    def read_first(**_: Any) -> None:
        if not reads:
            reads.append(reader.orders.status(order_id))

    side.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", read_first)

    # when
    counts = side.sync.run()

    # then the read's write won and the sync's was refused: one event
    assert reads and counts["changed"] == 1 and counts["events"] == 0
    assert types(side.events()) == ["order.created", "order.in_progress"]


def test_a_read_of_an_order_not_placed_through_the_gateway_writes_nothing(side: Side, panel: Any) -> None:
    order_id = model_free_add(panel, "https://x.com/elsewhere")
    sent = Requests(side.dynamodb)

    side.orders.status(order_id)

    assert sent.names == ["BatchGetItem"]


def test_a_read_looks_an_owner_up_once_and_an_order_in_no_ledger_once_a_minute(
        rig: Rig, side: Side, panel: Any, pool: ThreadPoolExecutor) -> None:
    # given a container whose clock the test moves
    now = [0.0]
    sync = StatusSync(side.client, side.store, side.refills, pool, clock=lambda: now[0])
    orders = Orders(side.client, pool, side.refills, observed=sync.observed)
    mine, elsewhere = place(rig), model_free_add(panel, "https://x.com/elsewhere")
    sent = Requests(side.dynamodb)

    # when each is read twice, then once more a minute later
    for _ in range(2):
        orders.status(mine)
        orders.status(elsewhere)
    now[0] += 61
    orders.status(elsewhere)
    panel.advance(6)
    orders.status(mine)

    # then: owners once each, the ledger entry each time, the one change written with its event
    assert sent.names == ["BatchGetItem", "BatchGetItem", "BatchGetItem", "BatchGetItem", "BatchGetItem",
                          "BatchGetItem", "TransactWriteItems"]
    assert types(side.events()) == ["order.created", "order.in_progress"]


# -- order.created and order.outcome_unknown, once each ---------------------------------------------


def test_an_unknown_outcome_is_announced_once_however_often_it_is_marked(rig: Rig, side: Side,
                                                                         panel: Any) -> None:
    panel.inject("add", "html_200", after_commit=True)  # the order is placed, its answer unreadable
    with pytest.raises(errors.OutcomeUnknown):
        rig.place(default_order())
    for _ in range(2):
        rig.clock.advance(rig.policy.lease_seconds + 1)
        with pytest.raises(errors.OutcomeUnknown):
            rig.place(default_order())

    events = side.events()
    assert types(events) == ["order.outcome_unknown"]
    assert events[0]["data"]["idempotency_key"] == "key-1" and events[0]["data"]["id"] is None


def test_a_crashed_request_whose_lease_ran_out_is_announced_unknown_once(rig: Rig, side: Side) -> None:
    DynamoFault(rig.dynamodb, "TransactWriteItems", calls={2}, exception=lambda: RuntimeError("crash"))
    rig.place(default_order())
    rig.clock.advance(rig.policy.lease_seconds + 1)
    for _ in range(3):
        with pytest.raises(errors.OutcomeUnknown):
            rig.place(default_order())

    assert types(side.events()) == ["order.outcome_unknown"]


def resolved_while_late(resources: Any) -> tuple[DynamoStore, Any]:
    """An attempt marked unknown and resolved by an operator as order 23501, its completion not yet in."""
    from tests.test_store import attempt

    store = DynamoStore(resources.client("dynamodb"), TABLE)
    late = attempt()
    store.claim(late, 1_800_000_000.0)
    store.mark_unknown("alice", late.key_hash, late.owner, late.ledger_sk)
    store.resolve("alice", late.key_hash, 23501, {"status": 201, "body": {"id": 23501}, "headers": {}},
                  1_800_000_100.0, 1_800_000_000.0)
    return store, late


def test_an_order_resolved_by_an_operator_is_created_once_even_if_its_late_completion_comes(
        rig: Rig, side: Side, panel: Any, resources: Any) -> None:
    # given an attempt whose completion is late, marked unknown and resolved meanwhile
    store, late = resolved_while_late(resources)

    # when the late completion arrives
    store.complete(late, 23501, {"status": 201, "body": {"id": 23501}, "headers": {}}, 1_800_000_100.0)

    # then
    assert types(side.events()) == ["order.outcome_unknown", "order.created"]
    assert store.find("alice", late.key_hash).answer["body"] == {"id": 23501}


def test_a_late_completion_with_another_order_than_the_operator_resolved_is_not_recorded_silently(
        side: Side, resources: Any) -> None:
    store, late = resolved_while_late(resources)

    with pytest.raises(errors.StorageUnavailable):  # the desk logs it: "order placed but not recorded"
        store.complete(late, 23999, {"status": 201, "body": {"id": 23999}, "headers": {}}, 1_800_000_100.0)

    assert types(side.events()) == ["order.outcome_unknown", "order.created"]


def test_writers_hand_what_they_wrote_to_the_published_callback(rig: Rig, side: Side, panel: Any,
                                                                resources: Any) -> None:
    handed: list[str] = []
    store = DynamoStore(side.dynamodb, TABLE, published=lambda events: handed.extend(e.type for e in events))
    sync = StatusSync(side.client, store, side.refills, ThreadPoolExecutor(max_workers=2))
    place(rig)
    panel.advance(6)

    sync.run()
    sync.run()

    assert handed == ["order.in_progress"]


# -- refills ------------------------------------------------------------------------------------------


def test_a_refill_is_created_and_followed_to_completion_with_one_event_per_change(
        rig: Rig, side: Side, panel: Any) -> None:
    order_id = place(rig)
    panel.advance(31)
    refill = side.orders.refill("alice", order_id)

    side.sync.run()
    panel.advance(6)
    side.sync.run()
    side.sync.run()
    panel.advance(20)
    side.sync.run()

    refills = side.events(type_="refill.*")
    assert types(refills) == ["refill.created", "refill.in_progress", "refill.completed"]
    assert refills[-1]["data"] == {"id": refill["id"], "order": order_id, "status": "Completed",
                                   "state": "completed"}
    assert side.refills.open_refills() == []


# -- the log: pages, cursors, the filter ----------------------------------------------------------------


def write_events(dynamodb: Any, caller: str, kinds: list[str]) -> list[str]:
    """Events of these types, one a millisecond apart; their ids, oldest first."""
    events = [model.new(caller, kind, {"n": n}, now=1_800_000_000 + n / 1000) for n, kind in enumerate(kinds)]
    write_batches(dynamodb, [model.to_item(event) for event in events])
    return [event.id for event in events]


def read_all(log: DynamoEventLog, caller: str, limit: int, type_: str | None = None) -> tuple[list[str], int]:
    ids, cursor, pages = [], None, 0
    while True:
        page = log.page(caller, limit, cursor, type_)
        ids += [e["id"] for e in page["events"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages


def test_cursor_paging_over_hundreds_of_events_is_newest_first_without_repeat_or_gap(side: Side) -> None:
    written = write_events(side.dynamodb, "alice", ["order.completed"] * 350)
    write_events(side.dynamodb, "bob", ["order.completed"] * 5)

    for limit in (6, 50, 100):
        ids, pages = read_all(side.log, "alice", limit)
        assert ids == written[::-1], limit
        assert pages <= 350 // limit + 2


def test_a_type_filter_pages_without_repeat_or_gap_even_when_matches_are_sparse(side: Side) -> None:
    kinds = ["refill.created" if n % 45 == 0 else "order.in_progress" if n % 2 else "order.completed"
             for n in range(300)]
    written = write_events(side.dynamodb, "alice", kinds)

    for type_, limit in (("refill.*", 2), ("order.completed", 9), ("order.*", 50), ("balance.low", 5)):
        ids, _ = read_all(side.log, "alice", limit, type_)
        wanted = model.type_filter(type_)
        assert ids == [i for i, kind in zip(written, kinds) if wanted(kind)][::-1], type_


def test_a_page_with_a_filter_reads_a_bounded_number_of_dynamodb_pages(side: Side) -> None:
    write_events(side.dynamodb, "alice", ["order.completed"] * 300)
    sent = Requests(side.log._db.client)

    page = side.log.page("alice", 1, None, "refill.*")

    assert page["events"] == [] and page["next_cursor"] is not None
    assert sent.names == ["Query"] * 10


@pytest.mark.parametrize("cursor", ["nope", "eyJhZnRlciI6ICJldnRfeCJ9", "eyJzayI6ICIyMDI2In0"])
def test_a_cursor_the_log_never_gave_out_is_refused(side: Side, cursor: str) -> None:
    with pytest.raises(errors.ValidationError) as refused:
        side.log.page("alice", 10, cursor)
    assert refused.value.details == {"field": "cursor"}


# -- the routes -----------------------------------------------------------------------------------------


def test_get_events_answers_the_callers_own_events_newest_first_and_filters_by_type(client: Any,
                                                                                     resources: Any) -> None:
    dynamodb = resources.client("dynamodb")
    alice = write_events(dynamodb, "alice", ["order.created", "order.in_progress", "refill.created"])
    bob = write_events(dynamodb, "bob", ["order.created"])

    everything = client.get("/events").json_body
    orders = client.get("/events?type=order.*&limit=1").json_body
    theirs = client.get("/events", key=OTHER_KEY).json_body
    one = client.get(f"/events/{alice[0]}")
    not_mine = client.get(f"/events/{bob[0]}")
    unknown = client.get("/events?type=order.shipped")

    assert [e["id"] for e in everything["events"]] == alice[::-1] and everything["next_cursor"] is None
    assert [e["id"] for e in orders["events"]] == [alice[1]] and orders["next_cursor"]
    assert [e["id"] for e in theirs["events"]] == bob
    assert one.status_code == 200 and one.json_body["type"] == "order.created" and "caller" not in one.json_body
    assert not_mine.status_code == 404 and not_mine.json_body["error"]["code"] == "event_not_found"
    assert unknown.status_code == 400 and unknown.json_body["error"]["code"] == "validation_error"


def test_the_scheduled_function_syncs_open_orders(client: Any, gateway: Any, panel: Any) -> None:
    placed = client.post("/orders", json_body=default_order(), headers={"Idempotency-Key": "sched-1"}).json_body
    panel.advance(6)

    counts = gateway.sync_statuses(scheduled_event(), None)

    assert counts["events"] == 1
    assert [e["type"] for e in client.get("/events").json_body["events"]] == ["order.in_progress", "order.created"]
    assert client.get(f"/orders/{placed['id']}").json_body["state"] == "in_progress"


def test_the_scheduled_function_keeps_its_own_time_not_the_last_requests(client: Any, gateway: Any,
                                                                        panel: Any) -> None:
    # given an order placed, after which the app is left holding the Lambda context of a
    # request that has run out (chalice keeps the last request's on the shared app object)
    placed = client.post("/orders", json_body=default_order(), headers={"Idempotency-Key": "sched-2"}).json_body
    panel.advance(6)
    gateway.app.lambda_context = SimpleNamespace(get_remaining_time_in_millis=lambda: 0)
    try:
        # when the schedule runs (its own invocation: here with no Lambda time limit)
        counts = gateway.sync_statuses(scheduled_event(), None)
    finally:
        gateway.app.lambda_context = None

    # then it asked the panel and recorded the change, rather than finding no time left
    assert counts["events"] == 1 and counts.get("failed", 0) == 0
    assert client.get(f"/orders/{placed['id']}").json_body["state"] == "in_progress"


def test_the_scheduled_function_still_sweeps_the_outbox_when_the_sync_fails(gateway: Any, resources: Any) -> None:
    # given the sync's first read of the work index fails
    dynamodb = gateway.boto_client("dynamodb")  # shared across tests: its hooks come off at the end
    fault = DynamoFault(dynamodb, "Query", calls={1})
    asked: list[str] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        asked.extend(v.get("S", "") for v in params.get("ExpressionAttributeValues", {}).values())

    dynamodb.meta.events.register("before-parameter-build.dynamodb.Query", seen)
    try:
        # when
        with pytest.raises(errors.StorageUnavailable):
            gateway.sync_statuses(scheduled_event(), None)
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.Query", seen)
        dynamodb.meta.events.unregister("before-call.dynamodb.Query", fault._handle)

    # then the outbox's pending events were still asked for
    assert "outbox" in asked

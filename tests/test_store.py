"""The store contract: what OrderDesk relies on, run against every Store implementation."""

from __future__ import annotations

import base64
import json
import uuid
from decimal import Decimal
from typing import Any, Callable

import pytest

from chalicelib import errors
from chalicelib.orders.store import COMPLETED, IN_FLIGHT, UNKNOWN, Attempt, DynamoStore, Owner, Store
from local.aws import TABLE

NOW = 1_800_000_000.0


def dynamo(resources: Any) -> Store:
    return DynamoStore(resources.client("dynamodb"), TABLE)


IMPLEMENTATIONS: list[Callable[[Any], Store]] = [dynamo]


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda make: make.__name__)
def store(request: Any, resources: Any) -> Store:
    return request.param(resources)


def attempt(owner: str = "o1", key: str = "k", fingerprint: str = "f1", at: float = NOW, **kw: Any) -> Attempt:
    return Attempt(caller="alice", key=key, key_hash=f"h-{key}", owner=owner, fingerprint=fingerprint,
                   created_at=at, lease_until=at + 60, request={"service": 1}, estimated_charge="0.9",
                   quantity=1000, **kw)


def test_first_claim_takes_the_key_and_the_second_sees_the_holder(store: Store) -> None:
    assert store.claim(attempt("o1"), NOW) is None

    held = store.claim(attempt("o2", fingerprint="f2"), NOW + 1)

    assert held is not None and held.owner == "o1" and held.state == IN_FLIGHT and held.fingerprint == "f1"


def test_a_completed_record_is_returned_with_its_answer(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.complete(first, 23501, {"status": 201, "body": {"id": 23501}, "headers": {}}, NOW + 100)

    held = store.claim(attempt("o2"), NOW + 50)

    assert held.state == COMPLETED and held.answer["body"] == {"id": 23501}


def test_a_completed_record_past_its_expiry_can_be_claimed_again(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.complete(first, 23501, {"status": 201, "body": {}, "headers": {}}, NOW + 100)

    assert store.claim(attempt("o2", at=NOW + 101), NOW + 101) is None


def test_an_unknown_record_is_never_claimed_again(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.mark_unknown("alice", first.key_hash, first.owner, first.ledger_sk)

    held = store.claim(attempt("o2", at=NOW + 10**9), NOW + 10**9)

    assert held.state == UNKNOWN


def test_release_frees_the_key_and_removes_the_ledger_entry(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.release(first)

    assert store.claim(attempt("o2"), NOW) is None
    assert len(store.ledger("alice", 10, None)[0]) == 1


def test_only_the_owner_can_release(store: Store) -> None:
    store.claim(attempt("o1"), NOW)

    with pytest.raises(errors.StorageUnavailable):
        store.release(attempt("intruder"))
    assert store.find("alice", "h-k").owner == "o1"


def test_a_late_completion_corrects_a_record_marked_unknown(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.mark_unknown("alice", first.key_hash, first.owner, first.ledger_sk)

    store.complete(first, 23501, {"status": 201, "body": {"id": 23501}, "headers": {}}, NOW + 100)

    assert store.find("alice", "h-k").state == COMPLETED
    assert store.ledger("alice", 10, None)[0][0]["order_id"] == 23501


def test_the_ledger_pages_newest_first(store: Store) -> None:
    for n in range(5):
        store.claim(attempt(f"o{n}", key=f"k{n}", at=NOW + n), NOW + n)

    page, cursor = store.ledger("alice", 3, None)
    rest, end = store.ledger("alice", 3, cursor)

    assert [i["idempotency_key"] for i in page + rest] == ["k4", "k3", "k2", "k1", "k0"]
    assert end is None or store.ledger("alice", 3, end)[0] == []


def forged(sk: Any) -> str:
    """A cursor in the gateway's encoding around a sort key it never made."""
    return base64.urlsafe_b64encode(json.dumps({"sk": sk}).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sk", [
    "2027-01-15T08:00:00.000Z#" + "o" * 1100,  # over DynamoDB's 1024-byte sort key: 503 when deployed
    "x" * 1500, "\u00e9" * 600,  # 1200 bytes in UTF-8
    "IDEM", "2027-01-15", "2027-01-15T08:00:00.000Z", "2027-01-15T08:00:00.000Z#",
    "2027-01-15T08:00:00Z#o1", "2027-01-15 08:00:00.000Z#o1", "2027-01-15T08:00:00.000Z#o1\n",
    "2027-01-15T08:00:00.000Z#o/1", 17, None, ["2027-01-15T08:00:00.000Z#o1"],
], ids=lambda sk: repr(sk)[:30])
def test_a_cursor_for_a_sort_key_the_gateway_never_makes_is_refused(store: Store, sk: Any) -> None:
    store.claim(attempt("o1"), NOW)

    with pytest.raises(errors.ValidationError) as caught:
        store.ledger("alice", 3, forged(sk))

    assert caught.value.details == {"field": "cursor"}


def test_every_cursor_the_store_gives_out_is_taken_back(store: Store) -> None:
    owner = uuid.uuid4().hex  # as the desk makes them
    for n in range(3):
        store.claim(attempt(f"{owner[:-1]}{n}", key=f"k{n}", at=NOW + n + 0.123), NOW + n)

    _, cursor = store.ledger("alice", 1, None)
    page, _ = store.ledger("alice", 1, cursor)

    assert cursor is not None and len(page) == 1


def test_the_daily_spending_reservation_refuses_past_the_cap_and_release_refunds(store: Store) -> None:
    def spend(owner: str) -> Attempt:
        return attempt(owner, key=owner, spend_day="2027-01-15", spend_room=Decimal("2") - Decimal("0.9"))

    store.claim(spend("a"), NOW)
    store.claim(spend("b"), NOW)
    with pytest.raises(errors.Refused) as refused:
        store.claim(spend("c"), NOW)
    store.release(spend("b"))

    assert refused.value.code == "spending_limit_exceeded"
    assert store.claim(spend("d"), NOW) is None


def test_a_claim_retried_after_it_was_applied_is_still_ours(store: Store) -> None:
    # given the SDK retries a claim whose first try was written but whose answer was lost
    mine = attempt("o1")
    assert store.claim(mine, NOW) is None

    # when the same attempt claims again, then it holds the key (and nobody else does)
    assert store.claim(mine, NOW + 1) is None
    assert store.claim(attempt("o2"), NOW + 2).owner == "o1"


# -- the operator's side -----------------------------------------------------------------


def test_unsettled_lists_only_claims_whose_outcome_is_not_settled(store: Store) -> None:
    done, lost, flying, freed = (attempt(o, key=o, at=NOW + n) for n, o in enumerate(["done", "lost", "fly", "freed"]))
    for each in (done, lost, flying, freed):
        store.claim(each, each.created_at)
    store.complete(done, 23501, {"status": 201, "body": {}, "headers": {}}, NOW + 100)
    store.mark_unknown("alice", lost.key_hash, lost.owner, lost.ledger_sk)
    store.release(freed)

    listed = store.unsettled("alice")

    assert [(i["idempotency_key"], i["state"]) for i in listed] == [("fly", "submitting"), ("lost", UNKNOWN)]
    assert store.unsettled("bob") == []


def written_before_the_index(resources: Any, claimed: Attempt) -> None:
    """The ledger entry as a gateway older than the `unsettled` index left it."""
    resources.client("dynamodb").update_item(
        TableName=TABLE, Key={"pk": {"S": f"LEDGER#{claimed.caller}"}, "sk": {"S": claimed.ledger_sk}},
        UpdateExpression="REMOVE unsettled")


def test_index_unsettled_marks_old_unsettled_entries_once_and_leaves_settled_ones(store: Store,
                                                                                   resources: Any) -> None:
    # given entries claimed before the index: one completed, one unknown, one in flight
    done, lost, flying = (attempt(o, key=o, at=NOW + n) for n, o in enumerate(["done", "lost", "fly"]))
    for each in (done, lost, flying):
        store.claim(each, each.created_at)
        written_before_the_index(resources, each)
    store.complete(done, 23501, {"status": 201, "body": {}, "headers": {}}, NOW + 100)
    store.mark_unknown("alice", lost.key_hash, lost.owner, lost.ledger_sk)
    settled = store.ledger("alice", 10, None)[0][-1]
    assert store.unsettled("alice") == []

    # when
    marked = store.index_unsettled("alice")

    # then
    assert sorted(e["idempotency_key"] for e in marked) == ["fly", "lost"]
    assert [(i["idempotency_key"], i["state"]) for i in store.unsettled("alice")] == [
        ("fly", "submitting"), ("lost", UNKNOWN)]
    assert store.ledger("alice", 10, None)[0][-1] == settled
    assert store.index_unsettled("alice") == [] and store.index_unsettled("bob") == []


def test_index_unsettled_does_not_mark_an_entry_that_completes_after_it_was_read(resources: Any) -> None:
    # given an old unsettled entry whose request completes between the page read and the mark
    dynamodb = resources.new_client("dynamodb")  # its own, for the hook
    store = DynamoStore(dynamodb, TABLE)
    racer = attempt("racer", key="racer")
    store.claim(racer, NOW)
    written_before_the_index(resources, racer)

    def complete_first(**_: Any) -> None:
        dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", complete_first)
        store.complete(racer, 23501, {"status": 201, "body": {}, "headers": {}}, NOW + 100)

    dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", complete_first)
    try:
        marked = store.index_unsettled("alice")
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", complete_first)

    # then
    assert marked == [] and store.unsettled("alice") == []
    assert store.ledger("alice", 10, None)[0][0]["state"] == "pending"


def test_resolving_a_record_whose_lease_is_running_is_refused_by_the_write(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)

    with pytest.raises(errors.IdempotencyConflict, match="still in flight"):
        store.resolve("alice", first.key_hash, None, None, NOW + 100, now=first.lease_until - 1)

    assert store.find("alice", first.key_hash).state == IN_FLIGHT
    store.resolve("alice", first.key_hash, None, None, NOW + 100, now=first.lease_until + 1)
    assert store.find("alice", first.key_hash) is None and store.unsettled("alice") == []


def test_a_completed_record_cannot_be_resolved(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.complete(first, 23501, {"status": 201, "body": {"id": 23501}, "headers": {}}, NOW + 100)

    with pytest.raises(errors.IdempotencyConflict, match="completed"):
        store.resolve("alice", first.key_hash, 999, {"status": 201, "body": {}, "headers": {}}, NOW + 100,
                      now=NOW + 10**6)

    assert store.find("alice", first.key_hash).answer["body"] == {"id": 23501}


def test_resolving_with_the_order_id_settles_the_record_and_its_ledger_entry(store: Store) -> None:
    first = attempt()
    store.claim(first, NOW)
    store.mark_unknown("alice", first.key_hash, first.owner, first.ledger_sk)

    store.resolve("alice", first.key_hash, 23501, {"status": 201, "body": {"id": 23501}, "headers": {}},
                  NOW + 100, now=NOW + 1)

    assert store.find("alice", first.key_hash).state == COMPLETED
    assert store.unsettled("alice") == [] and store.ledger("alice", 10, None)[0][0]["order_id"] == 23501


def test_resolving_by_release_gives_back_the_daily_spending(store: Store) -> None:
    def spend(owner: str) -> Attempt:
        return attempt(owner, key=owner, spend_day="2027-01-15", spend_room=Decimal("2") - Decimal("0.9"))

    store.claim(spend("a"), NOW)
    lost = spend("b")
    store.claim(lost, NOW)
    store.mark_unknown("alice", lost.key_hash, lost.owner, lost.ledger_sk)

    store.resolve("alice", lost.key_hash, None, None, NOW + 100, now=NOW + 1)

    assert store.claim(spend("c"), NOW) is None


def test_owners_finds_the_ledger_of_completed_and_resolved_orders_only(store: Store) -> None:
    # given one order completed, one resolved by an operator, and one claim still in flight
    placed, lost, flying = attempt("o1", key="a"), attempt("o2", key="b", at=NOW + 1), attempt("o3", key="c")
    for each in (placed, lost, flying):
        store.claim(each, NOW)
    store.complete(placed, 501, {"status": 201, "body": {"id": 501}, "headers": {}}, NOW + 100)
    store.mark_unknown("alice", lost.key_hash, lost.owner, lost.ledger_sk)
    store.resolve("alice", lost.key_hash, 502, {"status": 201, "body": {"id": 502}, "headers": {}}, NOW + 100, NOW)

    # when the three ids and one the gateway never placed are looked up, twice each
    found = store.owners([501, 502, 503, 999, 501])

    # then only the placed orders are found, each with its ledger entry
    assert found == {501: Owner("alice", placed.ledger_sk), 502: Owner("alice", lost.ledger_sk)}


def test_owners_reads_a_hundred_ids_in_one_request(store: Store, resources: Any) -> None:
    calls: list[str] = []
    client = resources.client("dynamodb")
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    counted = DynamoStore(client, TABLE)

    assert counted.owners(list(range(1, 101))) == {}
    assert calls == ["BatchGetItem"]

"""Event ids and types: what the log's order, its cursors and the `type` filter rely on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib import errors
from chalicelib.events import model

NOW = 1_800_000_000.0


def test_ids_sort_by_time_and_never_tie_within_a_millisecond() -> None:
    earlier = [model.new_id(NOW) for _ in range(500)]
    later = model.new_id(NOW + 0.001)

    assert len(set(earlier)) == 500 and earlier == sorted(earlier) and later > earlier[-1]
    assert all(model.is_event_id(i) for i in earlier + [later])


def test_ids_made_by_many_threads_at_once_are_unique() -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: model.new_id(NOW + 5), range(2000)))

    assert len(set(ids)) == 2000


def test_a_clock_that_steps_back_still_gives_later_ids() -> None:
    first = model.new_id(NOW + 60)

    assert model.new_id(NOW) > first


def test_an_event_survives_its_item_and_expires_after_thirty_days() -> None:
    event = model.new("alice", "order.completed", {"id": 7, "charge": "0.9"}, NOW)

    item = model.to_item(event)

    assert model.from_item(item) == event and event.created_at == "2027-01-15T08:00:00.000Z"
    assert item["expires_at"] == NOW + 30 * 86400 and item["work"] == model.OUTBOX
    assert event.public() == {"id": event.id, "type": "order.completed", "created_at": event.created_at,
                              "data": {"id": 7, "charge": "0.9"}}


@pytest.mark.parametrize("text, accepted, refused", [
    (None, ["order.created", "balance.low"], []),
    ("order.completed", ["order.completed"], ["order.created", "refill.completed"]),
    ("order.*", ["order.created", "order.partial"], ["refill.created", "balance.low"]),
    ("refill.*", ["refill.created", "refill.rejected"], ["order.created"]),
])
def test_the_type_filter_is_exact_or_a_family(text: str | None, accepted: list[str], refused: list[str]) -> None:
    matches = model.type_filter(text)

    assert all(matches(t) for t in accepted) and not any(matches(t) for t in refused)


@pytest.mark.parametrize("text", ["order", "order.", "*", "order.unknown", "ORDER.COMPLETED", "balance.*"])
def test_an_unknown_type_filter_is_refused_naming_the_types(text: str) -> None:
    with pytest.raises(errors.ValidationError) as refused:
        model.type_filter(text)

    assert "order.completed" in refused.value.message and refused.value.details == {"field": "type"}


def test_states_without_an_event_type_make_none() -> None:
    assert model.state_type("order", "completed") == "order.completed"
    assert model.state_type("refill", "rejected") == "refill.rejected"
    assert [model.state_type("order", s) for s in ("pending", "unknown", "created")] == [None] * 3

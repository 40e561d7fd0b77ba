"""The outbox: every event written reaches every sink at least once, whatever fails.

Events are written as their writers write them (events.model.to_item, work = "outbox")
into moto's table; the sinks are the test's own recorders.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, Sequence

import pytest

from chalicelib import errors
from chalicelib.dynamo import WORK_INDEX, Table
from chalicelib.events import model
from chalicelib.events.model import Event
from chalicelib.events.outbox import Outbox
from local.aws import TABLE, EmbeddedAws, create_table

LATER = 4_000_000_000.0  # a clock past every event of the test run: all of them settled


class Recorder:
    """A sink that keeps what it was given; `failures` first calls raise `error`."""

    def __init__(self, name: str, failures: int = 0, error: Exception | None = None, pause: float = 0.0) -> None:
        self.name = name
        self.failures = failures
        self.error = error or ConnectionError("sink down")
        self.pause = pause
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Event]) -> None:
        time.sleep(self.pause)
        with self._lock:
            if self.failures:
                self.failures -= 1
                raise self.error
            self.calls.append([event.id for event in events])

    @property
    def ids(self) -> list[str]:
        return [event_id for call in self.calls for event_id in call]


@pytest.fixture
def dynamodb(aws: EmbeddedAws) -> Any:
    aws.reset()
    create_table(aws.client("dynamodb"))
    return aws.client("dynamodb")


def written(dynamodb: Any, count: int, caller: str = "alice") -> list[Event]:
    """Events written as a writer's transaction writes them, and never dispatched."""
    table = Table(dynamodb, TABLE)
    events = [model.new(caller, "order.completed", {"id": n}) for n in range(count)]
    for start in range(0, count, 100):
        table.transact([{"Put": {"TableName": TABLE, "Item": table.item(model.to_item(event))}}
                        for event in events[start:start + 100]])
    return events


def pending(dynamodb: Any) -> list[str]:
    """The ids of the events still in the outbox (the work index), oldest first."""
    found: list[str] = []
    params: dict[str, Any] = {"TableName": TABLE, "IndexName": WORK_INDEX, "KeyConditionExpression": "#w = :w",
                              "ExpressionAttributeNames": {"#w": "work"},
                              "ExpressionAttributeValues": {":w": {"S": model.OUTBOX}}}
    while True:
        page = dynamodb.query(**params)
        found += [item["sk"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return found
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def item(dynamodb: Any, event: Event) -> dict[str, Any]:
    found = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": model.pk(event.caller)}, "sk": {"S": event.id}})
    return Table(dynamodb, TABLE).plain(found.get("Item", {}))


def made_at(event: Event) -> float:
    """The time in the event's id (its first 48 bits: milliseconds)."""
    digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    number = 0
    for char in event.id[4:14]:
        number = number * 32 + digits.index(char)
    return number / 1000  # 10 digits are 50 bits: two zero bits, then the 48 of the milliseconds


def outbox(dynamodb: Any, *sinks: Any, **kw: Any) -> Outbox:
    return Outbox(dynamodb, TABLE, list(sinks), **{"clock": lambda: LATER, **kw})


# -- dispatch: in-line, right after the writer's transaction --------------------------------


def test_dispatch_publishes_to_every_sink_and_takes_the_events_out_of_the_outbox(dynamodb: Any) -> None:
    events = written(dynamodb, 3)
    first, second = Recorder("eventbridge"), Recorder("webhooks")

    outbox(dynamodb, first, second).dispatch(events)

    assert first.calls == second.calls == [[e.id for e in events]]
    assert pending(dynamodb) == []
    assert item(dynamodb, events[0])["published"] == {"eventbridge", "webhooks"}
    assert item(dynamodb, events[0])["type"] == "order.completed"  # the event itself is kept


def test_dispatch_never_raises_and_a_sink_that_failed_gets_only_its_own_events_from_the_sweep(
        dynamodb: Any) -> None:
    # given a sink that is down while the events are dispatched
    events = written(dynamodb, 2)
    healthy, flaky = Recorder("eventbridge"), Recorder("webhooks", failures=1)
    box = outbox(dynamodb, healthy, flaky)

    box.dispatch(events)  # does not raise

    assert pending(dynamodb) == [e.id for e in events]
    assert item(dynamodb, events[0])["published"] == {"eventbridge"}

    # when the sink recovers and the sweep runs
    assert box.sweep() == 2

    # then it has them once, and the healthy sink was not given them again
    assert flaky.ids == [e.id for e in events] and healthy.ids == [e.id for e in events]
    assert pending(dynamodb) == []


def test_dispatch_survives_dynamodb_failing_and_the_sweep_publishes_again(aws: EmbeddedAws, dynamodb: Any) -> None:
    # given a table that refuses the record of what was published (a crash after the publish)
    events = written(dynamodb, 2)
    broken = aws.new_client("dynamodb")

    def refuse(**_: Any) -> None:
        raise ConnectionError("DynamoDB is gone")

    broken.meta.events.register("before-call.dynamodb.UpdateItem", refuse)
    sink = Recorder("eventbridge")

    outbox(broken, sink).dispatch(events)
    assert pending(dynamodb) == [e.id for e in events]

    # when the sweep runs on a healthy table
    outbox(dynamodb, sink).sweep()

    # then the events were published again (at least once), and are done
    assert sink.ids == [e.id for e in events] * 2
    assert pending(dynamodb) == []


# -- sweep: what dispatch could not do ---------------------------------------------------------


def test_sweep_publishes_events_whose_writer_crashed_before_dispatching(dynamodb: Any) -> None:
    events = written(dynamodb, 3, "alice") + written(dynamodb, 2, "bob")
    sink = Recorder("eventbridge")

    assert outbox(dynamodb, sink).sweep() == 5

    assert sink.ids == [e.id for e in events]  # oldest first, every caller
    assert pending(dynamodb) == []
    assert outbox(dynamodb, sink).sweep() == 0 and len(sink.ids) == 5


def test_sweep_leaves_events_younger_than_the_settle_time_to_their_writers_dispatch(dynamodb: Any) -> None:
    (event,) = written(dynamodb, 1)
    sink = Recorder("eventbridge")

    assert outbox(dynamodb, sink, settle_seconds=30, clock=lambda: made_at(event) + 5).sweep() == 0
    assert outbox(dynamodb, sink, settle_seconds=30, clock=lambda: made_at(event) + 31).sweep() == 1
    assert sink.ids == [event.id]


def test_one_sweep_reads_a_bounded_number_of_events_oldest_first(dynamodb: Any) -> None:
    events = written(dynamodb, 25)
    sink = Recorder("eventbridge")
    box = outbox(dynamodb, sink, page=4, max_events=10)

    assert box.sweep() == 10
    assert sink.ids == [e.id for e in events[:10]] and sink.calls[0] == [e.id for e in events[:4]]
    assert box.sweep() == 10 and box.sweep() == 5 and box.sweep() == 0
    assert sink.ids == [e.id for e in events]


def test_a_sink_that_fails_then_recovers_gets_every_event_once_it_is_back(dynamodb: Any) -> None:
    events = written(dynamodb, 4)
    sink = Recorder("eventbridge", failures=2)
    box = outbox(dynamodb, sink)

    box.sweep()
    box.sweep()
    assert sink.ids == [] and pending(dynamodb) == [e.id for e in events]

    box.sweep()
    assert sink.ids == [e.id for e in events] and pending(dynamodb) == []


def test_a_partial_failure_gives_again_only_the_events_that_failed(dynamodb: Any) -> None:
    events = written(dynamodb, 3)
    sink = Recorder("eventbridge", failures=1, error=errors.PublishFailed("1 of 3 failed", frozenset({events[1].id})))
    box = outbox(dynamodb, sink)

    box.sweep()
    assert pending(dynamodb) == [events[1].id]  # the other two went through

    box.sweep()
    assert sink.calls == [[events[1].id]] and pending(dynamodb) == []


def test_a_crash_between_the_publish_and_its_record_publishes_the_event_again(
        aws: EmbeddedAws, dynamodb: Any) -> None:
    events = written(dynamodb, 2)
    broken = aws.new_client("dynamodb")
    broken.meta.events.register("before-call.dynamodb.UpdateItem",
                                lambda **_: (_ for _ in ()).throw(ConnectionError("crashed")))
    sink = Recorder("eventbridge")

    with pytest.raises(errors.StorageUnavailable):  # the sweep's own failures are the scheduler's to log
        outbox(broken, sink).sweep()
    outbox(dynamodb, sink).sweep()

    assert sink.ids == [e.id for e in events] * 2  # published, not recorded: given again (at least once)
    assert pending(dynamodb) == []


def test_two_sweeps_racing_publish_every_event_and_leave_nothing_behind(dynamodb: Any) -> None:
    events = written(dynamodb, 30)
    first, second = Recorder("eventbridge", pause=0.2), Recorder("webhooks", pause=0.2)
    box = outbox(dynamodb, first, second, page=10)
    start = threading.Barrier(2)

    def sweep() -> None:
        start.wait()
        box.sweep()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = {e.id for e in events}
    assert set(first.ids) == set(second.ids) == ids  # at least once each, repeats allowed
    assert pending(dynamodb) == []
    assert all(item(dynamodb, e)["published"] == {"eventbridge", "webhooks"} for e in events)


def test_an_event_already_gone_from_the_table_is_not_written_back(dynamodb: Any) -> None:
    (event,) = written(dynamodb, 1)
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": model.pk(event.caller)}, "sk": {"S": event.id}})
    sink = Recorder("eventbridge")

    outbox(dynamodb, sink).dispatch([event])

    assert sink.ids == [event.id] and item(dynamodb, event) == {}


def test_without_sinks_the_outbox_simply_empties(dynamodb: Any) -> None:
    events = written(dynamodb, 2)

    outbox(dynamodb).dispatch(events[:1])
    outbox(dynamodb).sweep()

    assert pending(dynamodb) == []


def test_a_sink_failing_on_old_events_is_an_error_line_and_on_new_ones_a_warning(dynamodb: Any,
                                                                                log_lines: Any) -> None:
    (event,) = written(dynamodb, 1)
    sink = Recorder("eventbridge", failures=2)

    outbox(dynamodb, sink, clock=lambda: made_at(event) + 60).sweep()  # a blip: the next sweep repairs it
    outbox(dynamodb, sink, clock=lambda: made_at(event) + 3600).sweep()  # an hour late: someone must look

    assert [(line["message"], line["level"], line["sink"]) for line in log_lines] == [
        ("publish failed", "warning", "eventbridge"), ("publish failed", "error", "eventbridge")]

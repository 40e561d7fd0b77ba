"""The status sync: the panel is pull-only, so the gateway asks it about every open order
and refill on a schedule and writes down what changed, each change with its event.

Open orders and refills are found in the table's sparse WORK_INDEX (one Query per
page: closed ones are not read), asked for in `status` / `refill_status` calls of at
most 100 ids, run concurrently as the batch reads are, and every status that differs
from the stored one goes through the store's one conditional write. So the sync is
safe to overlap with itself or with a read that learns the same status (one of them
records the change and its event, the other is refused and writes nothing), and to
fail anywhere: a panel call or a write that fails leaves its orders as they were,
open, for the next run.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

from chalicelib import errors, logs
from chalicelib.events.model import Event
from chalicelib.orders.refills import RefillStore
from chalicelib.orders.store import Owner, Store
from chalicelib.timing import map_in_context
from chalicelib.upstream import MAX_BATCH

log = logging.getLogger(__name__)
ELSEWHERE_SECONDS = 60.0  # how long a read takes an order found in no ledger for one placed elsewhere
REMEMBERED = 100_000  # order ids a container remembers the owners of (about 10 MB at most)

Item = dict[str, Any]
Statuses = Callable[[list[int]], dict[int, Any]]  # ids -> status, or an error value per id


class Panel(Protocol):
    def statuses(self, ids: list[int]) -> dict[int, Any]: ...

    def refill_statuses(self, ids: list[int]) -> dict[int, Any]: ...


@dataclass
class Counts:
    """What one run did, for its log line and the bench."""

    orders: int = 0  # open orders read from the index
    refills: int = 0  # open refills read from the index
    panel_calls: int = 0
    changed: int = 0  # statuses that differed from the stored one (one write each)
    events: int = 0  # events those writes made
    failed: int = 0  # orders or refills left for the next run: their panel call or write failed

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


class StatusSync:
    def __init__(self, panel: Panel, store: Store, refills: RefillStore, pool: ThreadPoolExecutor, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._panel = panel
        self._store = store
        self._refills = refills
        self._pool = pool
        self._clock = clock
        # What `observed` learned of whose orders are whose: an owner never changes, and
        # an order in no ledger is not looked up again for a while (see `observed`).
        self._owners: dict[int, Owner] = {}
        self._elsewhere: dict[int, float] = {}  # order id -> until when it is taken as in no ledger

    def run(self) -> dict[str, int]:
        """One sync of every open order and refill; returns its counts (also logged)."""
        orders, refills = self._store.open_orders(), self._refills.open_refills()
        counts = Counts(orders=len(orders), refills=len(refills))
        jobs = _jobs(orders, "order_id", self._panel.statuses, self._write_order) \
            + _jobs(refills, "refill_id", self._panel.refill_statuses, self._refills.record_status)
        for done in map_in_context(self._pool, _run_job, jobs):
            counts.add(done)
        # A run that found nothing to write is not news (the local run syncs every few seconds).
        level = logging.WARNING if counts.failed else logging.INFO if counts.changed else logging.DEBUG
        logs.event(log, "status sync", level, **asdict(counts))
        return asdict(counts)

    def observed(self, statuses: list[Item]) -> None:
        """Panel statuses a read learned (`GET /orders/{id}`): those of orders in a ledger
        go through the same write as the sync's. Never raises: the read has its answer.

        Owners are remembered (an ORDER# item never changes), and so, for a minute, is an
        order found in no ledger: a workflow polling an order placed elsewhere costs one
        BatchGetItem a minute, not one a read. An order is in a ledger from its completion
        on, so only a read in the moment between the panel's `add` and the completion's
        write can take a ledger order for another's; the sync records its changes anyway."""
        now = self._clock()
        wanted = [s["id"] for s in statuses if s["id"] not in self._owners and self._elsewhere.get(s["id"], now) <= now]
        try:
            if wanted:
                found = self._store.owners(wanted)
                self._remember(found, [i for i in wanted if i not in found], now)
            owners = {s["id"]: self._owners[s["id"]] for s in statuses if s["id"] in self._owners}
            if not owners:
                return
            entries = self._store.entries(owners)
            for status in statuses:
                entry = entries.get(status["id"])
                if entry is not None:
                    self._store.record_status(owners[status["id"]].caller, entry, status)
        except errors.GatewayError as exc:
            logs.event(log, "status not recorded", logging.WARNING, code=exc.code,
                       orders=[status["id"] for status in statuses])

    def _remember(self, found: dict[int, Owner], elsewhere: list[int], now: float) -> None:
        if len(self._owners) + len(found) > REMEMBERED or len(self._elsewhere) + len(elsewhere) > REMEMBERED:
            self._owners.clear()  # a container that has seen this many orders starts afresh
            self._elsewhere.clear()
        self._owners.update(found)
        self._elsewhere.update((order_id, now + ELSEWHERE_SECONDS) for order_id in elsewhere)

    def _write_order(self, entry: Item, current: Item) -> Event | None:
        return self._store.record_status(entry["pk"].removeprefix("LEDGER#"), entry, current)


@dataclass(frozen=True)
class _Job:
    """One panel call's worth of items, and the write of each one's change."""

    ids: list[int]
    items: dict[int, list[Item]]
    fetch: Statuses
    write: Callable[[Item, Item], Event | None]


def _jobs(items: list[Item], id_field: str, fetch: Statuses,
          write: Callable[[Item, Item], Event | None]) -> list[_Job]:
    by_id: dict[int, list[Item]] = {}
    for item in items:
        by_id.setdefault(int(item[id_field]), []).append(item)
    ids = list(by_id)
    return [_Job(ids[i:i + MAX_BATCH], by_id, fetch, write) for i in range(0, len(ids), MAX_BATCH)]


def _run_job(job: _Job) -> Counts:
    """Ask the panel, then write each change. A failed call or write is logged and counted;
    what it left is still open in the index, so the next run takes it up."""
    counts = Counts(panel_calls=1)
    try:
        found = job.fetch(job.ids)
    except errors.GatewayError as exc:
        logs.event(log, "status sync: panel call failed", logging.WARNING, code=exc.code, ids=len(job.ids))
        counts.failed = sum(len(job.items[i]) for i in job.ids)
        return counts
    for item_id in job.ids:
        current = found.get(item_id)
        if not isinstance(current, dict):
            continue  # an error for this id (e.g. the panel no longer knows it): asked again next run
        for item in job.items[item_id]:
            if current["status"] == item.get("status"):
                continue
            counts.changed += 1
            try:
                counts.events += job.write(item, current) is not None
            except errors.GatewayError as exc:
                logs.event(log, "status sync: write failed", logging.WARNING, code=exc.code, id=item_id)
                counts.failed += 1
    return counts

"""Reads and batch operations on existing orders, refills and cancels.

Batch reads are split into panel calls of at most 100 ids, run concurrently, and
answered per input position: duplicates are asked once but answered everywhere
they appear. Batch writes (refill, cancel) are one panel call of at most 100 ids
and are never retried, like every write.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from chalicelib import errors, logs
from chalicelib.orders.refills import RefillStore
from chalicelib.timing import map_in_context
from chalicelib.upstream import MAX_BATCH, PanelClient

log = logging.getLogger(__name__)

Item = dict[str, Any]


class Orders:
    def __init__(self, client: PanelClient, pool: ThreadPoolExecutor, refills: RefillStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._pool = pool
        self._refills = refills
        self._clock = clock

    def status(self, order_id: int) -> Item:
        return self._client.status(order_id)

    def statuses(self, ids: list[int]) -> list[Item]:
        return self._read_many(ids, self._client.statuses, "order_not_found", "No such order.")

    def refill(self, caller: str, order_id: int) -> Item:
        refill_id = self._client.refill(order_id)
        self._keep(caller, [(refill_id, order_id)])
        return {"id": refill_id, "order": order_id}

    def refills(self, caller: str, order_ids: list[int]) -> list[Item]:
        found = self._client.refills(_unique(order_ids))
        self._keep(caller, [(r, i) for i, r in found.items() if isinstance(r, int) and not isinstance(r, bool)])
        return [_entry({"order": i}, found.get(i), lambda refill_id: {"id": refill_id})
                for i in order_ids]

    def _keep(self, caller: str, created: list[tuple[int, int]]) -> None:
        """Record refills the panel made. They exist whatever the table says: a failed
        write is logged (with the ids, for an operator) and the answer still given."""
        if not created:
            return
        try:
            self._refills.record(caller, created, self._clock())
        except errors.GatewayError as exc:
            logs.event(log, "refills made but not recorded", logging.ERROR, caller=caller, code=exc.code,
                       refills=[refill_id for refill_id, _ in created])

    def refill_status(self, refill_id: int) -> Item:
        return self._client.refill_status(refill_id)

    def refill_statuses(self, ids: list[int]) -> list[Item]:
        return self._read_many(ids, self._client.refill_statuses, "refill_not_found", "No such refill.")

    def cancel(self, order_id: int) -> Item:
        result = self._client.cancel([order_id]).get(order_id)
        if result is None:
            raise errors.UpstreamBadResponse("The panel's cancel answer does not name the order.")
        if isinstance(result, errors.GatewayError):
            raise result
        return {"id": order_id, "cancel_requested": True}

    def cancels(self, order_ids: list[int]) -> list[Item]:
        found = self._client.cancel(_unique(order_ids))
        return [_entry({"id": i}, found.get(i), lambda _: {"cancel_requested": True})
                for i in order_ids]

    def _read_many(self, ids: list[int], fetch: Callable[[list[int]], dict[int, Any]],
                   missing_code: str, missing_message: str) -> list[Item]:
        unique = _unique(ids)
        chunks = [unique[i:i + MAX_BATCH] for i in range(0, len(unique), MAX_BATCH)]
        found: dict[int, Any] = {}
        for part in map_in_context(self._pool, fetch, chunks):
            found.update(part)
        # A panel may leave an unknown id out instead of answering an error for it.
        missing = errors.NotFound(missing_message, code=missing_code)
        return [_entry({"id": i}, found.get(i, missing), lambda status: status) for i in ids]


def _unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))

def _entry(base: Item, result: Any, render: Callable[[Any], Item]) -> Item:
    if result is None:
        return {**base, "error": errors.UpstreamBadResponse(
            "The panel's answer leaves this item out.").body()}
    if isinstance(result, errors.GatewayError):
        return {**base, "error": result.body()}
    return {**base, **render(result)}

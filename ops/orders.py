"""`ops orders unknown|resolve|backfill-unsettled|backfill-index`: unknown outcomes, and ledger upgrades.

When the panel's answer to `add` is lost, the gateway records the attempt as
`unknown` and answers 409 `outcome_unknown` to every retry with that
Idempotency-Key, so nothing is sent twice. An operator looks the order up on the
panel (by link and time) and then either records its id, so the key replays it,
or releases the key, so the caller's next retry places the order.

`backfill-unsettled` is the one-time upgrade for a table written by a gateway
older than the index of unsettled orders: until it runs, `unknown` misses the
unknown orders of that time. `backfill-index` is the one for a table written before
order events: it gives older placed orders their ORDER# item (so a status read finds
their ledger) and puts the open ones in the work index (so the status sync follows
them and their events come).

The desk is built by ops/cli.py on the stage's table with the function's retention;
only its store is used, the panel is not called.
"""

from __future__ import annotations

from typing import Any, Iterable

from ops.secret_doc import OpsError


def unknown(desk: Any, callers: Iterable[str]) -> list[dict[str, Any]]:
    """Every ledger entry in state `unknown`, for each caller, newest first.

    Read from the table's index of unsettled orders, not the callers' whole ledgers."""
    return [{"caller": caller, **entry} for caller in callers for entry in desk.unknown(caller)]


def resolve(desk: Any, caller: str, key: str, order_id: int | None) -> dict[str, Any]:
    """Record `order_id` as what the key placed, or with None release the key.

    Only a key the ledger shows as unknown is touched: a key still in flight (its
    lease running) may yet complete on its own, and a typo should not free a key.
    The store's write checks the same again, so a completion in between wins."""
    entry = next((e for e in unknown(desk, [caller]) if e["idempotency_key"] == key), None)
    if entry is None:
        raise OpsError(f"caller {caller!r} has no unknown order under Idempotency-Key {key!r} "
                       "(see `python -m ops orders unknown`)")
    desk.resolve(caller, key, order_id)
    return entry


def backfill_unsettled(store: Any, callers: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Put each caller's entries still submitting or unknown, claimed before the index existed,
    into it, so `unknown` lists them: what was marked, by caller (nothing on a rerun)."""
    return {caller: store.index_unsettled(caller) for caller in callers}


def backfill_index(store: Any, callers: Iterable[str]) -> list[dict[str, Any]]:
    """Give each caller's placed orders written before order events their ORDER# item, and the
    open ones their `work` mark: how many of each it wrote, by caller (nothing on a rerun)."""
    return [{"caller": caller, **store.index_orders(caller)} for caller in callers]

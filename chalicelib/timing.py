"""Per-request timing shared by the upstream client and the request log.

A request may fan out over worker threads (batch status); each worker runs in a
copy of the request's context, so they all add to the same list.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

if TYPE_CHECKING:  # the pool is built on first batch read; importing it here slows every cold start
    from concurrent.futures import ThreadPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

_upstream_seconds: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "upstream_seconds", default=None)


def start_request() -> list[float]:
    """Begin collecting upstream time for the current request; returns the collector."""
    spent: list[float] = []
    _upstream_seconds.set(spent)
    return spent


def record_upstream(seconds: float) -> None:
    spent = _upstream_seconds.get()
    if spent is not None:
        spent.append(seconds)


def map_in_context(pool: ThreadPoolExecutor, func: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`pool.map` whose workers see the caller's context (and so its timing)."""
    futures = [pool.submit(contextvars.copy_context().run, func, item) for item in items]
    return [future.result() for future in futures]



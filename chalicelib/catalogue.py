"""The panel's service catalogue, fetched rarely and read often.

A real catalogue is thousands of services and megabytes of JSON, and it changes
seldom, so each container parses it once into normalised records with indexes by
id and type, and refreshes it after a TTL. Order validation reads the
same cached copy, so a request never pays for the catalogue twice.

A refresh that fails, or brings no usable service at all, is not a catalogue: the
previous copy stays, and the panel is asked again after a short retry interval.
While one read refreshes, the others serve the previous copy rather than wait.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, TypedDict

from chalicelib import errors, logs, values

log = logging.getLogger(__name__)

TYPES = (
    "Default", "Package", "Custom Comments", "Custom Comments Package", "Mentions",
    "Mentions with Hashtags", "Mentions Custom List", "Mentions Hashtag",
    "Mentions User Followers", "Mentions Media Likers", "Comment Likes", "Poll",
    "Invites from Groups", "Subscriptions", "Web Traffic",
)
_CANONICAL_TYPES = {name.lower(): name for name in TYPES}
MAX_CACHED_ANSWERS = 128  # distinct filter combinations kept per snapshot


class Service(TypedDict):
    id: int
    name: str
    type: str
    category: str
    rate: str
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool


def service_from_panel(raw: Any) -> Service:
    """One normalised service; `ValueError` when the entry is unusable."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    kind = str(raw.get("type") or "Default").strip()
    low, high = values.count(raw.get("min")), values.count(raw.get("max"))
    if low is None or high is None:
        raise ValueError("min/max are not numbers")
    rate = values.money(raw.get("rate"))
    if rate.startswith("-"):  # "-0" too: a negative charge would lower the day's spend
        raise ValueError(f"a negative rate: {rate}")
    return {
        "id": values.identifier(raw.get("service")),
        "name": str(raw.get("name") or ""),
        "type": _CANONICAL_TYPES.get(kind.lower(), kind),
        "category": str(raw.get("category") or ""),
        "rate": rate,
        "min": low,
        "max": high,
        "refill": values.flag(raw.get("refill")),
        "cancel": values.flag(raw.get("cancel")),
        "dripfeed": values.flag(raw.get("dripfeed")),
    }


class Snapshot:
    """An immutable, indexed copy of the catalogue."""

    def __init__(self, services: Iterable[Service]) -> None:
        self.services = list(services)
        self.by_id = {s["id"]: s for s in self.services}
        self._by_type: dict[str, list[Service]] = {}
        for s in self.services:
            self._by_type.setdefault(s["type"].lower(), []).append(s)
        self._names = {s["id"]: s["name"].lower() for s in self.services}
        self._answers: dict[tuple[Any, ...], str] = {}

    def answer(self, **filters: Any) -> str:
        """`{"services": [...]}` for these filters as JSON text, serialised once per
        snapshot: a no-code tool polling the whole catalogue asks the same thing again
        and again, and serialising thousands of services costs ~10 ms each time."""
        key = tuple(sorted(filters.items()))
        text = self._answers.get(key)
        if text is None:
            if len(self._answers) >= MAX_CACHED_ANSWERS:
                self._answers.clear()
            text = json.dumps({"services": self.select(**filters)}, separators=(",", ":"))
            self._answers[key] = text
        return text

    def select(self, *, type: str | None = None, category: str | None = None, q: str | None = None,
               refill: bool | None = None, cancel: bool | None = None) -> list[Service]:
        found = self.services
        # No-code tools send optional fields empty: an empty filter is no filter.
        if type and type.strip():
            found = self._by_type.get(type.strip().lower(), [])
        if category and category.strip():
            wanted = category.strip().lower()
            found = [s for s in found if s["category"].lower() == wanted]
        if q:
            needle = q.strip().lower()
            found = [s for s in found if needle in self._names[s["id"]]]
        if refill is not None:
            found = [s for s in found if s["refill"] is refill]
        if cancel is not None:
            found = [s for s in found if s["cancel"] is cancel]
        return found


class Catalogue:
    """The cached catalogue of one container: kept `ttl` seconds; after a failed
    refresh, the previous copy is kept `retry_after` seconds."""

    def __init__(self, fetch: Callable[[], list[Any]], *, ttl: float = 300.0, retry_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._fresh_until = 0.0

    def snapshot(self) -> Snapshot:
        current = self._snapshot
        if current is not None and self._clock() < self._fresh_until:
            return current
        # One refresh at a time. While it runs, the others serve the previous copy: a
        # slow panel must not hold every order for as long as a refresh takes. Only
        # when there is no copy yet do they wait for its result.
        if current is not None:
            if not self._lock.acquire(blocking=False):
                return current
        else:
            self._lock.acquire()
        try:
            if self._snapshot is not None and self._clock() < self._fresh_until:
                return self._snapshot
            try:
                fetched = Snapshot(self._parse(self._fetch()))
            except errors.GatewayError as exc:
                if self._snapshot is None:
                    raise  # nothing to serve meanwhile: the next read tries again
                self._fresh_until = self._clock() + self._retry_after
                logs.event(log, "catalogue refresh failed; serving the previous copy", logging.WARNING,
                           code=exc.code, reason=exc.message, retry_in_seconds=self._retry_after)
                return self._snapshot
            self._snapshot, self._fresh_until = fetched, self._clock() + self._ttl
            return fetched
        finally:
            self._lock.release()

    def get(self, service_id: int) -> Service:
        service = self.snapshot().by_id.get(service_id)
        if service is None:
            raise errors.NotFound(f"No service {service_id}.", code="service_not_found")
        return service

    @staticmethod
    def _parse(raw_services: list[Any]) -> list[Service]:
        services, skipped = [], 0
        for raw in raw_services:
            try:
                services.append(service_from_panel(raw))
            except ValueError:
                skipped += 1
        if skipped:
            log.warning("catalogue: skipped %d unreadable service entries", skipped)
        if not services:  # an empty catalogue would refuse every order as unknown_service
            raise errors.UpstreamBadResponse(
                f"The panel's service list holds no usable service ({len(raw_services)} entries).")
        return services

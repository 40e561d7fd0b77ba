"""The service catalogue: the sandbox's quirky `services` answer, normalised, filtered, cached.

The truth each test compares with is the sandbox's own catalogue (`sandbox.Catalogue`,
same size and seed as the `panel` fixture): what each service really is, whatever its
wire form shows.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests

from chalicelib import errors
from chalicelib.catalogue import Catalogue
from chalicelib.upstream import PanelClient, PanelConfig
from sandbox import DEFAULT_KEY, SandboxPanel
from sandbox import Catalogue as SandboxCatalogue
from tests.conftest import DEFAULT_TIMEOUT
from tests.loopback import scripted_server, trickling_server

TTL = 300.0
RETRY = 30.0
INT_MAX = 2147483647


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def truth() -> SandboxCatalogue:
    return SandboxCatalogue(300, seed=1)  # what the `panel` fixture serves


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def panel_client(url: str, sleeps: list[float]) -> PanelClient:
    return PanelClient(requests.Session(), lambda: PanelConfig(url, DEFAULT_KEY), timeout=DEFAULT_TIMEOUT,
                       sleep=sleeps.append)


@pytest.fixture
def catalogue(panel: SandboxPanel, sleeps: list[float], clock: ManualClock) -> Catalogue:
    return Catalogue(panel_client(panel.url, sleeps).services, ttl=TTL, retry_after=RETRY, clock=clock)


def expected(truth: SandboxCatalogue) -> list[dict[str, Any]]:
    return [{"id": s.id, "name": s.name, "type": s.type, "category": s.category, "rate": str(s.rate),
             "min": s.min, "max": s.max, "refill": s.refill, "cancel": s.cancel, "dripfeed": s.dripfeed}
            for s in truth.services.values()]


def services_calls(panel: SandboxPanel) -> int:
    return [action for action, _ in panel.calls].count("services")


# -- normalisation ---------------------------------------------------------------------


def test_every_service_is_normalised_whatever_quirk_the_panel_shows(
        catalogue: Catalogue, truth: SandboxCatalogue) -> None:
    # given a catalogue that shows every quirk of upstream-api.md
    wires = [s.wire for s in truth.services.values()]
    assert any(isinstance(w["service"], str) for w in wires)
    assert any(str(w["type"]).islower() for w in wires)
    assert any("cancel" not in w for w in wires) and any("dripfeed" not in w for w in wires)
    assert any(type(w.get("dripfeed")) is int for w in wires)
    assert any(isinstance(w["min"], int) for w in wires) and any(isinstance(w["min"], str) for w in wires)
    assert any(w["max"] in (INT_MAX, str(INT_MAX)) for w in wires)

    # then the gateway sees each service as it really is
    assert catalogue.snapshot().services == expected(truth)


def test_a_service_has_exactly_the_contracts_fields_and_types(catalogue: Catalogue) -> None:
    service = catalogue.get(1)
    assert service == {"id": 1, "name": "Instagram followers", "type": "Default", "category": "Instagram",
                       "rate": "0.90", "min": 50, "max": 10000, "refill": True, "cancel": True,
                       "dripfeed": True}


def test_a_max_of_2147483647_stays_an_exact_integer(catalogue: Catalogue) -> None:
    biggest = [s for s in catalogue.snapshot().services if s["max"] == INT_MAX]
    assert biggest and all(type(s["max"]) is int for s in biggest)


def test_an_unknown_service_is_not_found(catalogue: Catalogue) -> None:
    with pytest.raises(errors.NotFound) as raised:
        catalogue.get(999999)
    assert (raised.value.status, raised.value.code) == (404, "service_not_found")


def static_panel(answer: Any) -> Any:
    """A loopback panel answering every POST with the same JSON."""
    return scripted_server(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})


def test_unusable_entries_are_skipped_and_the_rest_served(sleeps: list[float], log_lines: Any) -> None:
    good = {"service": 5, "name": "Fine", "type": "default", "category": "X", "rate": "1.5",
            "min": "10", "max": 20, "refill": 0, "dripfeed": 1}
    answer = [
        good,
        "not an object",
        {**good, "service": None},
        {**good, "service": "abc"},
        {**good, "service": 0},
        {**good, "service": 6, "rate": "free"},
        {**good, "service": 7, "min": "many"},
        {**good, "service": 8, "max": None},
    ]
    with static_panel(answer) as url:
        services = Catalogue(panel_client(url, sleeps).services).snapshot().services

    assert services == [{"id": 5, "name": "Fine", "type": "Default", "category": "X", "rate": "1.5",
                         "min": 10, "max": 20, "refill": False, "cancel": False, "dripfeed": True}]
    assert any("skipped 7" in line["message"] for line in log_lines)


@pytest.mark.parametrize("rate", ["-100", "-0.01", "-0", -5, "-1e3", "NaN", "Infinity", "1e5000"])
def test_a_service_with_a_negative_or_unreadable_rate_is_skipped_and_logged(
        sleeps: list[float], log_lines: Any, rate: Any) -> None:
    good = {"service": 5, "name": "Fine", "type": "Default", "category": "X", "rate": "1.5",
            "min": 10, "max": 20}
    with static_panel([good, {**good, "service": 6, "rate": rate}]) as url:
        catalogue = Catalogue(panel_client(url, sleeps).services)
        assert [service["id"] for service in catalogue.snapshot().services] == [5]
    assert any("skipped 1" in line["message"] for line in log_lines)


def test_a_services_answer_that_is_not_a_list_is_a_bad_response(sleeps: list[float]) -> None:
    with static_panel({"services": []}) as url:
        with pytest.raises(errors.UpstreamBadResponse):
            Catalogue(panel_client(url, sleeps).services).snapshot()


# -- filters ------------------------------------------------------------------------------


def ids(services: list[Any]) -> list[int]:
    return [s["id"] for s in services]


@pytest.mark.parametrize("asked", ["Mentions with Hashtags", "mentions with hashtags", "MENTIONS WITH HASHTAGS",
                                   " Mentions with Hashtags "])
def test_type_filter_ignores_case(catalogue: Catalogue, truth: SandboxCatalogue, asked: str) -> None:
    found = catalogue.snapshot().select(type=asked)
    assert ids(found) == [s.id for s in truth.services.values() if s.type == "Mentions with Hashtags"]
    assert 7 in ids(found)


def test_type_filter_finds_services_the_panel_spelled_in_lower_case(
        catalogue: Catalogue, truth: SandboxCatalogue) -> None:
    lower = [s.id for s in truth.services.values() if s.wire["type"] == "default"]
    assert lower
    assert set(lower) <= set(ids(catalogue.snapshot().select(type="Default")))


def test_an_unknown_type_matches_nothing(catalogue: Catalogue) -> None:
    assert catalogue.snapshot().select(type="Teleportation") == []


def test_category_filter_ignores_case(catalogue: Catalogue, truth: SandboxCatalogue) -> None:
    found = catalogue.snapshot().select(category="telegram")
    assert ids(found) == [s.id for s in truth.services.values() if s.category == "Telegram"]
    assert ids(found)[:2] == [13, 14]


def test_text_filter_searches_names_without_case(catalogue: Catalogue, truth: SandboxCatalogue) -> None:
    found = catalogue.snapshot().select(q="FOLLOWERS")
    assert ids(found) == [s.id for s in truth.services.values() if "followers" in s.name.lower()]
    assert 1 in ids(found)


@pytest.mark.parametrize("flag", [True, False])
def test_refill_and_cancel_filters_use_the_normalised_flags(
        catalogue: Catalogue, truth: SandboxCatalogue, flag: bool) -> None:
    snapshot = catalogue.snapshot()
    assert ids(snapshot.select(refill=flag)) == [s.id for s in truth.services.values() if s.refill is flag]
    # a service whose panel entry has no `cancel` is not cancellable
    assert ids(snapshot.select(cancel=flag)) == [s.id for s in truth.services.values() if s.cancel is flag]


def test_filters_combine(catalogue: Catalogue, truth: SandboxCatalogue) -> None:
    found = catalogue.snapshot().select(type="default", category="Instagram", q="followers", refill=True,
                                        cancel=True)
    assert ids(found) == [s.id for s in truth.services.values()
                          if s.type == "Default" and s.category == "Instagram" and "followers" in s.name.lower()
                          and s.refill and s.cancel]
    assert ids(found) == [1]


def test_no_filter_or_an_empty_text_lists_everything(catalogue: Catalogue) -> None:
    snapshot = catalogue.snapshot()
    assert len(snapshot.select()) == len(snapshot.select(q="")) == 300


# -- caching ---------------------------------------------------------------------------------


def test_many_reads_within_the_ttl_fetch_the_catalogue_once(catalogue: Catalogue, panel: SandboxPanel,
                                                           clock: ManualClock) -> None:
    for _ in range(5):
        catalogue.snapshot()
        catalogue.get(1)
        clock.now += TTL / 20
    assert services_calls(panel) == 1


def test_a_read_past_the_ttl_fetches_again(catalogue: Catalogue, panel: SandboxPanel,
                                           clock: ManualClock) -> None:
    catalogue.snapshot()
    clock.now += TTL - 1
    catalogue.snapshot()
    assert services_calls(panel) == 1
    clock.now += 2
    catalogue.snapshot()
    assert services_calls(panel) == 2


def test_a_failed_refresh_serves_the_previous_copy(catalogue: Catalogue, panel: SandboxPanel,
                                                   clock: ManualClock, log_lines: Any) -> None:
    # given a catalogue read once
    first = catalogue.snapshot()
    # when it expires while the panel answers an error page to every attempt
    panel.inject("services", "html_502", times=3)
    clock.now += TTL + 1
    # then the previous copy is served
    assert catalogue.snapshot() is first
    assert catalogue.get(1)["name"] == "Instagram followers"
    assert any("serving the previous copy" in line["message"] for line in log_lines)
    # and the panel is not asked again on every read, but soon, not a whole TTL later
    calls = services_calls(panel)
    clock.now += RETRY - 1
    catalogue.snapshot()
    assert services_calls(panel) == calls
    clock.now += 2
    assert catalogue.snapshot() is not first
    assert services_calls(panel) == calls + 1


class SwitchablePanel:
    """The panel URL a catalogue's client calls, and how often it fetched."""

    def __init__(self, url: str, sleeps: list[float], timeout: float = 5.0) -> None:
        self.url = url
        self.fetches = 0
        self._client = PanelClient(requests.Session(), lambda: PanelConfig(self.url, DEFAULT_KEY),
                                   timeout=timeout, sleep=sleeps.append)

    def services(self) -> list[Any]:
        self.fetches += 1
        return self._client.services()


IMPLAUSIBLE = {"empty": [], "non-objects": ["a", 1, None, [2]],
               "no valid service": [{"service": "x", "min": 1, "max": 2}, {"name": "no id"}]}


@pytest.mark.parametrize("answer", IMPLAUSIBLE.values(), ids=IMPLAUSIBLE.keys())
def test_an_implausible_refresh_keeps_the_previous_copy_and_is_retried_soon(
        panel: SandboxPanel, sleeps: list[float], clock: ManualClock, log_lines: Any, answer: Any) -> None:
    # given a catalogue read once
    source = SwitchablePanel(panel.url, sleeps)
    catalogue = Catalogue(source.services, ttl=TTL, retry_after=RETRY, clock=clock)
    first = catalogue.snapshot()
    with static_panel(answer) as bad:
        # when, past the TTL, the panel answers a list with nothing usable in it
        source.url = bad
        clock.now += TTL + 1
        # then the previous copy is served, and the failure logged as one JSON line
        assert catalogue.snapshot() is first and catalogue.get(1)["id"] == 1
        assert source.fetches == 2
        failed = [line for line in log_lines if line["message"].startswith("catalogue refresh failed")]
        assert len(failed) == 1
        assert (failed[0]["level"], failed[0]["code"]) == ("warning", "upstream_bad_response")
        assert failed[0]["retry_in_seconds"] == RETRY
        # and it is not asked again before the retry interval
        clock.now += RETRY - 1
        assert catalogue.snapshot() is first and source.fetches == 2
    # once the panel answers properly again, the next retry (not the next TTL) takes it
    source.url = panel.url
    clock.now += 2
    assert catalogue.snapshot() is not first and len(catalogue.snapshot().services) == 300
    assert source.fetches == 3


@pytest.mark.parametrize("answer", IMPLAUSIBLE.values(), ids=IMPLAUSIBLE.keys())
def test_without_a_previous_copy_an_implausible_answer_is_a_bad_response_not_an_empty_catalogue(
        sleeps: list[float], answer: Any) -> None:
    with static_panel(answer) as url:
        with pytest.raises(errors.UpstreamBadResponse) as raised:
            Catalogue(panel_client(url, sleeps).services).snapshot()
    assert (raised.value.status, raised.value.code) == (502, "upstream_bad_response")


def test_without_a_previous_copy_a_failed_fetch_is_the_error(catalogue: Catalogue, panel: SandboxPanel) -> None:
    panel.inject("services", "html_502", times=3)
    with pytest.raises(errors.UpstreamBadResponse):
        catalogue.snapshot()
    # the next read tries again at once: there is nothing to serve meanwhile
    assert catalogue.get(1)["id"] == 1


def test_a_hung_refresh_holds_no_other_read_and_ends_at_the_timeout(
        panel: SandboxPanel, sleeps: list[float], clock: ManualClock) -> None:
    # given a catalogue read once, then a panel trickling a `Connection: close` answer
    source = SwitchablePanel(panel.url, sleeps, timeout=2.0)
    catalogue = Catalogue(source.services, ttl=TTL, retry_after=RETRY, clock=clock)
    first = catalogue.snapshot()
    with trickling_server("body", framing="close") as (url, _):
        source.url = url
        clock.now += TTL + 1
        # when one read refreshes the expired copy
        refreshed: list[float] = []
        started = time.monotonic()
        refresher = threading.Thread(target=lambda: (catalogue.snapshot(),
                                                     refreshed.append(time.monotonic() - started)))
        refresher.start()
        while source.fetches < 2:
            time.sleep(0.01)
        # then the other reads meanwhile get the previous copy at once
        asked = time.monotonic()
        assert catalogue.snapshot() is first and catalogue.get(1)["id"] == 1
        assert time.monotonic() - asked < 1.5
        # and the refresh itself ends at its timeout, keeping the previous copy
        refresher.join(timeout=30)
    assert refreshed and refreshed[0] < 8.0
    assert catalogue.snapshot() is first


def test_concurrent_first_reads_fetch_the_catalogue_once(catalogue: Catalogue, panel: SandboxPanel) -> None:
    panel.inject("services", "delay", seconds=0.2)  # every reader arrives while the fetch is in flight
    results: list[int] = []
    readers = [threading.Thread(target=lambda: results.append(len(catalogue.snapshot().services)))
               for _ in range(8)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert results == [300] * 8
    assert services_calls(panel) == 1


def test_an_answer_is_serialised_once_per_snapshot_and_matches_the_selection(
        catalogue: Catalogue, clock: ManualClock) -> None:
    snapshot = catalogue.snapshot()

    first = snapshot.answer(type="Default", refill=True)
    again = snapshot.answer(refill=True, type="Default")
    other = snapshot.answer(type="Poll")

    assert first is again  # same filters in any order: the same text, not serialised again
    assert json.loads(first) == {"services": snapshot.select(type="Default", refill=True)}
    assert json.loads(other) == {"services": snapshot.select(type="Poll")}


def test_cached_answers_stay_bounded(catalogue: Catalogue) -> None:
    from chalicelib.catalogue import MAX_CACHED_ANSWERS

    snapshot = catalogue.snapshot()
    for n in range(MAX_CACHED_ANSWERS + 5):
        snapshot.answer(q=f"needle {n}")

    assert len(snapshot._answers) <= MAX_CACHED_ANSWERS

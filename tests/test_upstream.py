"""The panel client against the sandbox over real loopback HTTP (upstream-api.md).

Every client here records its backoff through an injected `sleep`, so retries cost
no wall time, and uses a fixed jitter so the recorded backoff is exact.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib import errors
from chalicelib.upstream import PanelClient, PanelConfig, panel_error
from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import DEFAULT_TIMEOUT, SHORT_TIMEOUT, STALL
from tests.loopback import scripted_server, tls_breaking_server, trickling_server, trusted_tls

LINK = "https://instagram.com/p/upstream-test"
READ_FAULTS = ("html_502", "html_200", "truncated_json", "reset", "http_500")


@pytest.fixture
def sleeps() -> list[float]:
    return []


def panel_client(panel: SandboxPanel, sleeps: list[float], *, url: str | None = None,
                 key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None, **options: Any) -> PanelClient:
    options.setdefault("jitter", lambda: 1.0)
    return PanelClient(session or requests.Session(), lambda: PanelConfig(url or panel.url, key),
                       timeout=timeout, sleep=sleeps.append, **options)


@pytest.fixture
def upstream(panel: SandboxPanel, sleeps: list[float]) -> PanelClient:
    return panel_client(panel, sleeps)


def actions(panel: SandboxPanel) -> list[str]:
    return [action for action, _ in panel.calls]


def place(upstream: PanelClient, service: int = 1, link: str = LINK, quantity: int = 100,
          **extra: str) -> int:
    return upstream.add({"service": str(service), "link": link, "quantity": str(quantity), **extra})


def completed_order(upstream: PanelClient, panel: SandboxPanel, link: str = LINK) -> int:
    order_id = place(upstream, link=link)
    panel.advance(31)  # past the sandbox's 30 s delivery
    return order_id


# -- the protocol -------------------------------------------------------------------


def test_every_call_is_a_form_encoded_post_with_the_key_in_the_body_only(
        panel: SandboxPanel, sleeps: list[float]) -> None:
    # given a session that shows what went on the wire
    session = requests.Session()
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda response, *a, **k: sent.append(response.request))
    upstream = panel_client(panel, sleeps, session=session)

    # when
    upstream.balance()
    upstream.statuses([999])

    # then
    assert len(sent) == 2
    for request in sent:
        assert request.method == "POST"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.url and urlsplit(request.url).query == ""
        assert DEFAULT_KEY not in request.url
        form = parse_qs(str(request.body))
        assert form["key"] == [DEFAULT_KEY]
    assert parse_qs(str(sent[1].body)) == {"key": [DEFAULT_KEY], "action": ["status"], "orders": ["999"]}
    # the panel read the same fields from the form (it records them without the key)
    assert panel.calls == [("balance", {"action": "balance"}),
                           ("status", {"action": "status", "orders": "999"})]


def test_balance_is_a_decimal_string_with_its_currency(upstream: PanelClient) -> None:
    assert upstream.balance() == {"balance": "1000.00000", "currency": "USD"}


def test_services_are_the_panels_list(upstream: PanelClient) -> None:
    services = upstream.services()
    assert len(services) == 300
    assert services[0]["service"] == 1 and services[0]["name"] == "Instagram followers"


def test_add_answers_the_new_order_id_as_an_int(upstream: PanelClient, panel: SandboxPanel) -> None:
    assert place(upstream) == 23501
    assert panel.calls[-1][1] == {"action": "add", "service": "1", "link": LINK, "quantity": "100"}


def test_status_of_one_order_is_normalised(upstream: PanelClient, panel: SandboxPanel) -> None:
    order_id = place(upstream)
    panel.advance(10)
    assert upstream.status(order_id) == {
        "id": order_id, "status": "In progress", "state": "in_progress", "charge": "0.09000",
        "start_count": 1000 + order_id * 7919 % 9000, "remains": 80, "currency": "USD"}


def test_remains_the_panel_calls_unknown_is_null(upstream: PanelClient) -> None:
    # Service 11 reports remains "Unknown" while Pending.
    order_id = place(upstream, 11, media="https://instagram.com/p/media")
    status = upstream.status(order_id)
    assert (status["status"], status["state"], status["remains"]) == ("Pending", "pending", None)


def test_partial_and_canceled_orders_have_their_states(upstream: PanelClient, panel: SandboxPanel) -> None:
    partial = place(upstream, 7, usernames="a\nb", hashtags="#x")  # ids divisible by 7 end Partial
    canceled = place(upstream, 1, link=LINK + "/2")
    assert upstream.cancel([canceled]) == {canceled: True}
    panel.advance(31)
    assert upstream.status(partial)["state"] == "partial"
    assert upstream.status(canceled)["state"] == "canceled"


def test_statuses_answer_each_order_or_its_error_by_int_id(upstream: PanelClient, panel: SandboxPanel) -> None:
    order_id = place(upstream)
    found = upstream.statuses([order_id, 999])
    assert set(found) == {order_id, 999}
    assert found[order_id]["state"] == "pending"  # type: ignore[index]
    missing = found[999]
    assert isinstance(missing, errors.NotFound) and missing.code == "order_not_found"
    assert panel.calls[-1][1] == {"action": "status", "orders": f"{order_id},999"}


def test_refill_answers_the_refill_id_as_an_int_though_the_panel_sends_text(
        upstream: PanelClient, panel: SandboxPanel) -> None:
    order_id = completed_order(upstream, panel)
    assert upstream.refill(order_id) == 1
    assert panel.calls[-1][1] == {"action": "refill", "order": str(order_id)}


def test_refills_create_one_refill_per_order_with_errors_per_item(
        upstream: PanelClient, panel: SandboxPanel) -> None:
    done = completed_order(upstream, panel)
    pending = place(upstream, link=LINK + "/pending")
    found = upstream.refills([done, pending, 999])
    refused, missing = found[pending], found[999]
    assert found[done] == 1
    assert isinstance(refused, errors.Refused) and refused.code == "refill_refused"
    assert isinstance(missing, errors.NotFound) and missing.code == "order_not_found"
    assert panel.calls[-1][1] == {"action": "refill", "orders": f"{done},{pending},999"}


def test_refill_status_is_normalised_with_its_state(upstream: PanelClient, panel: SandboxPanel) -> None:
    refill_id = upstream.refill(completed_order(upstream, panel))
    assert upstream.refill_status(refill_id) == {"id": refill_id, "status": "Pending", "state": "pending"}
    panel.advance(21)
    assert upstream.refill_status(refill_id) == {"id": refill_id, "status": "Completed", "state": "completed"}


def test_status_of_several_refills_uses_refill_status_with_refills_not_the_pages_erratum(
        upstream: PanelClient, panel: SandboxPanel) -> None:
    # The panel page shows action=refill with orders= for this; that call CREATES refills.
    refill_id = upstream.refill(completed_order(upstream, panel))
    before = len(panel.calls)

    found = upstream.refill_statuses([refill_id, 77])

    assert found[refill_id] == {"id": refill_id, "status": "Pending", "state": "pending"}
    assert isinstance(found[77], errors.NotFound) and found[77].code == "refill_not_found"
    assert panel.calls[before:] == [("refill_status", {"action": "refill_status",
                                                       "refills": f"{refill_id},77"})]


def test_cancel_answers_true_per_accepted_order_and_an_error_per_refused_one(
        upstream: PanelClient, panel: SandboxPanel) -> None:
    cancellable = place(upstream, 1)  # service 1 can be canceled
    fixed = place(upstream, 2, link=LINK + "/2")  # service 2 cannot
    found = upstream.cancel([cancellable, fixed, 999])
    refused, missing = found[fixed], found[999]
    assert found[cancellable] is True
    assert isinstance(refused, errors.Refused) and refused.code == "cancel_refused"
    assert isinstance(missing, errors.NotFound) and missing.code == "order_not_found"


@pytest.mark.parametrize("call", [
    lambda c: c.statuses(list(range(1, 102))),
    lambda c: c.refill_statuses(list(range(1, 102))),
    lambda c: c.refills(list(range(1, 102))),
    lambda c: c.cancel(list(range(1, 102))),
    lambda c: c.statuses([]),
], ids=["statuses", "refill_statuses", "refills", "cancel", "empty"])
def test_a_batch_of_more_than_100_ids_is_refused_before_anything_is_sent(
        upstream: PanelClient, panel: SandboxPanel, call: Callable[[PanelClient], Any]) -> None:
    with pytest.raises(ValueError):
        call(upstream)
    assert panel.calls == []


def test_a_batch_of_exactly_100_ids_is_one_call(upstream: PanelClient, panel: SandboxPanel) -> None:
    found = upstream.statuses(list(range(1, 101)))
    assert len(found) == 100 and actions(panel) == ["status"]


# -- the panel's error texts ----------------------------------------------------------

ERROR_TEXTS = [
    # (action, text, class, code, status)
    ("balance", "Invalid API key", errors.UpstreamAuthFailed, "upstream_auth_failed", 502),
    ("balance", "Incorrect API key", errors.UpstreamAuthFailed, "upstream_auth_failed", 502),
    ("balance", "INVALID API KEY", errors.UpstreamAuthFailed, "upstream_auth_failed", 502),
    ("add", "Incorrect service ID", errors.Refused, "unknown_service", 422),
    ("add", "incorrect service id", errors.Refused, "unknown_service", 422),
    ("add", "Incorrect link", errors.Refused, "invalid_link", 422),
    ("add", "Bad link", errors.Refused, "invalid_link", 422),
    ("add", "Quantity less than minimal 50", errors.Refused, "quantity_out_of_range", 422),
    ("add", "Quantity more than maximum 10000", errors.Refused, "quantity_out_of_range", 422),
    ("add", "Quantity more than maximal 10000", errors.Refused, "quantity_out_of_range", 422),
    ("add", "Not enough funds on balance", errors.InsufficientFunds, "insufficient_funds", 402),
    ("add", "not enough funds on balance", errors.InsufficientFunds, "insufficient_funds", 402),
    ("add", "You have active order with this link", errors.Refused, "link_has_active_order", 422),
    ("status", "Incorrect order ID", errors.NotFound, "order_not_found", 404),
    ("status", "INCORRECT ORDER ID", errors.NotFound, "order_not_found", 404),
    ("status", "incorrect order id", errors.NotFound, "order_not_found", 404),
    ("refill_status", "Refill not found", errors.NotFound, "refill_not_found", 404),
    ("refill_status", "REFILL NOT FOUND", errors.NotFound, "refill_not_found", 404),
    ("refill", "Order not eligible for refill", errors.Refused, "refill_refused", 422),
    ("refill", "Refill disabled", errors.Refused, "refill_refused", 422),
    ("cancel", "Cannot cancel order", errors.Refused, "cancel_refused", 422),
    ("cancel", "Cannot cancel", errors.Refused, "cancel_refused", 422),
    ("cancel", "Cancel disabled", errors.Refused, "cancel_refused", 422),
    ("add", "Something the panel never said before", errors.Refused, "upstream_rejected", 422),
    # A read has nothing to refuse: an unexpected refusal is the panel misbehaving.
    ("status", "Something the panel never said before", errors.UpstreamBadResponse,
     "upstream_bad_response", 502),
    ("balance", "Not enough funds on balance", errors.UpstreamBadResponse, "upstream_bad_response", 502),
    ("refill", "Refill is disabled for this service", errors.Refused, "refill_refused", 422),
]

CALLS: dict[str, Callable[[PanelClient], Any]] = {
    "balance": lambda c: c.balance(),
    "add": lambda c: place(c),
    "status": lambda c: c.status(23501),
    "refill_status": lambda c: c.refill_status(1),
    "refill": lambda c: c.refill(23501),
    "cancel": lambda c: c.cancel([23501]),
}


@pytest.mark.parametrize("action, text, error_class, code, status", ERROR_TEXTS,
                         ids=[f"{row[0]}:{row[1]}" for row in ERROR_TEXTS])
def test_each_panel_error_text_maps_to_its_error(
        upstream: PanelClient, panel: SandboxPanel, sleeps: list[float], action: str, text: str,
        error_class: type[errors.GatewayError], code: str, status: int) -> None:
    panel.inject(action, "error", text=text)

    with pytest.raises(error_class) as raised:
        CALLS[action](upstream)

    assert (raised.value.code, raised.value.status, raised.value.upstream) == (code, status, text)
    # a refusal is an answer, not a transient failure: asked once, never retried
    assert actions(panel).count(action) == 1 and sleeps == []


def test_an_incorrect_request_is_the_gateways_fault_with_a_documented_502_code(
        upstream: PanelClient, panel: SandboxPanel) -> None:
    # docs/architecture.md: the 502 codes are upstream_bad_response and upstream_auth_failed.
    panel.inject("balance", "error", text="Incorrect request")
    with pytest.raises(errors.UpstreamAuthFailed) as raised:
        upstream.balance()
    assert raised.value.status == 502
    assert raised.value.code in {"upstream_bad_response", "upstream_auth_failed"}


def test_the_real_sandbox_refusals_map_without_injection(upstream: PanelClient, panel: SandboxPanel) -> None:
    with pytest.raises(errors.NotFound) as order:
        upstream.status(424242)
    with pytest.raises(errors.NotFound) as refill:
        upstream.refill_status(424242)
    with pytest.raises(errors.Refused) as quantity:
        place(upstream, quantity=10)
    assert (order.value.code, refill.value.code, quantity.value.code) == (
        "order_not_found", "refill_not_found", "quantity_out_of_range")
    assert quantity.value.upstream == "Quantity less than minimal 50"


def test_a_wrong_upstream_key_is_an_auth_failure(panel: SandboxPanel, sleeps: list[float]) -> None:
    with pytest.raises(errors.UpstreamAuthFailed) as raised:
        panel_client(panel, sleeps, key="not-the-key").balance()
    assert (raised.value.status, raised.value.upstream) == (502, "Invalid API key")


def test_panel_error_matches_on_part_of_the_text() -> None:
    err = panel_error("Error: Quantity less than minimal 100 for this service")
    assert (type(err), err.code) == (errors.Refused, "quantity_out_of_range")


# -- failures that are not answers -------------------------------------------------------


@pytest.mark.parametrize("fault", READ_FAULTS)
def test_an_unreadable_answer_is_a_bad_response(
        upstream: PanelClient, panel: SandboxPanel, fault: str) -> None:
    panel.inject("cancel", fault)
    with pytest.raises(errors.UpstreamBadResponse) as raised:
        upstream.cancel([23501])
    assert (raised.value.status, raised.value.code) == (502, "upstream_bad_response")


@pytest.mark.parametrize("fault", READ_FAULTS)
@pytest.mark.parametrize("action", ["balance", "services", "status", "refill_status"])
def test_a_read_is_retried_with_backoff_and_succeeds_when_the_fault_clears(
        upstream: PanelClient, panel: SandboxPanel, sleeps: list[float], action: str, fault: str) -> None:
    read = {"balance": lambda: upstream.balance(), "services": lambda: upstream.services(),
            "status": lambda: upstream.statuses([1]), "refill_status": lambda: upstream.refill_statuses([1])}
    panel.inject(action, fault, times=2)

    read[action]()

    assert actions(panel) == [action] * 3
    assert sleeps == [0.2, 0.4]  # backoff * 2**attempt, times the (fixed) jitter


def test_reads_give_up_after_a_bounded_number_of_attempts(
        upstream: PanelClient, panel: SandboxPanel, sleeps: list[float]) -> None:
    panel.inject("balance", "html_502", times=10)
    with pytest.raises(errors.UpstreamBadResponse):
        upstream.balance()
    assert actions(panel) == ["balance"] * 3
    assert sleeps == [0.2, 0.4]


def test_backoff_is_capped(panel: SandboxPanel, sleeps: list[float]) -> None:
    upstream = panel_client(panel, sleeps, read_attempts=6, backoff=0.1, max_backoff=1.0)
    panel.inject("balance", "reset", times=5)
    assert upstream.balance()["balance"] == "1000.00000"
    assert sleeps == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_the_backoff_is_jittered(panel: SandboxPanel, sleeps: list[float]) -> None:
    draws = iter([0.5, 0.25])
    upstream = panel_client(panel, sleeps, jitter=lambda: next(draws))
    panel.inject("balance", "http_500", times=2)
    upstream.balance()
    assert sleeps == [0.1, 0.1]


@pytest.mark.parametrize("fault", ["reset", "html_502", "truncated_json", "http_500"])
def test_add_is_never_retried(upstream: PanelClient, panel: SandboxPanel, sleeps: list[float],
                              fault: str) -> None:
    panel.inject("add", fault)
    with pytest.raises(errors.UpstreamBadResponse):
        place(upstream)
    assert panel.add_calls == 1 and sleeps == []


@pytest.mark.parametrize("write", ["refill", "cancel"])
def test_refill_and_cancel_are_never_retried(upstream: PanelClient, panel: SandboxPanel,
                                             sleeps: list[float], write: str) -> None:
    panel.inject(write, "reset")
    with pytest.raises(errors.UpstreamBadResponse):
        CALLS[write](upstream)
    assert actions(panel) == [write] and sleeps == []


def test_an_answer_slower_than_the_timeout_is_a_timeout_and_not_retried(
        panel: SandboxPanel, sleeps: list[float]) -> None:
    upstream = panel_client(panel, sleeps, timeout=SHORT_TIMEOUT)
    panel.inject("balance", "delay", seconds=STALL)
    with pytest.raises(errors.UpstreamTimeout) as raised:
        upstream.balance()
    assert (raised.value.status, raised.value.code) == (504, "upstream_timeout")
    assert actions(panel) == ["balance"] and sleeps == []


def test_a_slow_add_is_a_timeout_sent_exactly_once(panel: SandboxPanel, sleeps: list[float]) -> None:
    upstream = panel_client(panel, sleeps, timeout=SHORT_TIMEOUT)
    panel.inject("add", "delay", seconds=STALL, after_commit=True)
    with pytest.raises(errors.UpstreamTimeout):
        place(upstream)
    assert panel.add_calls == 1 and sleeps == []


TRICKLE_TIMEOUT = 2.0
TRICKLE_BOUND = 8.0  # the timeout plus a margin wide enough for a loaded machine


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        call()
    except errors.GatewayError as err:
        return err, time.monotonic() - started
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize("part", ["body", "headers"])
def test_a_trickling_answer_to_a_read_is_cut_at_the_timeout_of_the_whole_call(
        panel: SandboxPanel, sleeps: list[float], part: str) -> None:
    # given a panel that sends a byte every 0.5 s for a minute
    with trickling_server(part) as (url, received):
        upstream = panel_client(panel, sleeps, url=url, timeout=TRICKLE_TIMEOUT)
        # when
        err, took = timed(upstream.balance)
    # then the whole call, not each read, is bounded, and a timeout is not retried
    assert (type(err), err.status, err.code) == (errors.UpstreamTimeout, 504, "upstream_timeout")
    assert TRICKLE_TIMEOUT <= took < TRICKLE_BOUND
    assert len(received) == 1 and sleeps == []


@pytest.mark.parametrize("framing", ["close", "eof"])
def test_a_trickling_answer_that_runs_until_close_is_cut_at_the_timeout_too(
        panel: SandboxPanel, sleeps: list[float], framing: str) -> None:
    # given a panel that says `Connection: close` (with a length, or none: read to EOF),
    # after which http.client reads the answer without its connection's socket
    with trickling_server("body", framing=framing) as (url, received):
        upstream = panel_client(panel, sleeps, url=url, timeout=TRICKLE_TIMEOUT)
        err, took = timed(upstream.balance)
    assert (type(err), err.status) == (errors.UpstreamTimeout, 504)
    assert TRICKLE_TIMEOUT <= took < TRICKLE_BOUND
    assert len(received) == 1 and sleeps == []


@pytest.mark.parametrize("part, framing", [("headers", "length"), ("body", "close"), ("body", "eof")])
def test_a_trickling_answer_over_tls_is_cut_at_the_timeout_too(
        panel: SandboxPanel, sleeps: list[float], tmp_path: Path, part: str, framing: str) -> None:
    tls, session = trusted_tls(tmp_path)
    with trickling_server(part, tls, framing=framing) as (url, received):
        upstream = panel_client(panel, sleeps, url=url, session=session, timeout=TRICKLE_TIMEOUT)
        err, took = timed(upstream.balance)
    assert type(err) is errors.UpstreamTimeout and took < TRICKLE_BOUND
    assert len(received) == 1


def test_a_trickling_answer_to_add_is_a_timeout_sent_once(panel: SandboxPanel, sleeps: list[float]) -> None:
    with trickling_server("body") as (url, received):
        upstream = panel_client(panel, sleeps, url=url, timeout=TRICKLE_TIMEOUT)
        err, took = timed(lambda: place(upstream))
    assert type(err) is errors.UpstreamTimeout and took < TRICKLE_BOUND
    assert len(received) == 1


def test_a_call_never_outlasts_what_the_function_has_left(panel: SandboxPanel, sleeps: list[float]) -> None:
    # given a configured timeout of 30 s, but a function with 4 s left, 2 of them kept back
    with trickling_server("body") as (url, received):
        upstream = panel_client(panel, sleeps, url=url, timeout=30.0, remaining=lambda: 4.0, reserve=2.0)
        err, took = timed(upstream.balance)
    assert type(err) is errors.UpstreamTimeout and took < TRICKLE_BOUND
    assert len(received) == 1


class LambdaContext:
    def __init__(self, seconds_left: float) -> None:
        self.seconds_left = seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds_left * 1000)


def test_the_app_bounds_panel_calls_by_the_invocations_remaining_time(
        gateway: Any, panel: SandboxPanel, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a 30 s timeout, and an invocation with 4 s left (the client keeps 2 back)
    monkeypatch.setenv("SMM_TIMEOUT_SECONDS", "30")
    invocation = gateway._invocation.set(LambdaContext(4.0))  # what the envelope or the schedule sets
    panel.inject("balance", "delay", seconds=10)
    try:
        # when
        err, took = timed(gateway.panel().balance)
    finally:
        gateway._invocation.reset(invocation)
    # then
    assert type(err) is errors.UpstreamTimeout and took < TRICKLE_BOUND


def test_an_invocations_time_ends_with_it(client: Any, gateway: Any) -> None:
    # a request's Lambda context must not bound what later runs in the same thread
    # (the next invocation of a warm container, a scheduled run, a test's direct call)
    assert client.get("/health").status_code == 200

    assert gateway.time_left() is None


def test_a_read_is_not_retried_when_another_try_would_outlast_the_function(
        panel: SandboxPanel, sleeps: list[float]) -> None:
    # given 3.5 s left, 2 kept back: one 2 s try fits (cut to 1.5 s), a second does not
    upstream = panel_client(panel, sleeps, timeout=2.0, remaining=lambda: 3.5, reserve=2.0)
    panel.inject("balance", "html_502", times=2)
    with pytest.raises(errors.UpstreamBadResponse):
        upstream.balance()
    assert actions(panel) == ["balance"] and sleeps == []


def test_nothing_is_sent_when_the_function_has_no_time_left(panel: SandboxPanel, sleeps: list[float]) -> None:
    upstream = panel_client(panel, sleeps, remaining=lambda: 0.5, reserve=2.0)
    with pytest.raises(errors.UpstreamUnavailable):
        place(upstream)
    assert panel.calls == []


def test_a_function_with_time_to_spare_keeps_the_configured_timeout(panel: SandboxPanel, sleeps: list[float]) -> None:
    upstream = panel_client(panel, sleeps, remaining=lambda: 27.0)
    panel.inject("balance", "html_502", times=2)
    assert upstream.balance()["currency"] == "USD"
    assert sleeps == [0.2, 0.4]


@pytest.fixture
def closed_url() -> Iterator[str]:
    # Bound but never listening: connecting is refused, and no other test can take the port.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}/api/v2"


def test_a_refused_connection_is_unavailable_and_retried_for_reads(
        panel: SandboxPanel, sleeps: list[float], closed_url: str) -> None:
    upstream = panel_client(panel, sleeps, url=closed_url)
    with pytest.raises(errors.UpstreamUnavailable) as raised:
        upstream.balance()
    assert (raised.value.status, raised.value.code) == (503, "upstream_unavailable")
    assert sleeps == [0.2, 0.4]


def test_a_refused_connection_for_add_is_unavailable_without_retry(
        panel: SandboxPanel, sleeps: list[float], closed_url: str) -> None:
    upstream = panel_client(panel, sleeps, url=closed_url)
    with pytest.raises(errors.UpstreamUnavailable):
        place(upstream)
    assert sleeps == []


@pytest.mark.parametrize("how", ["garbage", "reset"])
def test_a_tls_failure_after_the_add_went_out_is_a_lost_connection_never_unavailable(
        panel: SandboxPanel, sleeps: list[float], tmp_path: Path, how: str) -> None:
    # given a TLS panel that reads the whole order, then breaks the connection
    tls, session = trusted_tls(tmp_path)
    with tls_breaking_server(tls, how) as (url, received):
        upstream = panel_client(panel, sleeps, url=url, session=session)
        # when
        with pytest.raises(errors.GatewayError) as raised:
            place(upstream)
    # then the order may have been placed: not "nothing was sent"
    assert isinstance(raised.value, errors.UpstreamConnectionLost)
    assert (raised.value.status, raised.value.code) == (502, "upstream_bad_response")
    assert len(received) == 1 and b"action=add" in received[0] and sleeps == []


def test_a_tls_failure_on_a_read_is_retried(panel: SandboxPanel, sleeps: list[float], tmp_path: Path) -> None:
    tls, session = trusted_tls(tmp_path)
    with tls_breaking_server(tls, "garbage") as (url, received):
        upstream = panel_client(panel, sleeps, url=url, session=session)
        with pytest.raises(errors.UpstreamConnectionLost):
            upstream.balance()
    assert len(received) == 3 and sleeps == [0.2, 0.4]


# -- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_the_key_never_reaches_its_target(
        panel: SandboxPanel, sleeps: list[float], status: int) -> None:
    with scripted_server(status, headers={"Location": panel.url}) as url:
        upstream = panel_client(panel, sleeps, url=url)
        with pytest.raises(errors.UpstreamBadResponse) as raised:
            upstream.balance()
        with pytest.raises(errors.UpstreamBadResponse):
            place(upstream)
    assert "redirect" in raised.value.message
    assert panel.calls == []  # the sandbox never saw a request, so never the key


# -- answers only other panels give ---------------------------------------------------------


def test_money_sent_as_a_json_number_keeps_every_digit(panel: SandboxPanel, sleeps: list[float]) -> None:
    # As a float this would read 100.84292000123457.
    answer = b'{"balance": 100.842920001234567, "currency": "USD"}'
    with scripted_server(200, answer, {"Content-Type": "application/json"}) as url:
        assert panel_client(panel, sleeps, url=url).balance() == {"balance": "100.842920001234567",
                                                                   "currency": "USD"}


def test_a_count_of_a_huge_exponent_is_unknown_and_such_money_a_bad_response(
        panel: SandboxPanel, sleeps: list[float]) -> None:
    counts = b'{"status": "Pending", "charge": "0.1", "start_count": 1e100000, "remains": "1e5000"}'
    with scripted_server(200, counts, {"Content-Type": "application/json"}) as url:
        status = panel_client(panel, sleeps, url=url).status(7)
    assert (status["start_count"], status["remains"]) == (None, None)
    charge = b'{"status": "Pending", "charge": "1e100000", "start_count": 1, "remains": 1}'
    with scripted_server(200, charge, {"Content-Type": "application/json"}) as url:
        with pytest.raises(errors.UpstreamBadResponse) as raised:
            panel_client(panel, sleeps, url=url).status(7)
    assert (raised.value.status, raised.value.code) == (502, "upstream_bad_response")


@pytest.mark.parametrize("status, answer", [
    (403, b'{"error": "Invalid API key"}'),
    (401, b'{"error": "Incorrect API key"}'),
])
def test_a_panel_error_with_an_http_error_status_still_maps_by_its_text(
        panel: SandboxPanel, sleeps: list[float], status: int, answer: bytes) -> None:
    with scripted_server(status, answer, {"Content-Type": "application/json"}) as url:
        with pytest.raises(errors.UpstreamAuthFailed):
            panel_client(panel, sleeps, url=url).balance()
    assert sleeps == []


@pytest.mark.parametrize("status, answer", [
    (429, b"<html><body>Too Many Requests</body></html>"),
    (404, b"<html><body>404 Not Found</body></html>"),
    (200, b""),
    (200, b"[1, 2"),
    (200, b'"just a string"'),
    (400, b'{"message": "no"}'),
])
def test_anything_but_the_expected_json_is_a_bad_response(
        panel: SandboxPanel, sleeps: list[float], status: int, answer: bytes) -> None:
    with scripted_server(status, answer) as url:
        with pytest.raises(errors.UpstreamBadResponse):
            panel_client(panel, sleeps, url=url).balance()

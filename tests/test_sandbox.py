"""The sandbox panel, over real loopback HTTP, against upstream-api.md.

Every panel here runs on the manual clock (`clock=None`), so the order timeline moves
only when a test calls `advance()`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from decimal import Decimal
from typing import Iterator
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from sandbox import DEFAULT_KEY, SandboxPanel, catalogue
from sandbox.catalogue import RULES, TYPES
from tests.conftest import DEFAULT_TIMEOUT, SHORT_TIMEOUT, STALL

LINK = "https://instagram.com/sandbox"
FIRST = 23501
FIXED_TYPES = ("Default",) + TYPES  # the types of services 1 to 16


@pytest.fixture
def panel() -> Iterator[SandboxPanel]:
    with SandboxPanel(clock=None) as started:
        yield started


def post(panel: SandboxPanel, timeout: float = DEFAULT_TIMEOUT, **params: str) -> requests.Response:
    return requests.post(panel.url, data={"key": DEFAULT_KEY, **params}, timeout=timeout)


def call(panel: SandboxPanel, **params: str) -> object:
    answer = post(panel, **params)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    return answer.json()


def place(panel: SandboxPanel, service: str = "1", quantity: str = "1000", link: str = LINK,
          **extra: str) -> int:
    answer = call(panel, action="add", service=service, link=link, quantity=quantity, **extra)
    assert isinstance(answer, dict) and "order" in answer, answer
    return int(answer["order"])


def status(panel: SandboxPanel, order: int) -> dict[str, object]:
    answer = call(panel, action="status", order=str(order))
    assert isinstance(answer, dict)
    return answer


# -- protocol -------------------------------------------------------------------


def test_balance_answers_money_as_a_string_with_its_currency(panel: SandboxPanel) -> None:
    assert post(panel, action="balance").text == '{"balance": "1000.00000", "currency": "USD"}'


def test_a_missing_or_wrong_key_is_refused_with_http_200(panel: SandboxPanel) -> None:
    for data in ({"action": "balance"}, {"action": "balance", "key": "wrong"}):
        answer = requests.post(panel.url, data=data, timeout=DEFAULT_TIMEOUT)
        assert (answer.status_code, answer.json()) == (200, {"error": "Invalid API key"})


def test_an_unknown_or_missing_action_is_an_incorrect_request(panel: SandboxPanel) -> None:
    assert call(panel, action="orders") == {"error": "Incorrect request"}
    assert call(panel) == {"error": "Incorrect request"}


def test_get_is_an_incorrect_request(panel: SandboxPanel) -> None:
    answer = requests.get(panel.url, timeout=DEFAULT_TIMEOUT)
    assert (answer.status_code, answer.json()) == (200, {"error": "Incorrect request"})


def test_other_paths_answer_an_html_404(panel: SandboxPanel) -> None:
    answer = requests.post(panel.url.replace("/api/v2", "/api/v3"), data={"key": DEFAULT_KEY},
                           timeout=DEFAULT_TIMEOUT)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("text/html")


def test_a_json_object_body_is_accepted_like_a_form(panel: SandboxPanel) -> None:
    answer = requests.post(panel.url, json={"key": DEFAULT_KEY, "action": "add", "service": 1,
                                            "link": LINK, "quantity": 100}, timeout=DEFAULT_TIMEOUT)
    assert answer.json() == {"order": FIRST}


def test_connections_are_kept_alive_and_every_answer_has_a_content_length(
        panel: SandboxPanel) -> None:
    parts = urlsplit(panel.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=DEFAULT_TIMEOUT)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        sockets = []
        for path in ("/api/v2", "/elsewhere", "/api/v2"):
            connection.request("POST", path, urlencode({"key": DEFAULT_KEY, "action": "balance"}),
                               headers)
            answer = connection.getresponse()
            body = answer.read()
            assert int(answer.getheader("Content-Length")) == len(body)
            sockets.append(connection.sock)
        assert sockets[0] is sockets[1] is sockets[2]
    finally:
        connection.close()


def test_the_key_is_never_echoed_nor_recorded() -> None:
    key = "k3y-that-must-not-leak"
    with SandboxPanel(api_key=key, clock=None) as panel:
        texts = [requests.post(panel.url, data={"key": key, **params}, timeout=DEFAULT_TIMEOUT).text
                 for params in ({"action": "balance"}, {"action": "add", "service": "1",
                                "link": LINK, "quantity": "100"},
                                {"action": "status", "orders": f"{FIRST},abc"},
                                {"action": "cancel", "orders": str(FIRST)}, {"action": "nope"},
                                {"action": "services"})]
        assert all(key not in text for text in texts)
        assert all("key" not in params for _, params in panel.calls)


# -- catalogue ------------------------------------------------------------------


def test_services_lists_3000_entries_covering_every_type(panel: SandboxPanel) -> None:
    services = call(panel, action="services")
    assert isinstance(services, list) and len(services) == 3000
    assert {str(s["type"]).lower() for s in services} == {t.lower() for t in TYPES}
    assert {str(s["type"]).lower() for s in services[16:]} == {t.lower() for t in TYPES}


def test_the_first_sixteen_services_are_fixed_and_canonical(panel: SandboxPanel) -> None:
    services = call(panel, action="services")
    assert isinstance(services, list)
    assert services[0] == {"service": 1, "name": "Instagram followers", "type": "Default",
                           "category": "Instagram", "rate": "0.90", "min": "50", "max": "10000",
                           "refill": True, "cancel": True, "dripfeed": True}
    assert tuple(s["type"] for s in services[:16]) == FIXED_TYPES
    for number, service in enumerate(services[:16], start=1):
        assert service["service"] == number
        assert all(isinstance(service[k], str) for k in ("rate", "min", "max"))
        assert all(isinstance(service[k], bool) for k in ("refill", "cancel", "dripfeed"))


def test_the_table_in_the_catalogue_docstring_matches_the_fixed_services(
        panel: SandboxPanel) -> None:
    rows = [line.strip("|").split("|") for line in catalogue.__doc__.splitlines()  # type: ignore
            if line.startswith("| ") and "type" not in line]
    documented = [dict(zip(("service", "type", "name", "category", "rate", "min", "max",
                            "refill", "cancel", "dripfeed"), (c.strip() for c in row)))
                  for row in rows]
    served = [{k: json.dumps(v).strip('"') for k, v in s.items()}
              for s in call(panel, action="services")[:16]]  # type: ignore[index]
    assert documented == served


def test_generated_services_carry_the_quirks_of_real_catalogues(panel: SandboxPanel) -> None:
    generated = call(panel, action="services")[16:]  # type: ignore[index]
    assert generated[0]["service"] in (17, "17")
    assert any(isinstance(s["service"], str) for s in generated)
    assert any(s["type"].islower() for s in generated)
    assert any("cancel" not in s for s in generated)
    assert any("dripfeed" not in s for s in generated)
    assert any(s.get("dripfeed") in (0, 1) and type(s["dripfeed"]) is int for s in generated)
    assert any(isinstance(s["min"], int) for s in generated)
    assert any(isinstance(s["max"], str) for s in generated)
    assert 0 < sum(s["max"] in (2147483647, "2147483647") for s in generated) < 30
    assert any(len(s["rate"].split(".")[1]) == 8 for s in generated)
    categories = " ".join(s["category"] for s in generated)
    for network in ("Instagram", "TikTok", "YouTube", "Telegram", "X ", "Facebook", "Spotify",
                    "Website traffic"):
        assert network in categories


def test_a_seed_always_gives_the_same_catalogue() -> None:
    def services(seed: int) -> str:
        with SandboxPanel(services=200, seed=seed, clock=None) as panel:
            return post(panel, action="services").text

    assert services(5) == services(5) != services(6)


# -- add ------------------------------------------------------------------------


def test_add_answers_numeric_ids_from_23501_and_charges_rate_per_thousand(
        panel: SandboxPanel) -> None:
    first = post(panel, action="add", service="1", link=LINK, quantity="1000")
    assert first.text == '{"order": 23501}'
    assert place(panel, service="2", quantity="333", link=LINK + "/2") == FIRST + 1
    # 0.90 * 1000 / 1000 + 0.25 * 333 / 1000 = 0.9 + 0.08325
    assert panel.balance == Decimal("1000") - Decimal("0.90") - Decimal("0.08325")
    assert call(panel, action="balance") == {"balance": "999.01675", "currency": "USD"}
    assert panel.orders[FIRST].charge == Decimal("0.90000")


@pytest.mark.parametrize("params, error", [
    ({"service": "99999", "link": LINK, "quantity": "100"}, "Incorrect service ID"),
    ({"service": "x1", "link": LINK, "quantity": "100"}, "Incorrect service ID"),
    ({"link": LINK, "quantity": "100"}, "Incorrect request"),
    ({"service": "1", "quantity": "100"}, "Incorrect request"),
    ({"service": "1", "link": LINK}, "Incorrect request"),
    ({"service": "1", "link": LINK, "quantity": "many"}, "Incorrect request"),
    ({"service": "1", "link": "instagram.com/sandbox", "quantity": "100"}, "Incorrect link"),
    ({"service": "1", "link": "ftp://instagram.com/x", "quantity": "100"}, "Incorrect link"),
    ({"service": "1", "link": LINK, "quantity": "49"}, "Quantity less than minimal 50"),
    ({"service": "1", "link": LINK, "quantity": "10001"}, "Quantity more than maximum 10000"),
    ({"service": "2", "link": LINK, "quantity": "99"}, "Quantity less than minimal 100"),
    ({"service": "2", "link": LINK, "quantity": "50001"}, "Quantity more than maximum 50000"),
])
def test_add_refuses_bad_orders_with_the_panels_texts(
        panel: SandboxPanel, params: dict[str, str], error: str) -> None:
    assert call(panel, action="add", **params) == {"error": error}
    assert panel.orders == {} and panel.balance == Decimal("1000")


def test_add_refuses_an_order_the_balance_cannot_pay(panel: SandboxPanel) -> None:
    panel.set_balance(Decimal("5"))
    assert call(panel, action="add", service="1", link=LINK, quantity="10000") == {
        "error": "Not enough funds on balance"}
    assert place(panel, quantity="5000") == FIRST  # exactly 4.50
    assert panel.balance == Decimal("0.50000")


def test_a_second_order_on_an_active_link_is_refused_until_the_first_finishes(
        panel: SandboxPanel) -> None:
    place(panel)
    active = {"error": "You have active order with this link"}
    assert call(panel, action="add", service="2", link=LINK, quantity="100") == active
    panel.advance(10)
    assert call(panel, action="add", service="2", link=LINK, quantity="100") == active
    place(panel, link=LINK + "/other")
    panel.advance(20)
    assert place(panel, service="2", quantity="100") == FIRST + 2


def test_orders_on_the_same_link_are_allowed_when_the_panel_does_not_forbid_it() -> None:
    with SandboxPanel(clock=None, one_order_per_link=False) as panel:
        assert [place(panel), place(panel)] == [FIRST, FIRST + 1]


# A valid `add` for each fixed service, with its derived quantity and charge.
VALID: dict[int, tuple[dict[str, str], int, str]] = {
    1: ({"link": LINK, "quantity": "100"}, 100, "0.09000"),
    2: ({"link": LINK, "quantity": "100"}, 100, "0.02500"),
    3: ({"link": LINK}, 1, "4.50000"),
    4: ({"link": LINK, "comments": "nice\ngreat\n\nwow\r\ncool\nsuper"}, 5, "0.06000"),
    5: ({"link": LINK, "comments": "one\ntwo"}, 2, "2.50000"),
    6: ({"link": LINK, "quantity": "100", "usernames": "alice\nbob"}, 100, "0.30000"),
    7: ({"link": LINK, "quantity": "100", "usernames": "alice", "hashtags": "#a\n#b"}, 100,
        "0.35000"),
    8: ({"link": LINK, "usernames": "alice\nbob\ncarol"}, 3, "0.01200"),
    9: ({"link": LINK, "quantity": "100", "hashtag": "sandbox"}, 100, "0.32000"),
    10: ({"link": LINK, "quantity": "100", "username": "alice"}, 100, "0.34000"),
    11: ({"link": LINK, "quantity": "100", "media": LINK + "/p/1"}, 100, "0.36000"),
    12: ({"link": LINK, "quantity": "100", "username": "alice"}, 100, "0.18000"),
    13: ({"link": LINK, "quantity": "100", "answer_number": "2"}, 100, "0.12000"),
    14: ({"link": LINK, "quantity": "100", "groups": "t.me/a\nt.me/b"}, 100, "0.60000"),
    15: ({"username": "alice", "min": "50", "max": "100", "delay": "0", "posts": "10"}, 1000,
         "0.40000"),
    16: ({"link": LINK, "quantity": "1000", "country": "US", "device": "1",
          "type_of_traffic": "1", "google_keyword": "smm"}, 1000, "0.05000"),
}


@pytest.mark.parametrize("service", sorted(VALID))
def test_add_accepts_each_type_with_its_fields_and_charges_accordingly(
        panel: SandboxPanel, service: int) -> None:
    params, quantity, charge = VALID[service]
    assert call(panel, action="add", service=str(service), **params) == {"order": FIRST}
    assert panel.orders[FIRST].quantity == quantity
    assert status(panel, FIRST)["charge"] == charge
    assert panel.balance == Decimal("1000") - Decimal(charge)


def test_add_refuses_each_type_without_any_of_its_required_fields(panel: SandboxPanel) -> None:
    for service, (params, _, _) in VALID.items():
        for name in RULES[FIXED_TYPES[service - 1]].required:
            partial = {k: v for k, v in params.items() if k != name}
            answer = call(panel, action="add", service=str(service), **partial)
            assert answer == {"error": "Incorrect request"}, (service, name)
    assert panel.orders == {}


def test_listed_quantities_are_checked_against_min_and_max(panel: SandboxPanel) -> None:
    too_few = call(panel, action="add", service="4", link=LINK, comments="a\nb\nc\nd")
    assert too_few == {"error": "Quantity less than minimal 5"}


def test_runs_and_interval_are_accepted_only_where_the_service_has_dripfeed(
        panel: SandboxPanel) -> None:
    drip = {"runs": "5", "interval": "30"}
    assert call(panel, action="add", service="2", link=LINK, quantity="100", **drip) == {
        "error": "Incorrect request"}
    assert call(panel, action="add", service="1", link=LINK, quantity="100", runs="5") == {
        "error": "Incorrect request"}
    assert place(panel, quantity="100", **drip) == FIRST
    assert (panel.orders[FIRST].runs, panel.orders[FIRST].interval) == (5, 30)


def test_web_traffic_needs_a_keyword_or_a_referrer_by_its_type_of_traffic(
        panel: SandboxPanel) -> None:
    base = {"action": "add", "service": "16", "link": LINK, "quantity": "1000", "country": "US",
            "device": "1"}
    assert call(panel, **base, type_of_traffic="1") == {"error": "Incorrect request"}
    assert call(panel, **base, type_of_traffic="2") == {"error": "Incorrect request"}
    assert call(panel, **base, type_of_traffic="2", referring_url=LINK) == {"order": FIRST}


def test_subscriptions_check_min_and_max_against_the_service(panel: SandboxPanel) -> None:
    base = {"action": "add", "service": "15", "username": "alice", "delay": "0"}
    assert call(panel, **base, min="10", max="100") == {"error": "Quantity less than minimal 50"}
    assert call(panel, **base, min="50", max="9000") == {
        "error": "Quantity more than maximum 5000"}
    assert call(panel, **base, min="50", max="100", expiry="2030-01-31") == {
        "error": "Incorrect request"}
    assert call(panel, **base, min="50", max="100", expiry="31/01/2030") == {"order": FIRST}


# -- status -----------------------------------------------------------------------


def test_status_of_one_order_has_the_documented_shape(panel: SandboxPanel) -> None:
    place(panel)
    answer = post(panel, action="status", order=str(FIRST)).text
    start_count = panel.orders[FIRST].start_count
    assert answer == ('{"charge": "0.90000", "start_count": "%d", "status": "Pending", '
                      '"remains": "1000", "currency": "USD"}' % start_count)


def test_status_of_an_unknown_order_is_an_incorrect_order_id(panel: SandboxPanel) -> None:
    assert call(panel, action="status", order="9") == {"error": "Incorrect order ID"}
    assert call(panel, action="status", order="abc") == {"error": "Incorrect order ID"}
    assert call(panel, action="status") == {"error": "Incorrect request"}


def test_status_of_several_orders_is_keyed_by_id_with_errors_per_item(
        panel: SandboxPanel) -> None:
    place(panel)
    answer = call(panel, action="status", orders=f"{FIRST}, 7,abc")
    assert answer == {str(FIRST): status(panel, FIRST), "7": {"error": "Incorrect order ID"},
                      "abc": {"error": "Incorrect order ID"}}


@pytest.mark.parametrize("action, name", [("status", "orders"), ("refill", "orders"),
                                          ("refill_status", "refills"), ("cancel", "orders")])
def test_batches_take_at_most_100_ids(panel: SandboxPanel, action: str, name: str) -> None:
    ids = [str(number) for number in range(1, 102)]
    assert call(panel, action=action, **{name: ",".join(ids)}) == {"error": "Incorrect request"}
    assert len(call(panel, action=action, **{name: ",".join(ids[:100])})) == 100  # type: ignore


# -- the order timeline -------------------------------------------------------------


def test_an_order_is_pending_then_in_progress_with_falling_remains_then_completed(
        panel: SandboxPanel) -> None:
    place(panel)
    seen = []
    for step in (4.5, 0.5, 12.5, 12.25, 0.25, 100):
        panel.advance(step)
        answer = status(panel, FIRST)
        seen.append((answer["status"], answer["remains"]))
    assert seen == [("Pending", "1000"), ("In progress", "1000"), ("In progress", "500"),
                    ("In progress", "10"), ("Completed", "0"), ("Completed", "0")]
    assert panel.orders[FIRST].status == "Completed"
    assert panel.balance == Decimal("999.10000")


def test_services_divisible_by_7_end_partial_and_refund_the_undelivered_part_once(
        panel: SandboxPanel) -> None:
    place(panel, service="7", usernames="alice", hashtags="#a")
    panel.advance(30)
    answer = status(panel, FIRST)
    # 1000 at 3.50 per thousand, 250 undelivered: 0.875 back
    assert (answer["status"], answer["remains"], answer["charge"]) == (
        "Partial", "250", "2.62500")
    for _ in range(3):
        panel.advance(10)
        assert call(panel, action="balance") == {"balance": "997.37500", "currency": "USD"}


def test_services_divisible_by_11_report_unknown_remains_while_pending(
        panel: SandboxPanel) -> None:
    place(panel, service="11", quantity="200", media=LINK)
    assert status(panel, FIRST)["remains"] == "Unknown"
    panel.advance(15)
    assert status(panel, FIRST)["remains"] == "120"


# -- cancel -------------------------------------------------------------------------


def test_a_cancel_is_accepted_then_the_order_is_canceled_2_s_later_and_refunded(
        panel: SandboxPanel) -> None:
    place(panel)
    panel.advance(1)
    assert call(panel, action="cancel", orders=str(FIRST)) == [{"order": FIRST, "cancel": 1}]
    panel.advance(1.9)
    assert status(panel, FIRST)["status"] == "Pending"
    assert panel.balance == Decimal("999.10000")
    panel.advance(0.2)
    answer = status(panel, FIRST)
    assert (answer["status"], answer["remains"], answer["charge"]) == (
        "Canceled", "1000", "0.00000")
    assert panel.balance == Decimal("1000.00000")


def test_a_cancel_in_progress_refunds_only_what_was_not_delivered(panel: SandboxPanel) -> None:
    place(panel)
    panel.advance(17.5)  # half delivered
    assert call(panel, action="cancel", orders=str(FIRST)) == [{"order": FIRST, "cancel": 1}]
    panel.advance(30)
    answer = status(panel, FIRST)
    assert (answer["status"], answer["remains"], answer["charge"]) == (
        "Canceled", "500", "0.45000")
    assert panel.balance == Decimal("999.55000")


def test_a_cancel_is_refused_per_item_when_the_order_cannot_be_canceled(
        panel: SandboxPanel) -> None:
    place(panel, service="2", quantity="100")  # the service has no cancel
    done = place(panel, link=LINK + "/done")
    panel.advance(30)
    twice = place(panel, link=LINK + "/twice")
    call(panel, action="cancel", orders=str(twice))
    cannot = {"error": "Cannot cancel order"}
    assert call(panel, action="cancel", orders=f"{FIRST},{done},{twice},9,abc") == [
        {"order": FIRST, "cancel": cannot}, {"order": done, "cancel": cannot},
        {"order": twice, "cancel": cannot}, {"order": 9, "cancel": {"error": "Incorrect order ID"}},
        {"order": "abc", "cancel": {"error": "Incorrect order ID"}}]
    assert call(panel, action="cancel", order=str(FIRST)) == {"error": "Incorrect request"}


# -- refill ---------------------------------------------------------------------------


def test_a_refill_of_a_completed_order_answers_a_string_id_and_moves_to_completed(
        panel: SandboxPanel) -> None:
    place(panel)
    panel.advance(30)
    assert post(panel, action="refill", order=str(FIRST)).text == '{"refill": "1"}'
    assert call(panel, action="refill", order=str(FIRST)) == {"refill": "2"}
    seen = []
    for step in (4.9, 0.1, 14.9, 0.1):
        seen.append(call(panel, action="refill_status", refill="1"))
        panel.advance(step)
    seen.append(call(panel, action="refill_status", refill="1"))
    assert [answer["status"] for answer in seen] == [  # type: ignore[index]
        "Pending", "Pending", "In progress", "In progress", "Completed"]


def test_a_refill_is_refused_before_completion_or_when_the_service_has_none(
        panel: SandboxPanel) -> None:
    place(panel)
    place(panel, service="2", quantity="100", link=LINK + "/2")
    not_eligible = {"error": "Order not eligible for refill"}
    assert call(panel, action="refill", order=str(FIRST)) == not_eligible
    panel.advance(30)
    assert call(panel, action="refill", order=str(FIRST + 1)) == not_eligible
    assert call(panel, action="refill", order="9") == {"error": "Incorrect order ID"}


def test_partial_orders_can_be_refilled(panel: SandboxPanel) -> None:
    place(panel, service="7", usernames="alice", hashtags="#a")
    panel.advance(30)
    assert call(panel, action="refill", order=str(FIRST)) == {"refill": "1"}


def test_refill_status_with_refills_reads_while_refill_with_orders_creates(
        panel: SandboxPanel) -> None:
    # The erratum of upstream-api.md: the panel page showed `refill` + `orders=` as the
    # status of several refills; it creates them.
    place(panel)
    panel.advance(30)
    assert call(panel, action="refill", orders=f"{FIRST},3") == [
        {"order": FIRST, "refill": 1}, {"order": 3, "refill": {"error": "Incorrect order ID"}}]
    assert call(panel, action="refill_status", refills="1,3") == [
        {"refill": 1, "status": "Pending"}, {"refill": 3, "status": {"error": "Refill not found"}}]
    assert call(panel, action="refill_status", refills="1,3") == [
        {"refill": 1, "status": "Pending"}, {"refill": 3, "status": {"error": "Refill not found"}}]
    assert call(panel, action="refill", orders=str(FIRST)) == [{"order": FIRST, "refill": 2}]
    assert call(panel, action="refill_status", orders=str(FIRST)) == {"error": "Incorrect request"}


def test_an_unknown_refill_is_not_found(panel: SandboxPanel) -> None:
    assert call(panel, action="refill_status", refill="1") == {"error": "Refill not found"}
    assert call(panel, action="refill_status", refill="x") == {"error": "Refill not found"}


# -- faults ---------------------------------------------------------------------------


def test_a_delay_before_commit_places_the_order_only_after_the_wait(panel: SandboxPanel) -> None:
    panel.inject("add", "delay", seconds=STALL)
    with pytest.raises(requests.Timeout):
        post(panel, timeout=SHORT_TIMEOUT, action="add", service="1", link=LINK, quantity="100")
    assert panel.orders == {}
    panel.release_delays()  # the wait is over
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while not panel.orders and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(panel.orders) == [FIRST]


def test_a_delay_after_commit_places_the_order_while_the_client_times_out(
        panel: SandboxPanel) -> None:
    panel.inject("add", "delay", seconds=STALL, after_commit=True)
    with pytest.raises(requests.Timeout):
        post(panel, timeout=SHORT_TIMEOUT, action="add", service="1", link=LINK, quantity="100")
    assert list(panel.orders) == [FIRST]
    assert panel.balance == Decimal("999.91000")


def test_stop_ends_a_delay_being_served(panel: SandboxPanel) -> None:
    before = set(threading.enumerate())
    panel.inject("balance", "delay", seconds=STALL)
    with pytest.raises(requests.Timeout):
        post(panel, timeout=SHORT_TIMEOUT, action="balance")
    stalled = set(threading.enumerate()) - before
    assert stalled, "no thread served the delayed request"

    panel.stop()

    deadline = time.monotonic() + DEFAULT_TIMEOUT  # a third of the stall
    while any(t.is_alive() for t in stalled) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in stalled)


def test_a_short_delay_still_answers_normally(panel: SandboxPanel) -> None:
    panel.inject("balance", "delay", seconds=0.1)
    started = time.monotonic()
    assert call(panel, action="balance") == {"balance": "1000.00000", "currency": "USD"}
    assert time.monotonic() - started >= 0.1


def test_html_502_answers_a_cloudflare_page(panel: SandboxPanel) -> None:
    panel.inject("balance", "html_502")
    answer = post(panel, action="balance")
    assert answer.status_code == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "cloudflare" in answer.text


def test_html_200_answers_an_html_page_with_status_200(panel: SandboxPanel) -> None:
    panel.inject("services", "html_200")
    answer = post(panel, action="services")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.text.lstrip().startswith("<!DOCTYPE html>")


def test_truncated_json_is_the_real_answer_cut_in_half(panel: SandboxPanel) -> None:
    whole = post(panel, action="balance").text
    panel.inject("balance", "truncated_json")
    answer = post(panel, action="balance")
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.text == whole[: len(whole) // 2]
    with pytest.raises(ValueError):
        answer.json()


def test_reset_drops_the_connection_without_an_answer(panel: SandboxPanel) -> None:
    panel.inject("status", "reset")
    with pytest.raises(requests.ConnectionError):
        post(panel, action="status", order="1")


def test_http_500_answers_an_internal_error(panel: SandboxPanel) -> None:
    panel.inject("*", "http_500")
    answer = post(panel, action="balance")
    assert (answer.status_code, answer.json()) == (500, {"error": "Internal error"})


def test_an_error_fault_answers_its_text_with_status_200(panel: SandboxPanel) -> None:
    panel.inject("add", "error", text="Service temporarily disabled")
    assert call(panel, action="add", service="1", link=LINK, quantity="100") == {
        "error": "Service temporarily disabled"}
    assert panel.orders == {}


@pytest.mark.parametrize("fault", ["html_502", "html_200", "truncated_json", "reset", "http_500"])
def test_faults_before_commit_change_nothing(panel: SandboxPanel, fault: str) -> None:
    panel.inject("add", fault)
    try:
        post(panel, action="add", service="1", link=LINK, quantity="100")
    except requests.ConnectionError:
        pass
    assert panel.orders == {} and panel.balance == Decimal("1000")
    assert place(panel, quantity="100") == FIRST


@pytest.mark.parametrize("fault", ["html_502", "html_200", "truncated_json", "reset", "http_500"])
def test_faults_after_commit_place_the_order_but_lose_the_answer(
        panel: SandboxPanel, fault: str) -> None:
    panel.inject("add", fault, after_commit=True)
    try:
        answer = post(panel, action="add", service="1", link=LINK, quantity="100")
        assert answer.text != '{"order": 23501}'
    except requests.ConnectionError:
        pass
    assert list(panel.orders) == [FIRST] and panel.balance == Decimal("999.91000")


def test_a_fault_hits_the_next_requests_of_its_action_only(panel: SandboxPanel) -> None:
    panel.inject("balance", "http_500", times=2)
    assert post(panel, action="services").status_code == 200
    assert [post(panel, action="balance").status_code for _ in range(3)] == [500, 500, 200]
    panel.inject("*", "html_502")
    assert post(panel, action="status", order="1").status_code == 502
    assert post(panel, action="status", order="1").status_code == 200


def test_clear_faults_forgets_pending_faults(panel: SandboxPanel) -> None:
    panel.inject("*", "reset", times=5)
    panel.clear_faults()
    assert post(panel, action="balance").status_code == 200


def test_unknown_faults_are_refused() -> None:
    panel = SandboxPanel(services=16, clock=None)
    with pytest.raises(ValueError):
        panel.inject("add", "timeout")
    with pytest.raises(ValueError):
        panel.inject("add", "error")


# -- what tests can look at -----------------------------------------------------------


def test_add_calls_count_every_add_received_in_total_and_by_link(panel: SandboxPanel) -> None:
    panel.inject("add", "reset")
    for _ in range(2):
        try:
            post(panel, action="add", service="1", link=LINK, quantity="100")
        except requests.ConnectionError:
            pass
    call(panel, action="add", service="1", link=LINK + "/2", quantity="1")
    call(panel, action="add", service="15", username="alice", min="50", max="60", delay="0")
    call(panel, action="balance")
    assert panel.add_calls == 4
    assert panel.add_calls_by_link == {LINK: 2, LINK + "/2": 1}


def test_calls_record_each_action_and_its_params_without_the_key(panel: SandboxPanel) -> None:
    call(panel, action="status", orders="1,2,3")
    call(panel, action="balance")
    assert panel.calls == [("status", {"action": "status", "orders": "1,2,3"}),
                           ("balance", {"action": "balance"})]


def test_advance_needs_the_manual_clock() -> None:
    with pytest.raises(RuntimeError):
        SandboxPanel(services=16).advance(1)


def test_an_injected_clock_drives_the_timeline() -> None:
    now = [100.0]
    with SandboxPanel(clock=lambda: now[0]) as panel:
        place(panel)
        now[0] += 6
        assert status(panel, FIRST)["status"] == "In progress"


def test_concurrent_orders_are_all_placed_and_charged_exactly(panel: SandboxPanel) -> None:
    answers: list[object] = []

    def order(number: int) -> None:
        answers.append(call(panel, action="add", service="1", link=f"{LINK}/{number}",
                            quantity="100"))

    threads = [threading.Thread(target=order, args=(number,)) for number in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["order"] for a in answers) == list(range(FIRST, FIRST + 20))  # type: ignore
    assert panel.balance == Decimal("1000") - 20 * Decimal("0.09")


def test_stop_closes_the_port_and_the_url_keeps_its_shape() -> None:
    panel = SandboxPanel(services=16, clock=None)
    url = panel.start(host="127.0.0.1", port=0)
    assert url == panel.url and url.startswith("http://127.0.0.1:") and url.endswith("/api/v2")
    panel.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data={"key": DEFAULT_KEY, "action": "balance"}, timeout=DEFAULT_TIMEOUT)
    assert panel.balance == Decimal("1000")

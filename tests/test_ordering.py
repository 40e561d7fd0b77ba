"""Order creation never doubles and never loses an order (issue 3).

Each test drives the real desk: the sandbox panel over loopback HTTP, moto for
DynamoDB with serialised writes, and a clock the test moves.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib import errors
from local.aws import free_port
from tests.conftest import SHORT_TIMEOUT, STALL
from tests.loopback import scripted_server, tls_breaking_server, trickling_server, trusted_tls
from tests.ordering_kit import DynamoFault, Rig, default_order, make_rig

DAY = 86400.0


@pytest.fixture
def rig(resources: Any, panel: Any) -> Rig:
    return make_rig(resources, panel.url)


def outcome(call: Any) -> Any:
    try:
        return call()
    except errors.GatewayError as err:
        return err


# -- replay and fingerprint -------------------------------------------------------------


def test_places_one_order_and_replays_it_for_the_same_key(rig: Rig, panel: Any) -> None:
    first = rig.place(default_order())
    again = rig.place(default_order())

    assert first.status == 201 and first.body["id"] in panel.orders
    assert again.status == 201 and again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert panel.add_calls == 1


def test_refuses_a_key_reused_with_another_body_and_sends_nothing(rig: Rig, panel: Any) -> None:
    rig.place(default_order(quantity=100))

    refused = outcome(lambda: rig.place(default_order(quantity=200)))

    assert isinstance(refused, errors.Refused) and refused.code == "idempotency_key_reused"
    assert refused.status == 422
    assert panel.add_calls == 1


def test_fingerprint_ignores_key_order_of_the_body(rig: Rig, panel: Any) -> None:
    rig.place({"service": 1, "link": "https://x.com/a", "quantity": 100})

    again = rig.place({"quantity": 100, "link": "https://x.com/a", "service": 1})

    assert again.headers["Idempotent-Replayed"] == "true"
    assert panel.add_calls == 1


def test_form_and_json_bodies_of_one_order_are_the_same_request(rig: Rig, panel: Any) -> None:
    rig.place({"service": 1, "link": "https://x.com/a", "quantity": 100})

    again = rig.place({"service": "1", "link": "https://x.com/a", "quantity": "100"}, form=True)

    assert again.headers["Idempotent-Replayed"] == "true"
    assert panel.add_calls == 1


def test_quoted_key_is_the_same_key(rig: Rig, panel: Any) -> None:
    rig.place(default_order(), key="abc")

    again = rig.place(default_order(), key='"abc"')

    assert again.headers["Idempotent-Replayed"] == "true"
    assert panel.add_calls == 1


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key_is_refused_before_any_write(rig: Rig, panel: Any, key: str | None) -> None:
    refused = outcome(lambda: rig.place(default_order(), key=key))

    assert refused.code == "idempotency_key_required" and refused.status == 400
    assert rig.items() == [] and panel.add_calls == 0


@pytest.mark.parametrize("key", ["k" * 256, "clé", "tab\tinside", "line\nbreak"])
def test_invalid_key_is_refused_before_any_write(rig: Rig, panel: Any, key: str) -> None:
    refused = outcome(lambda: rig.place(default_order(), key=key))

    assert refused.code == "validation_error" and refused.status == 400
    assert rig.items() == [] and panel.add_calls == 0


def test_a_key_of_255_printable_characters_is_accepted(rig: Rig) -> None:
    assert rig.place(default_order(), key="~" * 255).status == 201


def test_orders_without_key_are_placed_when_the_setting_relaxes_it(resources: Any, panel: Any) -> None:
    rig = make_rig(resources, panel.url, key_required=False)

    rig.place(default_order("https://x.com/1"), key=None)
    rig.place(default_order("https://x.com/2"), key=None)

    assert panel.add_calls == 2


def test_keys_are_scoped_to_the_caller(rig: Rig, panel: Any) -> None:
    alice = rig.place(default_order("https://x.com/alice"), caller="alice")
    bob = rig.place(default_order("https://x.com/bob"), caller="bob")

    assert alice.body["id"] != bob.body["id"]
    assert panel.add_calls == 2


# -- replay needs only the stored answer -----------------------------------------------


def another_container(resources: Any, panel_url: str, **policy: Any) -> Rig:
    """A fresh desk (cold catalogue, its own settings) on the same table."""
    return make_rig(resources, panel_url, **policy)


def test_replays_a_completed_key_while_the_panel_is_down_in_a_cold_container(rig: Rig, resources: Any,
                                                                            panel: Any) -> None:
    placed = rig.place(default_order())
    cold = another_container(resources, f"http://127.0.0.1:{free_port()}/api/v2")  # nothing listens

    replayed = cold.place(default_order())

    assert replayed.status == 201 and replayed.body == placed.body
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert panel.add_calls == 1


def test_an_unknown_key_stays_unknown_while_the_panel_is_down(rig: Rig, resources: Any, panel: Any) -> None:
    panel.inject("add", "html_200", after_commit=True)
    outcome(lambda: rig.place(default_order()))
    cold = another_container(resources, f"http://127.0.0.1:{free_port()}/api/v2")

    retry = outcome(lambda: cold.place(default_order()))

    assert (retry.code, retry.status) == ("outcome_unknown", 409)


def test_replays_a_completed_key_after_the_caps_were_lowered(rig: Rig, resources: Any, panel: Any) -> None:
    placed = rig.place(default_order())
    charge = Decimal(placed.body["estimated_charge"])
    lowered = another_container(resources, panel.url, max_order_charge=charge / 2,
                                daily_spend_limit=charge / 2)

    replayed = lowered.place(default_order())
    fresh = outcome(lambda: lowered.place(default_order("https://x.com/new"), key="key-2"))

    assert replayed.body == placed.body and replayed.headers["Idempotent-Replayed"] == "true"
    assert fresh.code == "spending_limit_exceeded"  # a new order still meets today's caps
    assert panel.add_calls == 1


def test_replays_a_completed_key_after_its_service_left_the_catalogue(rig: Rig, resources: Any,
                                                                      panel: Any) -> None:
    # given an order for a service that a smaller catalogue does not hold
    from sandbox import SandboxPanel
    from sandbox.catalogue import FIXED_COUNT

    body = {"service": FIXED_COUNT + 1, "link": "https://x.com/gone", "quantity": 100}
    placed = rig.place(body)
    with SandboxPanel(clock=None, services=FIXED_COUNT) as smaller:
        later = another_container(resources, smaller.url)

        # when its key is retried against that catalogue, and a new key is tried
        replayed = later.place(body)
        refused = outcome(lambda: later.place({**body, "link": "https://x.com/other"}, key="key-new"))

    assert replayed.body == placed.body and replayed.headers["Idempotent-Replayed"] == "true"
    assert refused.code == "unknown_service"
    assert panel.add_calls == 1


def test_a_reused_key_with_another_body_gets_the_original_refusal_when_the_catalogue_refuses(
        rig: Rig, resources: Any, panel: Any) -> None:
    rig.place(default_order())
    cold = another_container(resources, f"http://127.0.0.1:{free_port()}/api/v2")

    refused = outcome(lambda: cold.place(default_order(quantity=200)))

    assert refused.code == "upstream_unavailable"
    assert panel.add_calls == 1


class DynamoRequests:
    """Counts the DynamoDB requests a client sends (botocore's own event hook)."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-send.dynamodb", self._sent)

    def _sent(self, **_: Any) -> None:
        self.count += 1

    def during(self, call: Any) -> int:
        before = self.count
        call()
        return self.count - before


def test_a_new_order_costs_two_dynamodb_requests_and_a_replay_one(resources: Any, panel: Any) -> None:
    rig = make_rig(resources, panel.url, daily_spend_limit=Decimal("1000"))
    sent = DynamoRequests(rig.dynamodb)

    new = sent.during(lambda: rig.place(default_order()))
    replay = sent.during(lambda: rig.place(default_order()))

    assert (new, replay) == (2, 1)


# -- the account currency ---------------------------------------------------------------


def balance_calls(panel: Any) -> int:
    return sum(1 for action, _ in panel.calls if action == "balance")


def test_a_new_order_answers_the_accounts_currency_learned_once_per_container(rig: Rig, panel: Any) -> None:
    first = rig.place(default_order())
    second = rig.place(default_order("https://x.com/2"), key="key-2")

    assert first.body["currency"] == second.body["currency"] == "USD"
    assert balance_calls(panel) == 1
    # asked before the order is sent: nothing waits on the panel between `add` and its record
    assert [action for action, _ in panel.calls if action in {"balance", "add"}][:2] == ["balance", "add"]


def test_a_replay_repeats_the_stored_currency_without_asking_the_panel(rig: Rig, resources: Any,
                                                                       panel: Any) -> None:
    placed = rig.place(default_order())
    cold = another_container(resources, f"http://127.0.0.1:{free_port()}/api/v2")

    replayed = cold.place(default_order())

    assert replayed.body["currency"] == placed.body["currency"] == "USD"
    assert balance_calls(panel) == 1


def test_an_order_is_placed_without_currency_when_balance_fails_and_balance_is_asked_again_later(
        rig: Rig, panel: Any) -> None:
    panel.inject("balance", "http_500", times=20)

    first = rig.place(default_order())
    asked = balance_calls(panel)
    second = rig.place(default_order("https://x.com/2"), key="key-2")
    asked_again = balance_calls(panel)
    panel.clear_faults()
    rig.clock.advance(120)
    third = rig.place(default_order("https://x.com/3"), key="key-3")

    assert (first.status, first.body["currency"]) == (201, None)
    assert asked >= 1 and asked_again == asked  # a failed lookup is not repeated on every order
    assert second.status == 201 and second.body["currency"] is None
    assert third.body["currency"] == "USD"
    assert panel.add_calls == 3


# -- races --------------------------------------------------------------------------


def test_thirty_two_racing_retries_place_exactly_one_order_each_round(rig: Rig, panel: Any) -> None:
    threads, rounds = 32, 8
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for round_no in range(rounds):
            # given 32 copies of one request, released together
            body = default_order(f"https://www.instagram.com/p/race-{round_no}/")
            start = threading.Barrier(threads)

            def attempt(_: int) -> Any:
                start.wait()
                return outcome(lambda: rig.place(body, key=f"race-{round_no}"))

            # when
            answers = list(pool.map(attempt, range(threads)))

            # then exactly one add, and every answer is that order or "in progress"
            assert panel.add_calls_by_link[body["link"]] == 1
            ids = {a.body["id"] for a in answers if not isinstance(a, errors.GatewayError)}
            assert len(ids) == 1
            for answer in answers:
                if isinstance(answer, errors.GatewayError):
                    assert answer.code == "idempotency_in_progress" and answer.status == 409
                    assert int(answer.headers["Retry-After"]) >= 1
                else:
                    assert answer.status == 201
    assert panel.add_calls == rounds


# -- unknown outcomes ----------------------------------------------------------------


def test_read_timeout_after_the_panel_took_the_order_is_an_unknown_outcome_forever(
        resources: Any, panel: Any) -> None:
    # given the panel places the order, then answers after the gateway gave up
    rig = make_rig(resources, panel.url, timeout=SHORT_TIMEOUT)
    panel.inject("add", "delay", seconds=STALL, after_commit=True)

    first = outcome(lambda: rig.place(default_order()))

    assert first.code == "outcome_unknown" and first.status == 504
    assert len(panel.orders) == 1
    # then no retry ever sends it again, even long after the retention window
    for wait in (0, 61, 30 * DAY):
        rig.clock.advance(wait)
        retry = outcome(lambda: rig.place(default_order()))
        assert retry.code == "outcome_unknown" and retry.status == 409
    assert panel.add_calls == 1
    listed = rig.desk.ledger("alice", state="unknown")["orders"]
    assert [o["idempotency_key"] for o in listed] == ["key-1"] and listed[0]["id"] is None


@pytest.mark.parametrize("fault, status", [("reset", 502), ("html_502", 502), ("truncated_json", 502),
                                           ("http_500", 502), ("html_200", 502)])
def test_an_unreadable_answer_to_add_is_an_unknown_outcome(rig: Rig, panel: Any, fault: str, status: int) -> None:
    panel.inject("add", fault, after_commit=True)

    first = outcome(lambda: rig.place(default_order()))
    retry = outcome(lambda: rig.place(default_order()))

    assert (first.code, first.status) == ("outcome_unknown", status)
    assert (retry.code, retry.status) == ("outcome_unknown", 409)
    assert panel.add_calls == 1


def test_connect_error_releases_the_key_and_a_retry_places_exactly_one_order(rig: Rig, panel: Any) -> None:
    rig.upstream.url = f"http://127.0.0.1:{free_port()}/api/v2"  # nothing listens: nothing sent

    first = outcome(lambda: rig.place(default_order()))
    rig.upstream.url = panel.url
    second = rig.place(default_order())
    third = rig.place(default_order())

    assert first.code == "upstream_unavailable" and first.status == 503
    assert second.status == 201 and third.headers["Idempotent-Replayed"] == "true"
    assert panel.add_calls == 1


@pytest.mark.parametrize("how", ["garbage", "reset"])
def test_a_tls_failure_after_the_add_went_out_is_an_unknown_outcome_never_sent_again(
        resources: Any, panel: Any, tmp_path: Path, how: str) -> None:
    # given a desk whose catalogue is read, and a TLS panel that reads the whole
    # order and then breaks the connection instead of answering
    tls, session = trusted_tls(tmp_path)
    rig = make_rig(resources, panel.url, session=session)
    rig.catalogue.snapshot()
    with tls_breaking_server(tls, how) as (url, received):
        rig.upstream.url = url

        # when the order is placed, then retried
        first = outcome(lambda: rig.place(default_order()))
        retry = outcome(lambda: rig.place(default_order()))

    # then the key is not freed: the order may exist, and it is sent once only
    assert (first.code, first.status) == ("outcome_unknown", 502)
    assert (retry.code, retry.status) == ("outcome_unknown", 409)
    # (the account currency's balance lookup goes before the order; only `add` counts here)
    assert len([request for request in received if b"action=add" in request]) == 1


@pytest.mark.parametrize("framing", ["length", "close", "eof"])
def test_a_trickling_answer_to_add_is_an_unknown_outcome_within_the_timeout(
        resources: Any, panel: Any, framing: str) -> None:
    # given a panel that answers the order one byte every 0.5 s for a minute, with a
    # length, with a length and `Connection: close`, or with no length (read to EOF)
    rig = make_rig(resources, panel.url, timeout=2.0)
    rig.catalogue.snapshot()
    with trickling_server("body", framing=framing) as (url, received):
        rig.upstream.url = url

        started = time.monotonic()
        first = outcome(lambda: rig.place(default_order()))
        took = time.monotonic() - started
        retry = outcome(lambda: rig.place(default_order()))

    # then the gateway gives up at its timeout, keeps the key, and sends once
    assert (first.code, first.status) == ("outcome_unknown", 504) and took < 8.0
    assert (retry.code, retry.status) == ("outcome_unknown", 409)
    assert len([request for request in received if b"action=add" in request]) == 1


def added(received: list[bytes]) -> int:
    """How many of the panel's requests were orders (the currency's balance read goes first)."""
    return len([request for request in received if b"action=add" in request])


@pytest.mark.parametrize("error", [None, "", "  "])
def test_an_order_id_with_an_empty_error_is_a_placed_order_replayed_later(
        resources: Any, panel: Any, error: Any) -> None:
    # given a panel whose `add` answers an order id next to a null or empty error
    rig = make_rig(resources, panel.url, timeout=5.0)
    rig.catalogue.snapshot()
    received: list[bytes] = []
    answer = json.dumps({"order": 9002, "error": error}).encode()
    with scripted_server(200, answer, {"Content-Type": "application/json"}, received=received) as url:
        rig.upstream.url = url
        # when the order is placed, then retried with the same key
        first = rig.place(default_order())
        retry = rig.place(default_order())
    # then that is the panel's order: answered, replayed, and sent once
    assert (first.status, first.body["id"]) == (201, 9002)
    assert (retry.status, retry.body) == (201, first.body)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert added(received) == 1


def test_an_order_id_next_to_an_error_text_is_an_unknown_outcome_never_sent_again(
        resources: Any, panel: Any) -> None:
    # given a panel whose `add` answers an order id AND an error
    rig = make_rig(resources, panel.url, timeout=5.0)
    rig.catalogue.snapshot()
    received: list[bytes] = []
    answer = json.dumps({"order": 9002, "error": "Incorrect request"}).encode()
    with scripted_server(200, answer, {"Content-Type": "application/json"}, received=received) as url:
        rig.upstream.url = url
        first = outcome(lambda: rig.place(default_order()))
        retry = outcome(lambda: rig.place(default_order()))
    # then the order may exist: the key is kept, and nothing is sent again
    assert (first.code, first.status) == ("outcome_unknown", 502)
    assert (retry.code, retry.status) == ("outcome_unknown", 409)
    assert added(received) == 1


def test_a_service_with_a_negative_rate_is_never_ordered(resources: Any) -> None:
    # given a panel whose catalogue lists service 1 at a negative rate
    services = [{"service": 1, "name": "Negative", "type": "Default", "category": "X", "rate": "-100",
                 "min": 10, "max": 1000},
                {"service": 2, "name": "Fine", "type": "Default", "category": "X", "rate": "0.90",
                 "min": 10, "max": 1000}]
    received: list[bytes] = []
    with scripted_server(200, json.dumps(services).encode(), {"Content-Type": "application/json"},
                         received=received) as url:
        rig = make_rig(resources, url, timeout=5.0)
        # when it is ordered
        refused = outcome(lambda: rig.place(default_order()))
    # then there is no such service (no negative estimated charge), and nothing is sent
    assert (type(refused), refused.status, refused.code) == (errors.Refused, 422, "unknown_service")
    assert added(received) == 0


def test_insufficient_funds_then_top_up_with_the_same_key_places_one_order(rig: Rig, panel: Any) -> None:
    panel.set_balance(Decimal("0.01"))
    refused = outcome(lambda: rig.place(default_order()))
    panel.set_balance(Decimal("100"))

    placed = rig.place(default_order())
    replayed = rig.place(default_order())

    assert refused.code == "insufficient_funds" and refused.status == 402
    assert placed.status == 201 and replayed.body == placed.body
    assert len(panel.orders) == 1


@pytest.mark.parametrize("text, code", [("Incorrect link", "invalid_link"),
                                        ("You have active order with this link", "link_has_active_order"),
                                        ("Quantity less than minimal 50", "quantity_out_of_range")])
def test_a_definite_refusal_by_the_panel_releases_the_key(rig: Rig, panel: Any, text: str, code: str) -> None:
    panel.inject("add", "error", text=text)

    refused = outcome(lambda: rig.place(default_order()))
    placed = rig.place(default_order())

    assert refused.code == code and refused.status == 422
    assert placed.status == 201 and len(panel.orders) == 1


def test_crash_after_the_panel_accepted_never_sends_again(rig: Rig, panel: Any) -> None:
    # given the completion write dies (as a crashed function would leave it)
    DynamoFault(rig.dynamodb, "TransactWriteItems", calls={2}, exception=lambda: RuntimeError("crash"))
    placed = rig.place(default_order())

    # when retries come in before and after the lease runs out
    during = outcome(lambda: rig.place(default_order()))
    rig.clock.advance(rig.policy.lease_seconds + 1)
    after = outcome(lambda: rig.place(default_order()))
    later = outcome(lambda: rig.place(default_order()))

    # then
    assert placed.status == 201
    assert (during.code, during.status) == ("idempotency_in_progress", 409)
    assert (after.code, after.status) == ("outcome_unknown", 409)
    assert later.code == "outcome_unknown"
    assert panel.add_calls == 1
    assert rig.desk.ledger("alice", state="unknown")["orders"][0]["idempotency_key"] == "key-1"


def test_throttled_claim_answers_503_and_sends_nothing(rig: Rig, panel: Any) -> None:
    DynamoFault(rig.dynamodb, "TransactWriteItems", calls={1})

    refused = outcome(lambda: rig.place(default_order()))
    placed = rig.place(default_order())

    assert refused.code == "storage_unavailable" and refused.status == 503
    assert placed.status == 201 and panel.add_calls == 1


def test_throttled_completion_still_answers_201_and_a_retry_sends_nothing(rig: Rig, panel: Any,
                                                                         log_lines: Any) -> None:
    DynamoFault(rig.dynamodb, "TransactWriteItems", calls={2})

    placed = rig.place(default_order())
    retry = outcome(lambda: rig.place(default_order()))

    assert placed.status == 201 and placed.body["id"] in panel.orders
    assert retry.code == "idempotency_in_progress"
    assert panel.add_calls == 1
    # nothing is forgotten: the log names the order the table could not record
    lost = [line for line in log_lines if line["message"] == "order placed but not recorded"]
    assert [line["order_id"] for line in lost] == [placed.body["id"]]


# -- retention --------------------------------------------------------------------------


def test_completed_keys_expire_after_the_retention_window(rig: Rig, panel: Any) -> None:
    first = rig.place(default_order())
    rig.clock.advance(7 * DAY - 1)
    replay = rig.place(default_order())
    panel.advance(60)  # the first order finishes, so the link takes a new one
    rig.clock.advance(2)

    fresh = rig.place(default_order())

    assert replay.body == first.body
    assert fresh.status == 201 and fresh.body["id"] != first.body["id"]
    assert panel.add_calls == 2


def test_completed_records_carry_a_ttl_and_unknown_ones_do_not(rig: Rig, panel: Any) -> None:
    rig.place(default_order(), key="done")
    panel.inject("add", "reset", after_commit=True)
    outcome(lambda: rig.place(default_order("https://x.com/other"), key="lost"))

    records = {i["idempotency_key"]["S"] if "idempotency_key" in i else i["pk"]["S"]: i for i in rig.items()
               if i["sk"]["S"] == "IDEM"}
    states = {i["state"]["S"]: i for i in records.values()}
    assert "expires_at" in states["completed"]
    assert "expires_at" not in states["unknown"]

"""A key's own `max_order_charge` and `daily_spend_limit`, on top of the deployment's caps.

The desk on the sandbox and moto (tests/ordering_kit.py). Service 1 costs 0.90 per 1000.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.orders.desk import Policy
from tests.ordering_kit import make_rig
from tests.test_ordering import DynamoRequests

D = Decimal


def order(name: str, quantity: int = 1000) -> dict[str, Any]:
    return {"service": 1, "link": f"https://x.com/{name}", "quantity": quantity}  # 0.90 per 1000


def placed(rig: Any, name: str, quantity: int = 1000, **caps: Any) -> str:
    """The answer's status, or the refusal's code."""
    try:
        return str(rig.place_with(order(name, quantity), key=f"k-{name}", **caps).status)
    except errors.GatewayError as refusal:
        return refusal.code


class CapsRig:
    def __init__(self, resources: Any, panel_url: str, **deployment: Any) -> None:
        self.rig = make_rig(resources, panel_url, **deployment)

    def place_with(self, body: dict[str, Any], key: str, caller: str = "alice", **caps: Any) -> Any:
        return self.rig.desk.place(caller, key, body, **caps)


@pytest.mark.parametrize(("deployment", "key", "allowed"), [
    (None, D("1.00"), D("1.00")),          # only the key's
    (D("1.00"), None, D("1.00")),          # only the deployment's
    (D("5.00"), D("1.00"), D("1.00")),     # the key's is stricter
    (D("1.00"), D("5.00"), D("1.00")),     # the deployment's is stricter
], ids=["key only", "deployment only", "key stricter", "deployment stricter"])
def test_the_stricter_per_order_cap_wins(resources: Any, panel: Any, deployment: Decimal | None,
                                         key: Decimal | None, allowed: Decimal) -> None:
    rig = CapsRig(resources, panel.url, max_order_charge=deployment)

    under = placed(rig, "under", 1000, max_order_charge=key)  # 0.90
    over = placed(rig, "over", 2000, max_order_charge=key)  # 1.80

    assert (under, over) == ("201", "spending_limit_exceeded") and panel.add_calls == 1


@pytest.mark.parametrize(("deployment", "key"), [
    (None, D("2.00")), (D("2.00"), None), (D("10.00"), D("2.00")), (D("2.00"), D("10.00")),
], ids=["key only", "deployment only", "key stricter", "deployment stricter"])
def test_the_stricter_daily_cap_wins(resources: Any, panel: Any, deployment: Decimal | None,
                                     key: Decimal | None) -> None:
    rig = CapsRig(resources, panel.url, daily_spend_limit=deployment)

    answers = [placed(rig, f"o{i}", daily_spend_limit=key) for i in range(3)]  # 0.90 each, 2.00 a day

    assert answers == ["201", "201", "spending_limit_exceeded"] and panel.add_calls == 2


def test_a_key_without_caps_places_as_the_deployment_allows(resources: Any, panel: Any) -> None:
    rig = CapsRig(resources, panel.url)

    assert [placed(rig, f"o{i}", 5000) for i in range(3)] == ["201"] * 3


def test_a_key_cap_costs_no_dynamodb_request_of_its_own(resources: Any, panel: Any) -> None:
    rig = CapsRig(resources, panel.url)
    sent = DynamoRequests(rig.rig.dynamodb)

    new = sent.during(lambda: rig.place_with(order("one"), key="k1", daily_spend_limit=D("10")))
    replay = sent.during(lambda: rig.place_with(order("one"), key="k1", daily_spend_limit=D("10")))

    assert (new, replay) == (2, 1)


def test_a_policy_within_a_keys_caps_takes_the_stricter_of_each() -> None:
    policy = Policy(max_order_charge=D("5"), daily_spend_limit=None)

    assert policy.within(D("3"), D("7")) == Policy(max_order_charge=D("3"), daily_spend_limit=D("7"))
    assert policy.within(None, None) == policy


@pytest.mark.parametrize("deployment", [None, D("100.00")], ids=["no deployment cap", "a looser deployment cap"])
def test_requests_of_one_key_racing_past_its_daily_cap_place_only_what_it_allows(
        resources: Any, panel: Any, deployment: Decimal | None) -> None:
    # given a key that may spend 2.00 a day and eight different orders of 0.90, released together
    rig = CapsRig(resources, panel.url, daily_spend_limit=deployment)
    threads = 8
    start = threading.Barrier(threads)

    def attempt(number: int) -> str:
        start.wait()
        return placed(rig, f"race-{number}", daily_spend_limit=D("2.00"))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(attempt, range(threads)))

    # then two were placed, and every other one was refused by the cap
    assert sorted(answers) == ["201"] * 2 + ["spending_limit_exceeded"] * 6 and panel.add_calls == 2
    # and the day's reservation holds exactly what was placed
    spend = [item for item in rig.rig.items() if item["pk"]["S"] == "SPEND#alice"]
    assert D(spend[0]["total"]["N"]) == D("0.90") * answers.count("201")

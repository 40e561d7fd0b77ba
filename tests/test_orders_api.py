"""POST /orders and the ledger (GET /orders) over HTTP, as no-code tools call them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import OTHER_KEY, STALL, Api, set_panel_timeout

LINK = "https://www.instagram.com/p/api/"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def order(link: str = LINK, quantity: int = 100) -> dict[str, Any]:
    return {"service": 1, "link": link, "quantity": quantity}


def place(client: Api, body: Any, key: str | None = "k-1", **kw: Any) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    headers.update(kw.pop("headers", {}))
    if isinstance(body, (dict, list)):
        return client.post("/orders", json_body=body, headers=headers, **kw)
    return client.post("/orders", body=body, headers=headers, **kw)


def test_creates_an_order_with_201_and_replays_it_with_the_replay_header(client: Api, panel: Any) -> None:
    created = place(client, order())
    replayed = place(client, order())

    assert created.status_code == 201 and created.json_body["id"] in panel.orders
    assert created.json_body["estimated_charge"] == "0.09" and created.json_body["currency"] == "USD"
    assert replayed.status_code == 201 and replayed.json_body == created.json_body
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert created.headers["X-Request-Id"] != replayed.headers["X-Request-Id"]
    assert panel.add_calls == 1


def test_whitespace_and_key_order_in_json_do_not_change_the_fingerprint(client: Api, panel: Any) -> None:
    place(client, '{"service":1,"link":"%s","quantity":100}' % LINK)
    again = place(client, '{ "quantity" : 100 ,\n  "link": "%s",   "service": 1 }' % LINK)

    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert panel.add_calls == 1


def test_a_form_body_is_accepted_like_json(client: Api, panel: Any) -> None:
    created = place(client, f"service=1&link={LINK}&quantity=100", headers=FORM)
    replayed = place(client, order())

    assert created.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"


def test_missing_idempotency_key_is_400_and_nothing_is_sent(client: Api, panel: Any) -> None:
    answer = place(client, order(), key=None)

    assert answer.status_code == 400
    assert answer.json_body["error"]["code"] == "idempotency_key_required"
    assert panel.add_calls == 0


def test_key_reused_with_another_body_is_422(client: Api, panel: Any) -> None:
    place(client, order())
    answer = place(client, order(quantity=500))

    assert answer.status_code == 422 and answer.json_body["error"]["code"] == "idempotency_key_reused"
    assert panel.add_calls == 1


def test_timeout_answers_504_outcome_unknown_and_retries_409(
        client: Api, panel: Any, gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_panel_timeout(gateway, monkeypatch)
    panel.inject("add", "delay", seconds=STALL, after_commit=True)

    first = place(client, order())
    retry = place(client, order())

    assert first.status_code == 504 and first.json_body["error"]["code"] == "outcome_unknown"
    assert retry.status_code == 409 and retry.json_body["error"]["code"] == "outcome_unknown"
    assert panel.add_calls == 1
    listed = client.get("/orders?state=unknown").json_body["orders"]
    assert [entry["idempotency_key"] for entry in listed] == ["k-1"]


def test_a_panel_slowed_by_a_loaded_machine_is_waited_for(client: Api, panel: Any) -> None:
    panel.inject("services", "delay", seconds=1.2)  # slower than the 1 s the suite once had

    assert place(client, order()).status_code == 201


@pytest.mark.parametrize("body, status, code", [
    ("{not json", 400, "validation_error"),
    ("[1, 2]", 400, "validation_error"),
    ("", 400, "validation_error"),
    ('{"service": 1, "link": "%s", "quantity": "many"}' % LINK, 400, "validation_error"),
    ('{"service": 1, "link": "%s", "quantity": 1e400}' % LINK, 400, "validation_error"),
    ('{"service": 1, "link": "%s", "quantity": NaN}' % LINK, 400, "validation_error"),
    ("[" * 100_000 + "]" * 100_000, 400, "validation_error"),
    (json.dumps({"service": 1, "link": LINK, "quantity": 100, "x": "y" * 300_000}), 413, "payload_too_large"),
    (json.dumps({"service": 4, "link": LINK, "comments": ["c"] * 10_001}), 400, "validation_error"),
    (json.dumps(order(quantity=1)), 422, "quantity_out_of_range"),
])
def test_hostile_bodies_get_clear_errors_and_never_reach_the_panel(client: Api, panel: Any, body: str,
                                                                   status: int, code: str) -> None:
    answer = place(client, body)

    assert answer.status_code == status and answer.json_body["error"]["code"] == code
    assert panel.add_calls == 0


def test_ledger_lists_the_callers_orders_newest_first_with_a_cursor(client: Api, panel: Any) -> None:
    ids = [place(client, order(f"https://x.com/{n}"), key=f"k{n}").json_body["id"] for n in range(30)]

    first = client.get("/orders?limit=25").json_body
    second = client.get(f"/orders?limit=25&cursor={first['next_cursor']}").json_body

    listed = [entry["id"] for entry in first["orders"] + second["orders"]]
    assert listed == list(reversed(ids))
    assert second["next_cursor"] is None
    assert first["orders"][0]["state"] == "pending" and first["orders"][0]["idempotency_key"] == "k29"


def test_ledger_is_private_to_each_caller(client: Api, panel: Any) -> None:
    place(client, order())

    other = client.get("/orders", key=OTHER_KEY).json_body

    assert other == {"orders": [], "next_cursor": None}


@pytest.mark.parametrize("query", ["state=lost", "cursor=bm9wZQ", "limit=0", "limit=101", "limit=x",
                                   "ids=1&limit=5", "colour=red"])
def test_bad_ledger_queries_are_400(client: Api, query: str) -> None:
    answer = client.get(f"/orders?{query}")

    assert answer.status_code == 400 and answer.json_body["error"]["code"] == "validation_error"


def test_a_long_cursor_is_400_not_a_storage_error(client: Api) -> None:
    # a cursor within the 2048 characters allowed, carrying a 1500-byte sort key, which DynamoDB refuses
    sk = ("2027-01-15T08:00:00.000Z#" + "o" * 1500)[:1500]
    cursor = base64.urlsafe_b64encode(json.dumps({"sk": sk}).encode()).decode().rstrip("=")

    answer = client.get(f"/orders?cursor={cursor}")

    assert len(cursor) <= 2048
    assert answer.status_code == 400 and answer.json_body["error"]["message"].startswith("cursor")


def test_operator_resolves_an_unknown_outcome_with_the_real_order_id(client: Api, gateway: Any,
                                                                     panel: Any) -> None:
    panel.inject("add", "reset", after_commit=True)
    place(client, order())
    real_id = max(panel.orders)

    gateway.desk().resolve("alice", "k-1", real_id)
    replay = place(client, order())

    assert replay.status_code == 201 and replay.json_body["id"] == real_id
    assert client.get("/orders?state=pending").json_body["orders"][0]["id"] == real_id
    assert panel.add_calls == 1


def test_operator_releases_an_unknown_key_so_it_can_be_retried(client: Api, gateway: Any, panel: Any) -> None:
    panel.inject("add", "reset")  # nothing placed, but the gateway cannot know
    place(client, order())

    gateway.desk().resolve("alice", "k-1", None)
    retried = place(client, order())

    assert retried.status_code == 201 and len(panel.orders) == 1
    assert client.get("/orders?state=unknown").json_body["orders"] == []


def test_the_ledger_follows_each_orders_status_and_filters_on_it(client: Api, panel: Any, resources: Any) -> None:
    # given two orders, one of which the panel then completes
    first = place(client, order("https://x.com/first"), key="first").json_body["id"]
    panel.advance(40)
    second = place(client, order("https://x.com/second"), key="second").json_body["id"]

    # when a polling trigger lists them
    listed = {e["id"]: e for e in client.get("/orders").json_body["orders"]}
    completed = client.get("/orders?state=completed").json_body["orders"]

    # then each shows the panel's status, and the filter follows it
    assert (listed[first]["status"], listed[first]["state"]) == ("Completed", "completed")
    assert (listed[second]["status"], listed[second]["state"]) == ("Pending", "pending")
    assert [e["id"] for e in completed] == [first]
    stored = [i for i in resources.client("dynamodb").scan(TableName="smm-gateway-dev")["Items"]
              if i["pk"]["S"].startswith("LEDGER#") and i.get("order_id", {}).get("N") == str(first)]
    assert stored[0]["state"]["S"] == "completed"  # written back: the last known status


def test_final_orders_are_not_asked_again(client: Api, panel: Any) -> None:
    place(client, order())
    panel.advance(40)
    client.get("/orders")  # learns "Completed"
    asked = len([c for c in panel.calls if c[0] == "status"])

    client.get("/orders")

    assert len([c for c in panel.calls if c[0] == "status"]) == asked


def test_the_ledger_stays_readable_when_the_panel_is_down(client: Api, panel: Any) -> None:
    created = place(client, order()).json_body
    panel.inject("status", "html_502", times=5)

    listed = client.get("/orders")

    assert listed.status_code == 200
    assert listed.json_body["orders"][0]["id"] == created["id"]
    assert listed.json_body["orders"][0]["state"] == "pending"

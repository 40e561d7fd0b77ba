"""Caller keys with scopes, keys limited to their own orders, and keys with their own caps,
through the Chalice test client over the sandbox and moto.

The routes a scope guards are read from openapi.yaml (`x-required-scope`), so a route
added to the spec is covered here without a line of this file changing.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Iterator

import pytest

import app as gateway_app
from chalicelib.callers import SCOPES, Caller, caller_of, record_for
from local.aws import write_secret
from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import CALLER_KEY, OTHER_KEY, Api
from tests.contract import spec

OWN_KEY = "sgw_test_own_orders_only_key_0001"
CAPPED_KEY = "sgw_test_capped_key_000000000001"
LINK = "https://instagram.com/p/scopes"
METHODS = {"get", "post", "put", "patch", "delete"}


def only(scope: str) -> str:
    return f"sgw_test_only_{scope.replace(':', '_')}_key"


def without(scope: str) -> str:
    return f"sgw_test_without_{scope.replace(':', '_')}_key"


def spec_operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation) for path, item in spec()["paths"].items()
            for method, operation in item.items() if method in METHODS]


def scoped_operations() -> list[tuple[str, str, str]]:
    return [(method, path, operation["x-required-scope"]) for method, path, operation in spec_operations()
            if "x-required-scope" in operation]


def template(path: str) -> str:
    """A path with its parameter names left out: /orders/{order_id} and /orders/{id} are one route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


@pytest.fixture
def keys(gateway: Any, panel: SandboxPanel, resources: Any) -> None:
    """alice and bob as before scopes; carol limited to her own orders; dave with caps;
    for each scope a key with only it and a key with every other one."""
    records: list[Any] = [record_for("alice", CALLER_KEY), record_for("bob", OTHER_KEY),
                          record_for("carol", OWN_KEY, own_orders_only=True),
                          record_for("dave", CAPPED_KEY, max_order_charge="1.00", daily_spend_limit="2.00")]
    for scope in SCOPES:
        records.append(record_for(f"only-{scope.replace(':', '-')}", only(scope), scopes=[scope]))
        records.append(record_for(f"without-{scope.replace(':', '-')}", without(scope),
                                  scopes=[s for s in SCOPES if s != scope]))
    write_secret(resources.client("secretsmanager"), panel.url, DEFAULT_KEY, records)


def body(answer: Any) -> Any:
    return json.loads(answer.body)


# -- the table of scopes ----------------------------------------------------------------------


def test_every_route_in_the_spec_has_exactly_one_scope_or_is_public() -> None:
    served = {(method, template(path)): scope for (method, path), scope in gateway_app.ROUTE_SCOPES.items()}
    documented = {}
    for method, path, operation in spec_operations():
        public = operation.get("security") == []
        scope = operation.get("x-required-scope")
        assert public != (scope is not None), f"{method} {path}: a scope, or security: [], not both or neither"
        assert scope is None or scope in SCOPES, f"{method} {path}: unknown scope {scope}"
        assert scope is None or f"`{scope}`" in operation["description"], f"{method} {path}: say the scope"
        documented[(method, template(path))] = scope

    assert served == documented


def test_a_route_without_a_scope_is_refused_when_it_is_declared() -> None:
    with pytest.raises(TypeError, match="scope"):
        gateway_app.route("/nowhere")
    with pytest.raises(TypeError, match="scope"):
        gateway_app.route("/nowhere", scope="orders:everything")
    with pytest.raises(TypeError, match="scope"):
        gateway_app.route("/nowhere", scope="orders:read", public=True)
    assert not [route for route in gateway_app.ROUTE_SCOPES if route[1] == "/nowhere"]


def test_keys_made_before_scopes_and_the_local_key_have_every_scope_and_no_restriction() -> None:
    legacy = {"name": "zapier", "salt": "00", "hash": "00"}  # what `ops callers create` wrote until now

    assert caller_of(legacy) == Caller("zapier", frozenset(SCOPES), False, None, None)  # type: ignore[arg-type]
    assert set(record_for("local", "sgw_local_dev_key_change_me")) == {"name", "salt", "hash"}


# -- 403 for a key without the route's scope --------------------------------------------------


@pytest.mark.parametrize(("method", "path", "scope"), scoped_operations(),
                         ids=[f"{m} {p}" for m, p, _ in scoped_operations()])
def test_a_key_without_the_routes_scope_is_403_and_one_with_it_is_let_through(
        client: Api, keys: None, panel: SandboxPanel, method: str, path: str, scope: str) -> None:
    url = re.sub(r"\{[^}]*\}", "1", path) + ("?ids=1" if path == "/refills" and method == "GET" else "")
    sent = {"json_body": {"orders": [1]}} if path in {"/refills", "/orders/cancel"} and method == "POST" else {}

    refused = client.request(method, url, key=without(scope), **sent)
    calls = len(panel.calls)
    allowed = client.request(method, url, key=only(scope), **sent)

    assert refused.status_code == 403, refused.body
    assert body(refused)["error"]["code"] == "forbidden"
    assert body(refused)["error"]["details"] == {"required_scope": scope}
    assert calls == 0  # nothing was asked of the panel for the refused key
    assert allowed.status_code not in {401, 403}, allowed.body


def test_the_scope_is_checked_before_the_request_is_read(client: Api, keys: None, panel: SandboxPanel) -> None:
    # a key without the scope learns nothing, not even what a valid request would look like
    answer = client.post("/orders", body=b"{not json", key=without("orders:write"))

    assert answer.status_code == 403 and body(answer)["error"]["details"]["required_scope"] == "orders:write"
    assert client.get("/balance?nonsense=1", key=without("balance:read")).status_code == 403


def test_a_read_only_key_cannot_spend_or_cancel(client: Api, keys: None, panel: SandboxPanel) -> None:
    order = body(client.post("/orders", json_body={"service": 1, "link": LINK, "quantity": 100},
                             headers={"Idempotency-Key": "k-read-only"}))["id"]
    reader = only("orders:read")

    placing = client.post("/orders", json_body={"service": 1, "link": LINK + "/2", "quantity": 100},
                          headers={"Idempotency-Key": "k-reader"}, key=reader)
    cancel = client.post(f"/orders/{order}/cancel", key=reader)
    status = client.get(f"/orders/{order}", key=reader)

    assert (placing.status_code, cancel.status_code, status.status_code) == (403, 403, 200)
    assert panel.add_calls == 1 and not [c for c in panel.calls if c[0] == "cancel"]


# -- own orders only ----------------------------------------------------------------------------


def place(client: Api, key: str, name: str) -> int:
    answer = client.post("/orders", json_body={"service": 1, "link": f"{LINK}/{name}", "quantity": 100},
                         headers={"Idempotency-Key": f"k-{name}"}, key=key)
    assert answer.status_code == 201, answer.body
    return int(body(answer)["id"])


def refill(client: Api, key: str, order_id: int) -> int:
    answer = client.post(f"/orders/{order_id}/refill", key=key)
    assert answer.status_code == 201, answer.body
    return int(body(answer)["id"])


class World:
    """alice's order and refill, carol's (limited to her own), and ids no one has."""

    def __init__(self, client: Api, panel: SandboxPanel) -> None:
        self.alices, self.carols = place(client, CALLER_KEY, "alice"), place(client, OWN_KEY, "carol")
        self.alices_open = place(client, CALLER_KEY, "alice-open")
        panel.advance(31)  # the first two complete: refills need a finished order
        self.alices_open_too = place(client, CALLER_KEY, "alice-open-2")
        self.carols_open = place(client, OWN_KEY, "carol-open")
        self.alices_refill = refill(client, CALLER_KEY, self.alices)
        self.carols_refill = refill(client, OWN_KEY, self.carols)
        self.missing = 424242


@pytest.fixture
def world(client: Api, keys: None, panel: SandboxPanel) -> World:
    return World(client, panel)


def same_answer(first: Any, second: Any, first_id: int, second_id: int) -> None:
    """Two answers alike but for the id they name and the request id."""
    def bare(answer: Any, own_id: int) -> Any:
        text = json.dumps(body(answer)).replace(str(own_id), "ID")
        return answer.status_code, re.sub(r'"request_id": "[^"]*"', "", text)

    assert bare(first, first_id) == bare(second, second_id)


SINGLE = [  # (method, path, what its 404 is about)
    ("GET", "/orders/{}", "order_not_found"),
    ("POST", "/orders/{}/refill", "order_not_found"),
    ("POST", "/orders/{}/cancel", "order_not_found"),
    ("GET", "/refills/{}", "refill_not_found"),
]


@pytest.mark.parametrize(("method", "path", "code"), SINGLE, ids=[f"{m} {p}" for m, p, _ in SINGLE])
def test_another_callers_id_and_one_that_does_not_exist_get_the_same_404_and_no_panel_call(
        client: Api, world: World, panel: SandboxPanel, method: str, path: str, code: str) -> None:
    foreign = world.alices_refill if "refills" in path else world.alices_open
    before = len(panel.calls)

    theirs = client.request(method, path.format(foreign), key=OWN_KEY)
    nobodys = client.request(method, path.format(world.missing), key=OWN_KEY)

    assert theirs.status_code == 404 and body(theirs)["error"]["code"] == code
    same_answer(theirs, nobodys, foreign, world.missing)
    assert len(panel.calls) == before


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/orders/{}", 200), ("POST", "/orders/{}/cancel", 200),
                                                        ("GET", "/refills/{}", 200)])
def test_a_key_limited_to_its_own_orders_acts_on_its_own(client: Api, world: World, method: str, path: str,
                                                        status: int) -> None:
    own = world.carols_refill if "refills" in path else world.carols_open
    assert client.request(method, path.format(own), key=OWN_KEY).status_code == status


def test_a_key_limited_to_its_own_orders_refills_its_own(client: Api, world: World, panel: SandboxPanel) -> None:
    panel.advance(31)
    assert client.post(f"/orders/{world.carols_open}/refill", key=OWN_KEY).status_code == 201


def test_a_key_limited_to_its_own_orders_cannot_cancel_another_callers_order(client: Api, world: World,
                                                                            panel: SandboxPanel) -> None:
    refused = client.post(f"/orders/{world.alices_open_too}/cancel", key=OWN_KEY)
    panel.advance(5)

    assert refused.status_code == 404
    assert body(client.get(f"/orders/{world.alices_open_too}"))["state"] != "canceled"


def test_batches_answer_other_callers_ids_as_ids_that_do_not_exist(client: Api, world: World,
                                                                   panel: SandboxPanel) -> None:
    # given, in each batch, another caller's id, one that does not exist, and carol's own
    theirs, nobodys, own = world.alices_open_too, world.missing, world.carols_open
    before = len(panel.calls)

    statuses = body(client.get(f"/orders?ids={theirs},{nobodys},{own}", key=OWN_KEY))["orders"]
    refills = body(client.get(f"/refills?ids={world.alices_refill},{nobodys},{world.carols_refill}",
                              key=OWN_KEY))["refills"]
    cancels = body(client.post("/orders/cancel", json_body={"orders": [theirs, nobodys, own]}, key=OWN_KEY))["orders"]
    asked = panel.calls[before:]
    panel.advance(31)
    made = body(client.post("/refills", json_body={"orders": [world.alices, nobodys, world.carols_open]},
                            key=OWN_KEY))["refills"]

    not_found = {"code": "order_not_found", "message": "No such order.", "upstream": None}
    assert statuses[:2] == [{"id": theirs, "error": not_found}, {"id": nobodys, "error": not_found}]
    assert statuses[2]["id"] == own and "error" not in statuses[2]
    no_refill = {"code": "refill_not_found", "message": "No such refill.", "upstream": None}
    assert refills[:2] == [{"id": world.alices_refill, "error": no_refill}, {"id": nobodys, "error": no_refill}]
    assert refills[2]["id"] == world.carols_refill and "error" not in refills[2]
    assert cancels == [{"id": theirs, "error": not_found}, {"id": nobodys, "error": not_found},
                       {"id": own, "cancel_requested": True}]
    assert made[:2] == [{"order": world.alices, "error": not_found}, {"order": nobodys, "error": not_found}]
    assert made[2]["order"] == own and made[2]["error"]["code"] == "refill_refused"  # canceled above, but asked
    # then the panel was asked only about carol's ids
    assert [(action, params.get("orders") or params.get("refills")) for action, params in asked] == [
        ("status", str(own)), ("refill_status", str(world.carols_refill)), ("cancel", str(own))]
    assert [c[1].get("orders") for c in panel.calls if c[0] == "refill"][-1] == str(own)


def test_a_batch_of_only_other_callers_ids_asks_the_panel_nothing(client: Api, world: World,
                                                                   panel: SandboxPanel) -> None:
    before = len(panel.calls)

    answer = client.post("/orders/cancel", json_body={"orders": [world.alices_open_too]}, key=OWN_KEY)

    assert body(answer)["orders"][0]["error"]["code"] == "order_not_found" and len(panel.calls) == before


class DynamoCalls:
    """The DynamoDB operations the gateway's client sends while counting."""

    def __init__(self, client: Any) -> None:
        self.seen: list[str] = []
        self._client = client

    def __call__(self, model: Any, **_: Any) -> None:
        self.seen.append(model.name)

    def __enter__(self) -> DynamoCalls:
        self._client.meta.events.register("before-call.dynamodb", self)
        return self

    def __exit__(self, *_: Any) -> None:
        self._client.meta.events.unregister("before-call.dynamodb", self)


@pytest.mark.parametrize("key", [OWN_KEY, CALLER_KEY], ids=["own orders only", "unrestricted"])
def test_ownership_costs_one_dynamodb_read_per_request_and_nothing_for_other_keys(
        client: Api, world: World, gateway: Any, key: str) -> None:
    ids = ",".join(str(i) for i in [world.carols_open, world.alices_open, *range(500000, 500098)])
    with DynamoCalls(gateway.boto_client("dynamodb")) as single:
        client.get(f"/orders/{world.carols_open}", key=key)
    with DynamoCalls(gateway.boto_client("dynamodb")) as batch:
        client.get(f"/orders?ids={ids}", key=key)
    with DynamoCalls(gateway.boto_client("dynamodb")) as cancel:
        client.post("/orders/cancel", json_body={"orders": [world.carols_open, world.alices_open]}, key=key)
    with DynamoCalls(gateway.boto_client("dynamodb")) as refills:
        client.get(f"/refills?ids={world.carols_refill},{world.alices_refill}", key=key)

    expected = ["BatchGetItem"] if key == OWN_KEY else []
    assert (single.seen, batch.seen, cancel.seen, refills.seen) == (expected,) * 4


def test_unrestricted_keys_still_see_every_order(client: Api, world: World) -> None:
    assert client.get(f"/orders/{world.carols_open}", key=OTHER_KEY).status_code == 200
    assert client.get(f"/refills/{world.carols_refill}", key=OTHER_KEY).status_code == 200


# -- a key's own caps, through the gateway ------------------------------------------------------


def test_a_keys_own_caps_apply_to_its_orders(client: Api, keys: None, panel: SandboxPanel) -> None:
    def order(quantity: int, name: str, key: str = CAPPED_KEY) -> Any:
        return client.post("/orders", json_body={"service": 1, "link": f"{LINK}/{name}", "quantity": quantity},
                           headers={"Idempotency-Key": f"k-{name}"}, key=key)

    over_order_cap = order(2000, "big")  # 1.80 > 1.00
    first, second, third = order(1000, "a"), order(1000, "b"), order(1000, "c")  # 0.90 each, 2.00 a day
    others = order(2000, "unrestricted", key=CALLER_KEY)

    assert body(over_order_cap)["error"]["code"] == "spending_limit_exceeded"
    assert (first.status_code, second.status_code) == (201, 201)
    assert third.status_code == 422 and body(third)["error"]["code"] == "spending_limit_exceeded"
    assert others.status_code == 201 and panel.add_calls == 3

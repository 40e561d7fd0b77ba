"""Every route of gateway-contract.md through the Chalice test client, over the sandbox.

Orders are placed straight on the sandbox (POST /orders is tested elsewhere), and the
sandbox's manual clock moves them along. Each error answer is checked for the one
error shape and its `X-Request-Id`. Setting up a gateway costs most of a test's time,
so cases of one rule share one test and name themselves in the assertion message.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Iterator

import pytest
import requests

from chalicelib.callers import record_for
from local.aws import EmbeddedAws, write_secret
from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import CALLER_KEY, DEFAULT_TIMEOUT, OTHER_KEY, STALL, set_panel_timeout

LINK = "https://instagram.com/p/routes"
STATUS_FIELDS = {"id", "status", "state", "charge", "start_count", "remains", "currency"}


# -- helpers ---------------------------------------------------------------------------


def place(panel: SandboxPanel, service: int = 1, link: str = LINK, quantity: int = 100,
          **extra: str) -> int:
    """An order placed directly on the sandbox."""
    answer = requests.post(panel.url, data={"key": DEFAULT_KEY, "action": "add", "service": str(service),
                                            "link": link, "quantity": str(quantity), **extra},
                           timeout=DEFAULT_TIMEOUT)
    return int(answer.json()["order"])


def completed(panel: SandboxPanel, link: str = LINK) -> int:
    order_id = place(panel, link=link)
    panel.advance(31)
    return order_id


def body(answer: Any) -> Any:
    return json.loads(answer.body)


def ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.body
    assert answer.headers["X-Request-Id"]
    return body(answer)


def error(answer: Any, status: int, code: str, upstream: str | None = None, case: str = "") -> dict[str, Any]:
    """The one error shape, with the request id of the header."""
    assert answer.status_code == status, (case, answer.body)
    found = body(answer)
    assert set(found) == {"error", "request_id"}, case
    assert set(found["error"]) == {"code", "message", "upstream"}, case
    assert found["error"]["code"] == code, (case, found)
    assert isinstance(found["error"]["message"], str) and found["error"]["message"], case
    assert found["error"]["upstream"] == upstream, (case, found)
    assert found["request_id"] == answer.headers["X-Request-Id"], case
    return found["error"]


def calls(panel: SandboxPanel, action: str) -> list[dict[str, str]]:
    return [params for name, params in panel.calls if name == action]


def csv(ids: Any) -> str:
    return ",".join(str(i) for i in ids)


# -- health, balance, services -------------------------------------------------------------


def test_health_needs_no_key_and_balance_is_the_panels_decimal_string(client: Any, panel: SandboxPanel) -> None:
    assert ok(client.get("/health", key=None)) == {"status": "ok"}
    assert ok(client.get("/balance")) == {"balance": "1000.00000", "currency": "USD"}
    assert calls(panel, "balance") == [{"action": "balance"}]


def test_services_list_the_whole_catalogue_in_the_contracts_shape(client: Any) -> None:
    services = ok(client.get("/services"))["services"]
    assert len(services) == 300
    assert services[0] == {"id": 1, "name": "Instagram followers", "type": "Default", "category": "Instagram",
                           "rate": "0.90", "min": 50, "max": 10000, "refill": True, "cancel": True,
                           "dripfeed": True}
    for service in services:
        assert type(service["id"]) is int and type(service["min"]) is int and type(service["max"]) is int
        assert isinstance(service["rate"], str)
        assert all(type(service[f]) is bool for f in ("refill", "cancel", "dripfeed"))


def test_services_are_filtered_by_type_category_text_refill_and_cancel(client: Any) -> None:
    combined = ok(client.get("/services?type=default&category=instagram&q=Followers&refill=true&cancel=true"))
    assert [s["id"] for s in combined["services"]] == [1]

    by_type = ok(client.get("/services?type=mentions%20with%20hashtags"))["services"]
    assert 7 in [s["id"] for s in by_type] and {s["type"] for s in by_type} == {"Mentions with Hashtags"}

    neither = ok(client.get("/services?refill=false&cancel=false"))["services"]
    assert neither and all(not s["refill"] and not s["cancel"] for s in neither)


def test_services_refuse_a_bad_flag_or_an_unknown_parameter(client: Any, panel: SandboxPanel) -> None:
    for query in ("refill=maybe", "cancel=1", "refill=", "typo=Default", "types=Default"):
        error(client.get(f"/services?{query}"), 400, "validation_error", case=query)


def test_one_service_by_id_and_the_catalogue_is_fetched_once(client: Any, panel: SandboxPanel) -> None:
    assert ok(client.get("/services/2"))["name"] == "Instagram likes"
    error(client.get("/services/999999"), 404, "service_not_found")
    for service_id in ("abc", "0", "-1", "1.5", "99999999999999999999"):
        error(client.get(f"/services/{service_id}"), 400, "validation_error", case=service_id)
    ok(client.get("/services?type=Poll"))
    ok(client.get("/services"))
    assert len(calls(panel, "services")) == 1


# -- one order ---------------------------------------------------------------------------------


def test_an_orders_status_is_normalised(client: Any, panel: SandboxPanel) -> None:
    order_id = place(panel)
    unknown_remains = place(panel, 11, link=LINK + "/11", media="https://instagram.com/p/m")  # "Unknown" while Pending

    pending = ok(client.get(f"/orders/{unknown_remains}"))
    panel.advance(31)
    done = ok(client.get(f"/orders/{order_id}"))

    assert (pending["state"], pending["remains"]) == ("pending", None)
    assert done == {"id": order_id, "status": "Completed", "state": "completed", "charge": "0.09000",
                    "start_count": 1000 + order_id * 7919 % 9000, "remains": 0, "currency": "USD"}


def test_an_unknown_order_is_404_up_to_the_largest_safe_id(client: Any) -> None:
    error(client.get("/orders/424242"), 404, "order_not_found", upstream="Incorrect order ID")
    error(client.get("/orders/9007199254740991"), 404, "order_not_found", upstream="Incorrect order ID")


def test_a_malformed_order_id_is_400_and_never_sent(client: Any, panel: SandboxPanel) -> None:
    for order_id in ("abc", "0", "-1", "1.5", "1e3", "9007199254740992", "99999999999999999999"):
        error(client.get(f"/orders/{order_id}"), 400, "validation_error", case=order_id)
        error(client.post(f"/orders/{order_id}/refill"), 400, "validation_error", case=order_id)
        error(client.post(f"/orders/{order_id}/cancel"), 400, "validation_error", case=order_id)
        error(client.get(f"/refills/{order_id}"), 400, "validation_error", case=order_id)
    assert panel.calls == []


# -- several orders ----------------------------------------------------------------------------


def test_several_orders_are_answered_in_input_order_and_duplicates_asked_once(
        client: Any, panel: SandboxPanel) -> None:
    first, second = place(panel), place(panel, link=LINK + "/2")

    found = ok(client.get(f"/orders?ids={second},999,{first},999,{second}"))["orders"]

    assert [item["id"] for item in found] == [second, 999, first, 999, second]
    assert set(found[0]) == STATUS_FIELDS and found[0]["state"] == "pending"
    assert found[1] == found[3] == {"id": 999, "error": {"code": "order_not_found", "message": "No such order.",
                                                         "upstream": "Incorrect order ID"}}
    assert found[0] == found[4]
    assert calls(panel, "status") == [{"action": "status", "orders": f"{second},999,{first}"}]


def test_250_ids_are_asked_in_three_calls_of_at_most_100(client: Any, panel: SandboxPanel) -> None:
    ids = list(range(1, 251))
    found = ok(client.get(f"/orders?ids={csv(ids)}"))["orders"]
    assert [item["id"] for item in found] == ids
    assert all(item["error"]["code"] == "order_not_found" for item in found)
    sent = [[int(i) for i in params["orders"].split(",")] for params in calls(panel, "status")]
    assert sorted(map(len, sent)) == [50, 100, 100]
    assert sorted(i for part in sent for i in part) == ids


def test_1000_ids_are_accepted_and_more_are_refused_before_anything_is_sent(
        client: Any, panel: SandboxPanel) -> None:
    assert len(ok(client.get(f"/orders?ids={csv(range(1, 1001))}"))["orders"]) == 1000
    assert len(calls(panel, "status")) == 10
    for count in (1001, 5000):
        error(client.get(f"/orders?ids={csv(range(1, count + 1))}"), 400, "validation_error", case=str(count))
        error(client.get(f"/refills?ids={csv(range(1, count + 1))}"), 400, "validation_error", case=str(count))
    assert len(panel.calls) == 10


def test_a_malformed_ids_list_or_an_unknown_parameter_is_400(client: Any, panel: SandboxPanel) -> None:
    for ids in ("", "1,,2", ",1", "1,", "a", "1,b", "-1", "0", "1.5", "99999999999999999999",
                "9007199254740992", "%20"):
        error(client.get(f"/orders?ids={ids}"), 400, "validation_error", case=f"orders {ids!r}")
        error(client.get(f"/refills?ids={ids}"), 400, "validation_error", case=f"refills {ids!r}")
    for query in ("ids=1&limit=5", "ids=1&state=pending", "ids=1&cursor=x", "ids=1&idz=2"):
        error(client.get(f"/orders?{query}"), 400, "validation_error", case=query)
    for query in ("", "?limit=5", "?ids=1&x=2"):
        error(client.get(f"/refills{query}"), 400, "validation_error", case=query)
    assert panel.calls == []


# -- refills -------------------------------------------------------------------------------------


def test_a_refill_is_created_with_201_and_its_status_follows_the_panel(client: Any, panel: SandboxPanel) -> None:
    order_id = completed(panel)
    again = completed(panel, link=LINK + "/again")

    assert ok(client.post(f"/orders/{order_id}/refill"), 201) == {"id": 1, "order": order_id}
    # bodyless POSTs also come from webhook steps that send a form content type
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert ok(client.post(f"/orders/{again}/refill", headers=form), 201) == {"id": 2, "order": again}
    assert calls(panel, "refill") == [{"action": "refill", "order": str(order_id)},
                                      {"action": "refill", "order": str(again)}]

    assert ok(client.get("/refills/1")) == {"id": 1, "status": "Pending", "state": "pending"}
    panel.advance(6)
    assert ok(client.get("/refills/1")) == {"id": 1, "status": "In progress", "state": "in_progress"}


def test_a_refused_or_unknown_refill_is_an_error(client: Any, panel: SandboxPanel) -> None:
    pending = place(panel)  # not finished: not eligible
    error(client.post(f"/orders/{pending}/refill"), 422, "refill_refused", upstream="Order not eligible for refill")
    error(client.post("/orders/424242/refill"), 404, "order_not_found", upstream="Incorrect order ID")
    error(client.get("/refills/77"), 404, "refill_not_found", upstream="Refill not found")


def test_refills_in_bulk_answer_each_order_and_ask_each_once(client: Any, panel: SandboxPanel) -> None:
    done = completed(panel)
    pending = place(panel, link=LINK + "/pending")

    found = ok(client.post("/refills", json_body={"orders": [done, pending, 999, done]}))["refills"]

    assert found[0] == found[3] == {"order": done, "id": 1}
    assert found[1]["order"] == pending and found[1]["error"]["code"] == "refill_refused"
    assert found[2] == {"order": 999, "error": {"code": "order_not_found", "message": "No such order.",
                                                 "upstream": "Incorrect order ID"}}
    assert calls(panel, "refill") == [{"action": "refill", "orders": f"{done},{pending},999"}]


def test_refills_made_through_the_gateway_are_recorded_as_their_callers(client: Any, gateway: Any,
                                                                        panel: SandboxPanel) -> None:
    # given one refill made alone and a batch where one order is refused
    done, other = completed(panel), completed(panel, link=LINK + "/other")
    pending = place(panel, link=LINK + "/pending")
    single = ok(client.post(f"/orders/{done}/refill"), 201)["id"]
    batch = ok(client.post("/refills", json_body={"orders": [other, pending]}))["refills"]

    # then exactly the refills the panel made are alice's; a refill no one asked for here is no one's
    assert gateway.orders()._refills.owners([single, batch[0]["id"], 77]) == {single: "alice", batch[0]["id"]: "alice"}


def test_a_refill_the_table_cannot_record_is_still_answered_and_logged(client: Any, gateway: Any, panel: SandboxPanel,
                                                                      log_lines: Any) -> None:
    # given a table that refuses every write from now on
    done = completed(panel)
    gateway.boto_client("dynamodb").meta.events.register_first(
        "before-call.dynamodb.TransactWriteItems", _refuse)
    try:
        answer = ok(client.post(f"/orders/{done}/refill"), 201)
    finally:
        gateway.boto_client("dynamodb").meta.events.unregister("before-call.dynamodb.TransactWriteItems", _refuse)

    # then the caller has its refill, and an operator has a line naming it
    (line,) = [line for line in log_lines if line["message"] == "refills made but not recorded"]
    assert line["refills"] == [answer["id"]] and line["caller"] == "alice" and line["level"] == "error"


def _refuse(**_: Any) -> None:
    raise RuntimeError("the table is down")


def test_several_refills_status_use_refill_status_with_refills(client: Any, panel: SandboxPanel) -> None:
    ok(client.post(f"/orders/{completed(panel)}/refill"), 201)

    found = ok(client.get("/refills?ids=77,1,77"))["refills"]

    assert found[1] == {"id": 1, "status": "Pending", "state": "pending"}
    assert found[0] == found[2] == {"id": 77, "error": {"code": "refill_not_found", "message": "No such refill.",
                                                        "upstream": "Refill not found"}}
    assert calls(panel, "refill_status") == [{"action": "refill_status", "refills": "77,1"}]
    assert len(calls(panel, "refill")) == 1  # only the one above: never the erratum's action=refill

    many = ok(client.get(f"/refills?ids={csv(range(1, 202))}"))["refills"]
    assert len(many) == 201
    assert sorted(len(p["refills"].split(",")) for p in calls(panel, "refill_status")[1:]) == [1, 100, 100]


# -- cancels ---------------------------------------------------------------------------------------


def test_a_cancel_is_requested_refused_or_not_found(client: Any, panel: SandboxPanel) -> None:
    cancellable = place(panel)
    fixed = place(panel, 2, link=LINK + "/2")  # service 2 cannot be canceled

    assert ok(client.post(f"/orders/{cancellable}/cancel")) == {"id": cancellable, "cancel_requested": True}
    error(client.post(f"/orders/{fixed}/cancel"), 422, "cancel_refused", upstream="Cannot cancel order")
    error(client.post("/orders/424242/cancel"), 404, "order_not_found", upstream="Incorrect order ID")
    assert calls(panel, "cancel")[0] == {"action": "cancel", "orders": str(cancellable)}


def test_cancels_in_bulk_answer_each_order_and_ask_each_once(client: Any, panel: SandboxPanel) -> None:
    cancellable = place(panel)
    fixed = place(panel, 2, link=LINK + "/2")

    items = ok(client.post("/orders/cancel", json_body={"orders": [cancellable, fixed, 999, cancellable]}))["orders"]

    assert items[0] == items[3] == {"id": cancellable, "cancel_requested": True}
    assert items[1]["id"] == fixed and items[1]["error"]["code"] == "cancel_refused"
    assert items[2]["id"] == 999 and items[2]["error"]["code"] == "order_not_found"
    assert calls(panel, "cancel") == [{"action": "cancel", "orders": f"{cancellable},{fixed},999"}]


# -- bodies of the batch routes ----------------------------------------------------------------------

BAD_BODIES = {
    "not json": b"{orders: [1]}",
    "empty": b"",
    "a json array": b"[1, 2]",
    "a json string": b'"orders"',
    "null": b"null",
    "orders missing": b"{}",
    "orders a string": b'{"orders": "1,2"}',
    "orders an object": b'{"orders": {"1": 1}}',
    "a string id": b'{"orders": ["01"]}',  # not canonical: "1" is read as 1
    "a float id": b'{"orders": [1.5]}',
    "a boolean id": b'{"orders": [true]}',
    "a null id": b'{"orders": [null]}',
    "a zero id": b'{"orders": [0]}',
    "a negative id": b'{"orders": [-3]}',
    "an infinite id": b'{"orders": [1e400]}',
    "an empty list": b'{"orders": []}',
    "101 orders": json.dumps({"orders": list(range(1, 102))}).encode(),
    "an unknown field": b'{"orders": [1], "force": true}',
    "deeply nested": b'{"orders": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested within the parser's limits": b'{"orders": [' + b"[" * 500 + b"]" * 500 + b"]}",
    "not utf-8": b'{"orders": [1], "\xff": 1}',
}


def test_a_bad_batch_body_is_400_and_nothing_is_sent(client: Any, panel: SandboxPanel) -> None:
    for path in ("/refills", "/orders/cancel"):
        for name, sent in BAD_BODIES.items():
            error(client.post(path, body=sent), 400, "validation_error", case=f"{path}: {name}")
    assert panel.calls == []


def test_batch_sizes_and_body_sizes_have_limits(client: Any, panel: SandboxPanel) -> None:
    huge = json.dumps({"orders": [1], "pad": "x" * (256 * 1024)}).encode()
    for path, field, action in (("/refills", "refills", "refill"), ("/orders/cancel", "orders", "cancel")):
        error(client.post(path, body=huge), 413, "payload_too_large", case=path)
        assert calls(panel, action) == []
        assert len(ok(client.post(path, json_body={"orders": list(range(1, 101))}))[field]) == 100
        assert len(calls(panel, action)) == 1
        # ids no panel can know are answered per item, never a 500
        beyond = client.post(path, json_body={"orders": [10**30]})
        assert beyond.status_code in (200, 400), beyond.body
        if beyond.status_code == 200:
            assert body(beyond)[field][0]["error"]["code"] == "order_not_found"


# -- errors every protected route can answer --------------------------------------------------------

PROTECTED = [
    ("GET", "/balance"), ("GET", "/services"), ("GET", "/services/1"), ("GET", "/orders/23501"),
    ("GET", "/orders?ids=23501"), ("GET", "/orders"), ("POST", "/orders/23501/refill"),
    ("POST", "/refills"), ("GET", "/refills/1"), ("GET", "/refills?ids=1"), ("POST", "/orders/23501/cancel"),
    ("POST", "/orders/cancel"), ("POST", "/orders"),
]


def test_a_missing_or_wrong_caller_key_is_401_on_every_protected_route(client: Any, panel: SandboxPanel) -> None:
    # The panel's own key is never a caller key.
    for key in (None, "", "sgw_wrong", DEFAULT_KEY, OTHER_KEY + "x", CALLER_KEY.upper()):
        for method, path in PROTECTED:
            answer = client.request(method, path, key=key,
                                    json_body={"orders": [1]} if method == "POST" else None)
            error(answer, 401, "unauthorized", case=f"{method} {path} with {key!r}")
    assert panel.calls == []
    ok(client.get("/balance", key=OTHER_KEY))


def test_an_unsupported_content_type_is_415(client: Any, panel: SandboxPanel) -> None:
    for path in ("/refills", "/orders/cancel", "/orders/23501/refill", "/orders/23501/cancel"):
        for media in ("text/plain", "application/xml", "multipart/form-data"):
            answer = client.post(path, body=b'{"orders": [1]}', headers={"content-type": media})
            error(answer, 415, "unsupported_media_type", case=f"{path} {media}")
    assert panel.calls == []


def test_a_method_a_route_does_not_have_is_405(client: Any) -> None:
    for method, path in (("DELETE", "/orders/23501"), ("PUT", "/refills"), ("GET", "/orders/23501/refill"),
                         ("GET", "/orders/23501/cancel"), ("POST", "/balance"), ("PATCH", "/services/1")):
        error(client.request(method, path), 405, "method_not_allowed", case=f"{method} {path}")


def test_a_route_without_parameters_refuses_unknown_ones(client: Any) -> None:
    # openapi.yaml: "Unknown query parameters are refused with 400, so a misspelt
    # filter does not silently match everything."
    for path in ("/balance?currency=EUR", "/orders/23501?fields=all", "/services/1?refill=true",
                 "/refills/1?ids=2"):
        error(client.get(path), 400, "validation_error", case=path)


def test_a_json_content_type_with_a_charset_or_in_capitals_is_accepted(client: Any, panel: SandboxPanel) -> None:
    order_id = place(panel)
    for media in ("application/json; charset=utf-8", "Application/JSON"):
        answer = client.post("/orders/cancel", body=json.dumps({"orders": [order_id]}),
                             headers={"content-type": media})
        assert ok(answer)["orders"][0]["id"] == order_id, media


@pytest.mark.parametrize("media", ["APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8",
                                   "Application/X-Www-Form-Urlencoded", "application/x-www-form-urlencoded;charset=utf-8",
                                   " application/x-www-form-urlencoded ; charset=\"utf-8\""])
def test_a_form_content_type_in_any_case_or_with_parameters_is_a_form(
        client: Any, panel: SandboxPanel, media: str) -> None:
    answer = client.post("/orders", body=f"service=1&link={LINK}/form&quantity=100",
                         headers={"content-type": media, "Idempotency-Key": "odd-form"})

    assert ok(answer, 201)["quantity"] == 100, media
    assert calls(panel, "add")[0]["quantity"] == "100"


@pytest.mark.parametrize("media", ["APPLICATION/JSON; CHARSET=UTF-8", "application/json;charset=utf-8",
                                   "Application/Json ; charset=\"utf-8\""])
def test_a_json_content_type_in_any_case_or_with_parameters_places_an_order(
        client: Any, panel: SandboxPanel, media: str) -> None:
    answer = client.post("/orders", body=json.dumps({"service": 1, "link": LINK + "/json", "quantity": 100}),
                         headers={"content-type": media, "Idempotency-Key": "odd-json"})

    assert ok(answer, 201)["quantity"] == 100, media


def test_a_repeated_query_parameter_is_refused_not_half_answered(client: Any, panel: SandboxPanel) -> None:
    # `?ids=1&ids=2` (how some tools send a list) must not answer order 2 alone.
    for path in ("/orders?ids=1&ids=2", "/refills?ids=1&ids=2", "/services?type=Poll&type=Default"):
        error(client.get(path), 400, "validation_error", case=path)


def test_an_empty_filter_is_no_filter(client: Any) -> None:
    # No-code tools send optional fields left empty as `type=`.
    everything = ok(client.get("/services"))["services"]
    for query in ("q=", "type=", "category=", "type=&category=&q="):
        assert ok(client.get(f"/services?{query}"))["services"] == everything, query


def test_a_form_body_on_a_batch_route_is_415(client: Any, panel: SandboxPanel) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/refills", "/orders/cancel"):
        error(client.post(path, body=b"orders=23501", headers=form), 415, "unsupported_media_type", case=path)
    assert panel.calls == []


# -- the panel failing ------------------------------------------------------------------------------


def test_an_unreadable_or_refusing_panel_is_502(client: Any, panel: SandboxPanel) -> None:
    order_id = place(panel)
    panel.inject("cancel", "html_502")
    error(client.post(f"/orders/{order_id}/cancel"), 502, "upstream_bad_response")
    assert len(calls(panel, "cancel")) == 1  # a write is never sent twice

    panel.inject("status", "error", text="Invalid API key")
    error(client.get(f"/orders/{order_id}"), 502, "upstream_auth_failed", upstream="Invalid API key")
    panel.inject("status", "error", text="Invalid API key")
    error(client.get(f"/orders?ids={order_id},2"), 502, "upstream_auth_failed", upstream="Invalid API key")

    # a read survives a passing failure
    panel.inject("balance", "html_200")
    assert ok(client.get("/balance"))["balance"].startswith("999.")
    assert len(calls(panel, "balance")) == 2


def test_a_panel_that_refuses_the_gateways_key_is_502_auth_failed(
        client: Any, resources: EmbeddedAws, panel: SandboxPanel) -> None:
    write_secret(resources.client("secretsmanager"), panel.url, "pk_wrong_panel_key",
                 [record_for("alice", CALLER_KEY)])
    found = error(client.get("/balance"), 502, "upstream_auth_failed", upstream="Invalid API key")
    assert "pk_wrong_panel_key" not in json.dumps(found)


@pytest.fixture
def closed_port_secret(resources: EmbeddedAws) -> Iterator[None]:
    with socket.socket() as held:  # bound, never listening: connecting is refused
        held.bind(("127.0.0.1", 0))
        write_secret(resources.client("secretsmanager"), f"http://127.0.0.1:{held.getsockname()[1]}/api/v2",
                     DEFAULT_KEY, [record_for("alice", CALLER_KEY)])
        yield


def test_an_unreachable_panel_is_503(client: Any, closed_port_secret: None) -> None:
    error(client.post("/orders/23501/cancel"), 503, "upstream_unavailable")
    error(client.get("/balance"), 503, "upstream_unavailable")


def test_a_panel_slower_than_the_timeout_is_504_and_not_retried(
        client: Any, panel: SandboxPanel, gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_panel_timeout(gateway, monkeypatch)
    panel.inject("status", "delay", seconds=STALL)
    error(client.get("/orders/23501"), 504, "upstream_timeout")
    panel.inject("refill", "delay", seconds=STALL)
    error(client.post("/orders/23501/refill"), 504, "upstream_timeout")
    assert len(calls(panel, "status")) == len(calls(panel, "refill")) == 1

"""`openapi.yaml` is the one truthful, importable description of the gateway.

It must agree with `../shared/gateway-contract.md` (routes, shapes, statuses) and
with `docs/architecture.md` (error codes per status), import into no-code tools,
and serve the gateway as the source of the JSON Schemas it validates requests with.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"

# -- what the contract says ------------------------------------------------------

# Every route of gateway-contract.md's table, one operation each.
CONTRACT_ROUTES = {
    ("get", "/health"),
    ("get", "/balance"),
    ("get", "/services"),
    ("get", "/services/{id}"),
    ("post", "/orders"),
    ("get", "/orders/{id}"),
    ("get", "/orders"),
    ("post", "/orders/{id}/refill"),
    ("post", "/refills"),
    ("get", "/refills/{id}"),
    ("get", "/refills"),
    ("post", "/orders/{id}/cancel"),
    ("post", "/orders/cancel"),
    ("get", "/openapi.json"),
    ("get", "/openapi.yaml"),
    ("get", "/swagger.json"),
    ("get", "/events"),
    ("get", "/events/{id}"),
    ("post", "/webhooks"),
    ("get", "/webhooks"),
    ("get", "/webhooks/{webhook_id}"),
    ("delete", "/webhooks/{webhook_id}"),
    ("post", "/webhooks/{webhook_id}/test"),
    ("get", "/webhooks/{webhook_id}/deliveries"),
    ("post", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
}

PUBLIC_ROUTES = {
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("get", "/openapi.yaml"),
    ("get", "/swagger.json"),
}

# Every status each route can answer. Every route: 400 (unknown or repeated query
# parameters are refused everywhere). Reads of the panel: 400 (bad ids/query),
# 401, 403 (the key's scope), 404 (single resources), 502/503/504. Every POST: 415 (Chalice checks the
# Content-Type of each request); with a body also 413. 402 and 409 only where an
# order is placed; 422 where the panel or catalogue can refuse.
_PANEL = {"401", "403", "502", "503", "504"}
EXPECTED_STATUSES = {
    ("get", "/health"): {"200", "400"},
    ("get", "/balance"): {"200", "400"} | _PANEL,
    ("get", "/services"): {"200", "400"} | _PANEL,
    ("get", "/services/{id}"): {"200", "400", "404"} | _PANEL,
    ("post", "/orders"): {"201", "400", "402", "409", "413", "415", "422"} | _PANEL,
    ("get", "/orders/{id}"): {"200", "400", "404"} | _PANEL,
    ("get", "/orders"): {"200", "400"} | _PANEL,
    ("post", "/orders/{id}/refill"): {"201", "400", "404", "415", "422"} | _PANEL,
    ("post", "/refills"): {"200", "400", "413", "415"} | _PANEL,
    ("get", "/refills/{id}"): {"200", "400", "404"} | _PANEL,
    ("get", "/refills"): {"200", "400"} | _PANEL,
    ("post", "/orders/{id}/cancel"): {"200", "400", "404", "415", "422"} | _PANEL,
    ("post", "/orders/cancel"): {"200", "400", "413", "415"} | _PANEL,
    ("get", "/openapi.json"): {"200", "400"},
    ("get", "/openapi.yaml"): {"200", "400"},
    ("get", "/swagger.json"): {"200", "400"},
    # The caller's event log: the gateway's table only, no panel call.
    ("get", "/events"): {"200", "400", "401", "403", "503"},
    ("get", "/events/{id}"): {"200", "400", "401", "403", "404", "503"},
    # Webhooks touch only DynamoDB and SQS: 503 when they fail, never 502/504.
    ("post", "/webhooks"): {"201", "400", "401", "403", "413", "415", "422", "503"},
    ("get", "/webhooks"): {"200", "400", "401", "403", "503"},
    ("get", "/webhooks/{webhook_id}"): {"200", "400", "401", "403", "404", "503"},
    ("delete", "/webhooks/{webhook_id}"): {"204", "400", "401", "403", "404", "503"},
    ("post", "/webhooks/{webhook_id}/test"): {"202", "400", "401", "403", "404", "415", "422", "503"},
    ("get", "/webhooks/{webhook_id}/deliveries"): {"200", "400", "401", "403", "404", "503"},
    ("post", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): {"202", "400", "401", "403", "404", "409", "415",
                                                                              "422", "503"},
}

# docs/architecture.md, "Error codes".
CODES_BY_STATUS = {
    "400": {"validation_error", "idempotency_key_required"},
    "401": {"unauthorized"},
    "403": {"forbidden"},
    "402": {"insufficient_funds"},
    "404": {"not_found", "order_not_found", "refill_not_found", "service_not_found", "event_not_found",
            "webhook_not_found"},
    "405": {"method_not_allowed"},
    "409": {"idempotency_in_progress", "outcome_unknown", "delivery_in_progress"},
    "413": {"payload_too_large"},
    "414": {"uri_too_long"},
    "415": {"unsupported_media_type"},
    "422": {
        "quantity_out_of_range",
        "invalid_link",
        "link_has_active_order",
        "unknown_service",
        "refill_refused",
        "cancel_refused",
        "upstream_rejected",
        "idempotency_key_reused",
        "spending_limit_exceeded",
        "invalid_webhook_url",
        "webhook_limit_reached",
        "delivery_attempts_exhausted", "webhook_disabled",
    },
    "431": {"headers_too_large"},
    "500": {"internal_error"},
    "502": {"upstream_bad_response", "upstream_auth_failed", "outcome_unknown"},
    "503": {"upstream_unavailable", "storage_unavailable", "configuration_unavailable", "queue_unavailable"},
    "504": {"upstream_timeout", "outcome_unknown"},
}
ALL_CODES = set().union(*CODES_BY_STATUS.values())

# Names the gateway's code reads from components/schemas.
SCHEMAS_THE_CODE_READS = {
    "Error",
    "ErrorBody",
    "Health",
    "Balance",
    "DecimalString",
    "Service",
    "ServiceList",
    "OrderRequest",
    "Order",
    "OrderStatus",
    "ItemError",
    "LedgerOrder",
    "OrderList",
    "RefillCreated",
    "RefillBatchRequest",
    "RefillBatchResult",
    "RefillBatchItem",
    "RefillStatus",
    "RefillStatusList",
    "RefillStatusItem",
    "CancelResult",
    "CancelBatchRequest",
    "CancelBatchResult",
    "CancelBatchItem",
    "WebhookRequest",
}
CLOSED_SCHEMAS = {"OrderRequest", "RefillBatchRequest", "CancelBatchRequest", "WebhookRequest"}

ORDER_STATES = ["pending", "in_progress", "processing", "completed", "partial", "canceled", "unknown"]
LEDGER_STATES = ORDER_STATES + ["submitting"]
REFILL_STATES = ["pending", "in_progress", "completed", "rejected", "unknown"]
MAX_SAFE_INTEGER = 9007199254740991

_LIST = {"type": "array", "minItems": 1, "maxItems": 10000}
_LIST_ITEM = {"type": "string", "minLength": 1, "maxLength": 2000}
# The panel's `add` parameters (upstream-api.md), with the limits the gateway enforces.
ORDER_REQUEST_PROPERTIES = {
    "service": {"type": "integer", "minimum": 1},
    "link": {"type": "string", "minLength": 1, "maxLength": 2048},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "runs": {"type": "integer", "minimum": 1, "maximum": 10000},
    "interval": {"type": "integer", "minimum": 1, "maximum": 10080},
    "comments": _LIST,
    "usernames": _LIST,
    "hashtags": _LIST,
    "groups": _LIST,
    "hashtag": {"type": "string", "minLength": 1, "maxLength": 200},
    "username": {"type": "string", "minLength": 1, "maxLength": 200},
    "media": {"type": "string", "minLength": 1, "maxLength": 2048},
    "answer_number": {"type": "integer", "minimum": 1, "maximum": 1000},
    "min": {"type": "integer", "minimum": 1},
    "max": {"type": "integer", "minimum": 1},
    "delay": {"type": "integer", "minimum": 0, "maximum": 100000},
    "posts": {"type": "integer", "minimum": 1},
    "old_posts": {"type": "integer", "minimum": 0},
    "expiry": {"type": "string", "pattern": "^[0-9]{2}/[0-9]{2}/[0-9]{4}$"},
    "country": {"type": "string", "minLength": 1, "maxLength": 100},
    "device": {"type": "integer", "minimum": 1, "maximum": 5},
    "type_of_traffic": {"type": "integer", "minimum": 1, "maximum": 3},
    "google_keyword": {"type": "string", "minLength": 1, "maxLength": 500},
    "referring_url": {"type": "string", "minLength": 1, "maxLength": 2048},
}

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# -- helpers --------------------------------------------------------------------


def _load() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return _load()


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow local `$ref`s until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → plain JSON Schema: `nullable: true` becomes a `null` type."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.tzinfo is not None


def validator_for(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator for `schema` whose `#/components/...` refs resolve in `spec`."""
    root = {"allOf": [to_json_schema(schema)], "components": to_json_schema(spec["components"])}
    return jsonschema.Draft4Validator(root, format_checker=_FORMATS)


def component_validator(spec: dict[str, Any], name: str) -> jsonschema.Draft4Validator:
    return validator_for(spec, {"$ref": f"#/components/schemas/{name}"})


def walk(node: Any, pointer: str = "#") -> Iterator[tuple[str, Any]]:
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def schema_nodes(schema: Any, pointer: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A schema and every schema nested in it (properties, items, allOf)."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return
    yield pointer, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_nodes(sub, f"{pointer}/properties/{name}")
    if "items" in schema:
        yield from schema_nodes(schema["items"], f"{pointer}/items")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{pointer}/additionalProperties")
    for index, sub in enumerate(schema.get("allOf", [])):
        yield from schema_nodes(sub, f"{pointer}/allOf/{index}")


def collect_examples(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """Every (where, schema, example) pair of the document."""
    found = []
    # Media types, parameters and headers: objects with a `schema` and examples.
    for pointer, node in walk(spec):
        if isinstance(node, dict) and isinstance(node.get("schema"), dict):
            if "example" in node:
                found.append((f"{pointer}/example", node["schema"], node["example"]))
            for name, example in node.get("examples", {}).items():
                example = resolve(spec, example)
                found.append((f"{pointer}/examples/{name}", node["schema"], example["value"]))
    # Schemas' own examples, nested ones included.
    for name, schema in spec["components"]["schemas"].items():
        for pointer, node in schema_nodes(schema, f"#/components/schemas/{name}"):
            if "example" in node:
                found.append((f"{pointer}/example", node, node["example"]))
    return found


def _example_ids() -> list[str]:
    return [where for where, _, _ in collect_examples(_load())]


def error_codes_in(value: Any) -> Iterator[str]:
    """Every `error.code` inside an example value."""
    for _, node in walk(value):
        if isinstance(node, dict) and isinstance(node.get("error"), dict) and "code" in node["error"]:
            yield node["error"]["code"]


def response_examples(spec: dict[str, Any], response: dict[str, Any]) -> Iterator[Any]:
    for media in resolve(spec, response).get("content", {}).values():
        if "example" in media:
            yield media["example"]
        for example in media.get("examples", {}).values():
            yield resolve(spec, example)["value"]


# -- the document as a whole ---------------------------------------------------------


def test_the_document_parses_as_a_yaml_mapping():
    assert isinstance(_load(), dict)


def test_the_document_is_valid_openapi_3_0_3(spec):
    assert spec["openapi"] == "3.0.3"
    validate(spec)


def test_info_names_the_gateway_and_explains_auth_idempotency_errors_and_money(spec):
    info = spec["info"]
    assert info["title"] == "smm-gateway"
    assert info["version"] == "1.0.0"
    for topic in ("X-API-Key", "Idempotency-Key", "request_id", "decimal string"):
        assert topic in info["description"], topic


def test_servers_point_at_the_local_gateway(spec):
    assert spec["servers"] == [{"url": "http://127.0.0.1:8000"}]


def test_the_tags_are_the_areas_of_the_api(spec):
    names = [tag["name"] for tag in spec["tags"]]
    assert names == ["health", "account", "services", "orders", "refills", "events", "webhooks", "spec"]
    assert all(tag.get("description") for tag in spec["tags"])


def test_unions_appear_only_as_named_item_shapes_of_the_order_list(spec):
    # Generated clients type the items of GET /orders by their shape; elsewhere no
    # oneOf/anyOf (no-code importers mishandle them), and the Swagger 2.0 twin, which
    # Power Automate imports, merges this one into a single object.
    unions = {pointer: node["anyOf"] for pointer, node in walk(spec)
              if isinstance(node, dict) and ({"oneOf", "anyOf"} & node.keys())}
    assert unions == {"#/components/schemas/OrderList/properties/orders/items": [
        {"$ref": f"#/components/schemas/{name}"} for name in ("LedgerOrder", "OrderStatus", "ItemError")]}


# -- routes and operations -----------------------------------------------------------


def test_every_route_of_the_contract_is_present(spec):
    present = {(method, path) for method, path, _ in operations(spec)}
    assert CONTRACT_ROUTES - present == set()


def test_no_route_exists_beyond_the_contract(spec):
    present = {(method, path) for method, path, _ in operations(spec)}
    assert present - CONTRACT_ROUTES == set()


def test_operation_ids_are_unique_and_camel_case(spec):
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation_id) for operation_id in ids), ids


# The names users see in Power Automate, Make and generated code (create_order.py,
# client.POST's types): renaming one breaks every flow and program built on it.
STABLE_OPERATION_IDS = {
    ("get", "/health"): "getHealth", ("get", "/balance"): "getBalance",
    ("get", "/services"): "listServices", ("get", "/services/{id}"): "getService",
    ("post", "/orders"): "createOrder", ("get", "/orders"): "listOrders", ("get", "/orders/{id}"): "getOrder",
    ("post", "/orders/{id}/refill"): "createRefill", ("post", "/orders/{id}/cancel"): "cancelOrder",
    ("post", "/orders/cancel"): "cancelOrders", ("post", "/refills"): "createRefills",
    ("get", "/refills"): "listRefills", ("get", "/refills/{id}"): "getRefill",
    ("get", "/openapi.json"): "getOpenApiJson", ("get", "/openapi.yaml"): "getOpenApiYaml",
    ("get", "/swagger.json"): "getSwaggerJson",
}


def test_operation_ids_stay_what_users_already_call_them(spec):
    present = {(method, path): operation["operationId"] for method, path, operation in operations(spec)}
    assert {route: present.get(route) for route in STABLE_OPERATION_IDS} == STABLE_OPERATION_IDS


def test_every_operation_has_a_summary_a_description_and_known_tags(spec):
    known = {tag["name"] for tag in spec["tags"]}
    for method, path, operation in operations(spec):
        assert operation.get("summary"), (method, path)
        assert len(operation["summary"]) <= 80, (method, path)
        assert not operation["summary"].endswith("."), (method, path)
        assert operation.get("description"), (method, path)
        assert operation.get("tags") and set(operation["tags"]) <= known, (method, path)


def test_every_operation_answers_exactly_the_statuses_its_route_can_produce(spec):
    for method, path, operation in operations(spec):
        assert set(operation["responses"]) == EXPECTED_STATUSES[(method, path)], (method, path)


def test_every_operation_has_one_success_response(spec):
    for method, path, operation in operations(spec):
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert len(successes) == 1, (method, path)


def test_orders_and_refills_are_created_with_201(spec):
    assert "201" in spec["paths"]["/orders"]["post"]["responses"]
    assert "201" in spec["paths"]["/orders/{id}/refill"]["post"]["responses"]


def test_every_post_can_refuse_an_unsupported_content_type(spec):
    for method, path, operation in operations(spec):
        if method == "post":
            assert "415" in operation["responses"], path


def test_payment_required_is_only_answered_by_placing_an_order(spec):
    with_402 = {(m, p) for m, p, op in operations(spec) if "402" in op["responses"]}
    assert with_402 == {("post", "/orders")}


def test_error_responses_are_shared_references_answering_the_error_schema(spec):
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            assert set(response) == {"$ref"}, (method, path, status)
            assert response["$ref"].startswith("#/components/responses/")
            content = resolve(spec, response)["content"]
            assert set(content) == {"application/json"}, (method, path, status)
            assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_error_examples_use_the_codes_documented_for_their_status(spec):
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            allowed = set(CODES_BY_STATUS[status])
            if (method, path) != ("post", "/orders"):
                allowed.discard("outcome_unknown")  # only an order can have an unknown outcome
            examples = list(response_examples(spec, response))
            assert examples, (method, path, status)
            for example in examples:
                assert example["error"]["code"] in allowed, (method, path, status)


def test_a_timeout_while_placing_an_order_is_answered_as_an_unknown_outcome(spec):
    response = spec["paths"]["/orders"]["post"]["responses"]["504"]
    codes = {example["error"]["code"] for example in response_examples(spec, response)}
    assert codes == {"outcome_unknown"}


def test_per_item_errors_in_batch_answers_use_known_codes(spec):
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                for example in response_examples(spec, response):
                    assert set(error_codes_in(example)) <= ALL_CODES, (method, path)


# -- security and headers ---------------------------------------------------------------


def test_the_api_key_scheme_is_the_x_api_key_header_applied_globally(spec):
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"] == {
        **spec["components"]["securitySchemes"]["ApiKeyAuth"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert spec["security"] == [{"ApiKeyAuth": []}]


def test_only_health_and_the_spec_routes_are_open_and_every_other_route_can_answer_401(spec):
    for method, path, operation in operations(spec):
        if (method, path) in PUBLIC_ROUTES:
            assert operation.get("security") == [], (method, path)
            assert "401" not in operation["responses"], (method, path)
        else:
            assert "security" not in operation, (method, path)
            assert "401" in operation["responses"], (method, path)


def test_every_response_documents_the_x_request_id_header(spec):
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            headers = resolve(spec, response).get("headers", {})
            assert "X-Request-Id" in headers, (method, path, status)


def test_conflict_responses_document_retry_after(spec):
    for method, path, operation in operations(spec):
        if "409" in operation["responses"]:
            headers = resolve(spec, operation["responses"]["409"])["headers"]
            retry_after = resolve(spec, headers["Retry-After"])
            assert resolve(spec, retry_after["schema"])["type"] == "integer"


def test_placing_an_order_requires_an_idempotency_key_header(spec):
    parameters = [resolve(spec, p) for p in spec["paths"]["/orders"]["post"]["parameters"]]
    (key,) = [p for p in parameters if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    schema = resolve(spec, key["schema"])
    assert (schema["type"], schema["minLength"], schema["maxLength"]) == ("string", 1, 255)
    for topic in ("Idempotent-Replayed", "idempotency_key_reused", "idempotency_in_progress",
                  "Retry-After", "outcome_unknown", "7 days"):
        assert topic in key["description"], topic


def test_a_replayed_order_answer_documents_idempotent_replayed(spec):
    headers = spec["paths"]["/orders"]["post"]["responses"]["201"]["headers"]
    assert resolve(spec, headers["Idempotent-Replayed"])["schema"]["enum"] == ["true"]


# -- parameters ---------------------------------------------------------------------------


def _parameters(spec, method, path):
    operation = spec["paths"][path][method]
    return {p["name"]: p for p in (resolve(spec, p) for p in operation.get("parameters", []))}


def test_path_ids_are_positive_integers_up_to_the_largest_safe_integer(spec):
    for method, path, _ in operations(spec):
        if "{id}" not in path or path.startswith("/events/"):  # event ids are the gateway's own: evt_...
            continue
        parameter = _parameters(spec, method, path)["id"]
        assert parameter["in"] == "path" and parameter["required"] is True
        schema = resolve(spec, parameter["schema"])
        assert schema["type"] == "integer"
        assert schema["format"] == "int64"
        assert (schema["minimum"], schema["maximum"]) == (1, MAX_SAFE_INTEGER)


def test_every_parameter_has_a_description_a_schema_and_an_example(spec):
    for method, path, _ in operations(spec):
        for name, parameter in _parameters(spec, method, path).items():
            assert parameter.get("description"), (method, path, name)
            assert "schema" in parameter and "example" in parameter, (method, path, name)


def test_services_can_be_filtered_by_type_category_text_refill_and_cancel(spec):
    parameters = _parameters(spec, "get", "/services")
    assert set(parameters) == {"type", "category", "q", "refill", "cancel"}
    for name in ("type", "category", "q"):
        schema = resolve(spec, parameters[name]["schema"])
        assert (schema["type"], schema["maxLength"]) == ("string", 200)
    for name in ("refill", "cancel"):
        schema = resolve(spec, parameters[name]["schema"])
        assert (schema["type"], schema["enum"]) == ("string", ["true", "false"])
    for parameter in parameters.values():
        assert parameter["in"] == "query" and not parameter.get("required", False)


def test_listing_orders_takes_ids_or_limit_cursor_and_state(spec):
    parameters = _parameters(spec, "get", "/orders")
    assert set(parameters) == {"ids", "limit", "cursor", "state"}
    assert all(p["in"] == "query" and not p.get("required", False) for p in parameters.values())
    limit = resolve(spec, parameters["limit"]["schema"])
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == ("integer", 1, 100, 25)
    assert resolve(spec, parameters["cursor"]["schema"])["type"] == "string"
    state = resolve(spec, parameters["state"]["schema"])
    assert state["type"] == "string" and state["enum"] == LEDGER_STATES


def test_refill_statuses_are_read_by_a_required_ids_list(spec):
    parameters = _parameters(spec, "get", "/refills")
    assert set(parameters) == {"ids"}
    assert parameters["ids"]["in"] == "query" and parameters["ids"]["required"] is True


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("1", True),
        ("23501,23502,99", True),
        (",".join(str(n) for n in range(1, 1001)), True),
        (",".join(str(n) for n in range(1, 1002)), False),
        (str(MAX_SAFE_INTEGER), True),
        ("", False),
        ("0", False),
        ("1,,2", False),
        ("1,2,", False),
        ("1, 2", False),
        ("abc", False),
        ("-5", False),
    ],
)
def test_an_ids_list_is_one_to_a_thousand_comma_separated_positive_integers(spec, value, accepted):
    schema = resolve(spec, _parameters(spec, "get", "/orders")["ids"]["schema"])
    assert validator_for(spec, schema).is_valid(value) is accepted


# -- request bodies ------------------------------------------------------------------------


def test_placing_an_order_takes_one_json_schema_and_documents_the_form_in_words(spec):
    # One media type: generators mishandle a body with two (openapi-python-client
    # 0.29 writes a create_order.py that does not import).
    body = spec["paths"]["/orders"]["post"]["requestBody"]
    assert body["content"] == {"application/json": {**body["content"]["application/json"],
                                                    "schema": {"$ref": "#/components/schemas/OrderRequest"}}}
    for topic in ("application/x-www-form-urlencoded", "one item per line", "curl -d", "Content-Type"):
        assert topic in body["description"], topic


def test_batch_bodies_are_json_lists_of_one_to_a_hundred_order_ids(spec):
    for path, name in (("/refills", "RefillBatchRequest"), ("/orders/cancel", "CancelBatchRequest")):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert content == {"application/json": {**content["application/json"],
                                                 "schema": {"$ref": f"#/components/schemas/{name}"}}}
        schema = spec["components"]["schemas"][name]
        assert schema["required"] == ["orders"]
        orders = schema["properties"]["orders"]
        assert (orders["minItems"], orders["maxItems"]) == (1, 100)
        assert orders["items"]["type"] == "integer" and orders["items"]["minimum"] == 1
        check = component_validator(spec, name)
        assert check.is_valid({"orders": list(range(1, 101))})
        assert not check.is_valid({"orders": list(range(1, 102))})
        assert not check.is_valid({"orders": []})
        assert not check.is_valid({"orders": [1], "extra": True})


def test_the_order_request_has_exactly_the_panels_add_parameters(spec):
    schema = spec["components"]["schemas"]["OrderRequest"]
    assert schema["required"] == ["service"]
    assert set(schema["properties"]) == set(ORDER_REQUEST_PROPERTIES)
    for name, expected in ORDER_REQUEST_PROPERTIES.items():
        declared = schema["properties"][name]
        assert {key: declared.get(key) for key in expected} == expected, name
        assert declared.get("description"), name
        if declared["type"] == "array":
            assert declared["items"] == {**declared["items"], **_LIST_ITEM}, name


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"service": 1448, "link": "https://example.com/p/1", "quantity": 1000}, True),
        ({"service": 1448}, True),
        ({"service": 3051, "username": "demo", "min": 100, "max": 150, "delay": 0,
          "expiry": "31/12/2025"}, True),
        ({"service": 2113, "link": "x", "comments": ["one", "two"]}, True),
        ({}, False),
        ({"service": 0}, False),
        ({"service": "1448"}, False),
        ({"service": 1448, "quantity": 0}, False),
        ({"service": 1448, "quantity": 2147483648}, False),
        ({"service": 1448, "link": ""}, False),
        ({"service": 1448, "comments": []}, False),
        ({"service": 1448, "comments": [""]}, False),
        ({"service": 1448, "interval": 10081}, False),
        ({"service": 1448, "expiry": "2025-12-31"}, False),
        ({"service": 1448, "device": 6}, False),
        ({"service": 1448, "key": "smuggled"}, False),
    ],
)
def test_the_order_request_schema_accepts_and_refuses_bodies_as_the_gateway_does(spec, body, accepted):
    assert component_validator(spec, "OrderRequest").is_valid(body) is accepted


# -- component schemas --------------------------------------------------------------------


def test_the_schemas_the_code_reads_exist(spec):
    assert SCHEMAS_THE_CODE_READS <= set(spec["components"]["schemas"])


def test_every_object_schema_says_whether_it_is_open_and_only_request_bodies_are_closed(spec):
    closed = set()
    for name, schema in spec["components"]["schemas"].items():
        for pointer, node in schema_nodes(schema, name):
            if node.get("type") == "object":
                assert "additionalProperties" in node, pointer
                if node["additionalProperties"] is False:
                    closed.add(pointer)
    assert closed == CLOSED_SCHEMAS


def test_every_body_and_response_schema_is_a_named_component(spec):
    for method, path, operation in operations(spec):
        bodies = [operation.get("requestBody", {})] + list(operation["responses"].values())
        for body in bodies:
            for media in resolve(spec, body).get("content", {}).values():
                assert set(media["schema"]) == {"$ref"}, (method, path)


def test_every_request_body_schema_is_closed(spec):
    for method, path, operation in operations(spec):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            assert resolve(spec, media["schema"])["additionalProperties"] is False, (method, path)


def test_money_is_a_decimal_string(spec):
    schemas = spec["components"]["schemas"]
    decimal = schemas["DecimalString"]
    assert (decimal["type"], decimal["pattern"], decimal["example"]) == (
        "string", r"^-?[0-9]+(\.[0-9]+)?$", "0.90")
    money = {"Balance": "balance", "Service": "rate", "Order": "estimated_charge",
             "OrderStatus": "charge", "LedgerOrder": "estimated_charge"}
    for schema, field in money.items():
        assert schemas[schema]["properties"][field] == {"$ref": "#/components/schemas/DecimalString"}
    check = component_validator(spec, "DecimalString")
    assert all(check.is_valid(v) for v in ("0", "0.90", "100.84292", "-1.5"))
    assert not any(check.is_valid(v) for v in (0.9, "1e3", "1.", ".5", "1,5", ""))


def test_the_error_shape_nests_a_reusable_error_body(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error", "request_id"]
    assert schemas["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert schemas["ErrorBody"]["required"] == ["code", "message"]
    assert schemas["ErrorBody"]["properties"]["upstream"]["nullable"] is True
    for name in ("ItemError", "RefillBatchItem", "RefillStatusItem", "CancelBatchItem"):
        assert schemas[name]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}, name


def test_a_service_has_every_field_of_the_contract(spec):
    service = spec["components"]["schemas"]["Service"]
    fields = ["id", "name", "type", "category", "rate", "min", "max", "refill", "cancel", "dripfeed"]
    assert service["required"] == fields
    types = {name: resolve(spec, service["properties"][name])["type"] for name in fields}
    assert types == {"id": "integer", "name": "string", "type": "string", "category": "string",
                     "rate": "string", "min": "integer", "max": "integer", "refill": "boolean",
                     "cancel": "boolean", "dripfeed": "boolean"}


def test_states_are_the_contracts_enums(spec):
    schemas = spec["components"]["schemas"]
    assert resolve(spec, schemas["OrderStatus"]["properties"]["state"])["enum"] == ORDER_STATES
    assert resolve(spec, schemas["LedgerOrder"]["properties"]["state"])["enum"] == LEDGER_STATES
    assert resolve(spec, schemas["RefillStatus"]["properties"]["state"])["enum"] == REFILL_STATES
    assert resolve(spec, schemas["RefillStatusItem"]["properties"]["state"])["enum"] == REFILL_STATES


def test_one_order_list_covers_statuses_by_ids_and_the_ledger(spec):
    schemas = spec["components"]["schemas"]
    order_list = schemas["OrderList"]
    assert order_list["required"] == ["orders"]
    assert order_list["properties"]["next_cursor"] == {**order_list["properties"]["next_cursor"],
                                                       "type": "string", "nullable": True}
    check = component_validator(spec, "OrderList")
    for name in ("OrderStatus", "LedgerOrder", "ItemError"):
        assert check.is_valid({"orders": [schemas[name]["example"]]}), name
    assert not check.is_valid({"orders": [{"id": 1}]})


def test_the_swagger_order_list_item_is_one_object_with_every_variants_fields(spec, swagger):
    item = swagger["definitions"]["OrderList"]["properties"]["orders"]["items"]
    schemas = spec["components"]["schemas"]
    union = set(schemas["OrderStatus"]["properties"]) | set(schemas["LedgerOrder"]["properties"]) \
        | set(schemas["ItemError"]["properties"])
    assert item["type"] == "object" and set(item["properties"]) == union
    assert item["required"] == ["id"] and item["properties"]["id"]["x-nullable"] is True
    assert not {"LedgerOrder", "ItemError"} & set(swagger["definitions"])  # OrderStatus: GET /orders/{id}


def test_a_new_order_has_at_least_an_id_and_its_idempotency_key(spec):
    # gateway-contract.md: "201 Order with at least id"; an operator-resolved replay has no more.
    order = spec["components"]["schemas"]["Order"]
    assert order["required"] == ["id", "idempotency_key"]
    assert component_validator(spec, "Order").is_valid({"id": 23501, "idempotency_key": "k", "resolved": True})
    assert order["properties"]["created_at"]["format"] == "date-time"
    for name in ("link", "quantity", "currency"):
        assert order["properties"][name]["nullable"] is True, name


def test_a_ledger_entry_without_a_panel_id_is_valid(spec):
    entry = dict(spec["components"]["schemas"]["LedgerOrder"]["example"], id=None, state="unknown",
                 status=None)
    assert component_validator(spec, "LedgerOrder").is_valid(entry)


def test_the_spec_routes_answer_free_form_documents_in_their_media_types(spec):
    expected = {"/openapi.json": "application/json", "/swagger.json": "application/json"}
    for path, media_type in expected.items():
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(content) == {media_type}
        schema = resolve(spec, content[media_type]["schema"])
        assert schema["type"] == "object" and schema["additionalProperties"] is True
        assert "properties" not in schema
    # The YAML document is also offered as text/plain, typed as text: generators read
    # text/* answers as text (an application/yaml-only answer they skip with a warning).
    content = spec["paths"]["/openapi.yaml"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/yaml", "text/plain"}
    assert content["application/yaml"]["schema"] == {"$ref": "#/components/schemas/SpecDocument"}
    assert resolve(spec, content["text/plain"]["schema"])["type"] == "string"
    assert yaml.safe_load(content["text/plain"]["example"])["openapi"] == "3.0.3"


# -- examples ---------------------------------------------------------------------------------


def test_every_request_and_response_body_has_an_example(spec):
    for method, path, operation in operations(spec):
        bodies = [operation.get("requestBody", {})] + list(operation["responses"].values())
        for body in bodies:
            for media_type, media in resolve(spec, body).get("content", {}).items():
                assert "example" in media or media.get("examples"), (method, path, media_type)


def test_every_component_schema_has_an_example(spec):
    for name, schema in spec["components"]["schemas"].items():
        assert "example" in schema, name


@pytest.mark.parametrize("where", _example_ids())
def test_the_example_validates_against_its_schema(spec, where):
    (schema, example), = [(s, e) for w, s, e in collect_examples(spec) if w == where]
    errors = sorted(validator_for(spec, schema).iter_errors(example), key=str)
    assert errors == [], [error.message for error in errors]


ROOT = SPEC_PATH.parent
# A message may carry the field it is about, `quantity: ...` (chalicelib/schemas.py), or
# speak of the whole body.
_MESSAGE_PREFIXES = ("", r"[A-Za-z_][\w.\[\]-]*: ", "The body ")


def code_messages() -> list[re.Pattern[str]]:
    """Every text the gateway's code can write, as a pattern: each string literal and
    f-string of app.py and chalicelib, its `{...}` parts matching any text. Those too
    short to say anything (`f"{field}: {text}"`) are left out."""
    found = set()
    for path in [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                parts = [re.escape(part.value) if isinstance(part, ast.Constant) else "(.+)"
                         for part in node.values]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts = [re.escape(node.value)]
            else:
                continue
            if len(re.sub(r"\(\.\+\)|\\", "", "".join(parts))) >= 8:
                found.add("".join(parts))
    return [re.compile(f"(?:{prefix}){pattern}", re.DOTALL) for pattern in found for prefix in _MESSAGE_PREFIXES]


def documented_messages(spec: dict[str, Any]) -> dict[str, str]:
    """Every error message the document shows in an example: message → where."""
    return {node["message"]: pointer for pointer, node in walk(spec)
            if isinstance(node, dict) and isinstance(node.get("code"), str) and isinstance(node.get("message"), str)}


def test_every_documented_error_message_is_one_the_gateway_writes(spec):
    patterns = code_messages()
    documented = documented_messages(spec)
    assert len(documented) > 20
    unknown = {message: where for message, where in documented.items()
               if not any(pattern.fullmatch(message) for pattern in patterns)}
    assert unknown == {}


# -- the Swagger 2.0 twin (Power Automate) and the linter ----------------------------------------

SWAGGER_PATH = SPEC_PATH.parent / "chalicelib" / "swagger.json"
SPECTRAL = "@stoplight/spectral-cli@6.16.3"


@pytest.fixture(scope="module")
def swagger() -> dict[str, Any]:
    return json.loads(SWAGGER_PATH.read_text(encoding="utf-8"))


def test_the_swagger_document_is_valid_swagger_2_0(swagger):
    assert swagger["swagger"] == "2.0"
    validate(swagger, cls=OpenAPIV2SpecValidator)


def test_the_swagger_document_asks_for_the_key_and_the_idempotency_key(swagger):
    assert swagger["securityDefinitions"] == {"ApiKeyAuth": {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": swagger["securityDefinitions"]["ApiKeyAuth"]["description"]}}
    create = swagger["paths"]["/orders"]["post"]
    key = swagger["parameters"]["IdempotencyKey"]
    assert {"$ref": "#/parameters/IdempotencyKey"} in create["parameters"]
    assert (key["in"], key["required"], key["type"], key["maxLength"]) == ("header", True, "string", 255)
    (body,) = [p for p in create["parameters"] if p.get("in") == "body"]
    assert body["schema"] == {"$ref": "#/definitions/OrderRequest"} and create["consumes"] == ["application/json"]
    for path in ("/health", "/openapi.json", "/openapi.yaml", "/swagger.json"):
        assert swagger["paths"][path]["get"]["security"] == []


def test_the_swagger_document_labels_fields_for_power_automate(swagger):
    # Power Automate shows `x-ms-summary` as the label of a parameter or a field.
    assert swagger["parameters"]["IdempotencyKey"]["x-ms-summary"] == "Idempotency key"
    status = swagger["definitions"]["OrderStatus"]["properties"]
    assert status["start_count"]["x-ms-summary"] == "Start count"
    assert swagger["definitions"]["Order"]["properties"]["link"]["x-nullable"] is True


def test_the_swagger_document_keeps_every_example(spec, swagger):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, documented in operation["responses"].items():
                if not resolve(spec, documented).get("content"):
                    continue  # 204: no body, nothing to show
                response = swagger["paths"][path][method]["responses"][status]
                response = swagger["responses"][response["$ref"].split("/")[-1]] if "$ref" in response \
                    else response
                assert response.get("examples"), (method, path, status)


def test_spectral_finds_nothing_in_either_document(tmp_path):
    # The standard OpenAPI lint (spectral:oas), pinned; tests/spectral.yaml explains its one override.
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip(f"node/npx is not installed: the lint with {SPECTRAL} needs it (CI has node 20)")
    report = tmp_path / "spectral.json"
    run = subprocess.run(
        [npx, "--yes", SPECTRAL, "lint", "--ruleset", "tests/spectral.yaml", "--format", "json",
         "--output", str(report), "--fail-severity", "hint", "openapi.yaml", "chalicelib/swagger.json"],
        cwd=SPEC_PATH.parent, capture_output=True, text=True, timeout=300)
    assert report.exists(), run.stderr[-3000:]
    found = json.loads(report.read_text(encoding="utf-8"))
    assert found == [], [(f["source"], f["code"], f["path"], f["message"]) for f in found]
    assert run.returncode == 0, run.stderr[-3000:]


REDOCLY = "@redocly/cli@2.77.0"


def test_redocly_recommended_finds_nothing_in_either_document(tmp_path):
    # Redocly's `recommended` ruleset, pinned; tests/redocly.yaml explains its one override.
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip(f"node/npx is not installed: the lint with {REDOCLY} needs it (CI has node 20)")
    for document in ("openapi.yaml", "chalicelib/swagger.json"):
        run = subprocess.run(
            [npx, "--yes", REDOCLY, "lint", "--config", "tests/redocly.yaml", "--format", "json", document],
            cwd=SPEC_PATH.parent, capture_output=True, text=True, timeout=300)
        assert run.stdout.strip().startswith("{"), run.stderr[-3000:]
        found = json.loads(run.stdout)
        problems = [(p["ruleId"], p["severity"], p["message"], [loc.get("pointer") for loc in p["location"]])
                    for p in found["problems"]]
        assert found["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}, (document, problems)
        assert run.returncode == 0, run.stderr[-3000:]


def test_the_swagger_document_makes_subscribing_a_power_automate_webhook_trigger(swagger):
    subscribe = swagger["paths"]["/webhooks"]["post"]
    assert subscribe["x-ms-trigger"] == "single"
    assert subscribe["x-ms-notification-content"]["schema"] == {"$ref": "#/definitions/WebhookEvent"}
    assert "WebhookEvent" in swagger["definitions"]
    (body,) = [p for p in subscribe["parameters"] if p["in"] == "body"]
    url = swagger["definitions"][body["schema"]["$ref"].split("/")[-1]]["properties"]["url"]
    assert url["x-ms-notification-url"] is True and url["x-ms-visibility"] == "internal"
    assert "Location" in subscribe["responses"]["201"]["headers"]  # where Power Automate sends its DELETE
    unsubscribe = swagger["paths"]["/webhooks/{webhook_id}"]["delete"]
    assert unsubscribe["x-ms-visibility"] == "internal" and "204" in unsubscribe["responses"]


def test_the_delivery_payload_and_its_signature_headers_are_documented(spec):
    callback = spec["paths"]["/webhooks"]["post"]["callbacks"]["delivery"]["{$request.body#/url}"]["post"]
    headers = {resolve(spec, p)["name"] for p in callback["parameters"]}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    schema = callback["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/WebhookEvent"}


def test_the_event_types_of_webhooks_are_the_gateways(spec):
    from chalicelib.events import model

    schemas = spec["components"]["schemas"]
    assert set(schemas["EventType"]["enum"]) == set(model.TYPES)
    assert set(schemas["EventFilter"]["enum"]) == set(model.TYPES) | set(model.FAMILIES) | {"*"}

"""The gateway and openapi.yaml agree: same routes, spec served per deployment, inputs
validated by the spec's own schemas, every answer shaped as the spec says.

Answers are checked against the spec by tests/contract.py; tests/conftest.py does the
same for every answer of the `client` fixture in the whole suite.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from sandbox import DEFAULT_KEY, SandboxPanel
from tests import contract
from tests.conftest import DEFAULT_TIMEOUT, STALL, Api, set_panel_timeout

ROOT = Path(__file__).resolve().parent.parent
LINK = "https://www.instagram.com/p/contract/"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def built(name: str) -> Any:
    return json.loads((ROOT / "chalicelib" / name).read_text(encoding="utf-8"))


def place_on_panel(panel: SandboxPanel, link: str, service: int = 1) -> int:
    reply = panel.handle({"key": DEFAULT_KEY, "action": "add", "service": str(service),
                          "link": link, "quantity": "100"})
    return int(json.loads(reply.body)["order"])


class Seen:
    """Every answer of a test, checked against the spec as it comes."""

    def __init__(self, client: Api) -> None:
        self._client = client
        self.pairs: set[tuple[str, str, int]] = set()
        self.problems: list[str] = []

    def __call__(self, method: str, path: str, expected: int, **kw: Any) -> Any:
        answer = self._client.request(method, path, **kw)
        assert answer.status_code == expected, (method, path, answer.body[:300])
        self.problems += contract.problems(method, path, answer.status_code, answer.headers, answer.body)
        template = contract.operation_of(method, path)
        if template is not None:
            self.pairs.add((method.lower(), template[0], answer.status_code))
        is_json = answer.headers.get("Content-Type", "application/json").startswith("application/json")
        return json.loads(answer.body) if is_json and answer.body else answer.body


# -- the checker itself ------------------------------------------------------------------------


def test_the_checker_refuses_answers_the_spec_does_not_allow() -> None:
    ok = {"Content-Type": "application/json", "X-Request-Id": "r-1"}
    assert contract.problems("GET", "/balance", 200, ok, b'{"balance": "1.50", "currency": "USD"}') == []
    assert contract.problems("GET", "/balance", 200, ok, b'{"balance": 1.5, "currency": "USD"}')  # a float
    assert contract.problems("GET", "/balance", 418, ok, b"{}")  # an undocumented status
    assert contract.problems("GET", "/balance", 200, {**ok, "Content-Type": "text/html"}, b"<p>")
    assert contract.problems("GET", "/balance", 200, {"Content-Type": "application/json"},
                             b'{"balance": "1.50", "currency": "USD"}')  # no X-Request-Id
    # /orders/cancel is its own operation, not /orders/{id}
    assert contract.problems("POST", "/orders/cancel", 200, ok, b'{"orders": [{"cancel_requested": true}]}')
    assert contract.problems("GET", "/nowhere", 404, ok, b"{}") == []  # not an operation: not checked


# -- the documents --------------------------------------------------------------------------


def test_the_generated_documents_are_those_of_openapi_yaml() -> None:
    run = subprocess.run([sys.executable, "scripts/build_spec.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert built("openapi.json") == yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))


def test_the_swagger_2_document_is_valid_and_describes_the_same_operations() -> None:
    swagger, openapi = built("swagger.json"), built("openapi.json")
    validate(swagger, cls=OpenAPIV2SpecValidator)
    operations = {(method, path, op["operationId"]) for path, item in swagger["paths"].items()
                  for method, op in item.items()}
    assert operations == {(method, path, op["operationId"]) for path, item in openapi["paths"].items()
                          for method, op in item.items()}


def test_every_chalice_route_is_an_operation_of_the_spec_and_back(gateway: Any) -> None:
    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    routes = {(method.lower(), shape(path)) for path, entries in gateway.app.routes.items()
              for method in entries}
    operations = {(method, shape(path)) for path, item in built("openapi.json")["paths"].items()
                  for method in item}
    assert routes == operations


def test_importing_the_app_loads_no_document_and_no_yaml_parser() -> None:
    # Cold starts pay for the spec only when a request needs it.
    probe = "import sys, app; print(sorted(m for m in ('chalicelib.spec_docs', 'yaml', 'jsonschema') " \
            "if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


# -- served, pointed at the deployment that answers -------------------------------------------


def test_the_documents_are_served_without_a_key_pointing_at_the_host_asked(client: Api) -> None:
    host = {"host": "127.0.0.1:8000"}
    as_json = client.get("/openapi.json", key=None, headers=host)
    as_yaml = client.get("/openapi.yaml", key=None, headers=host)
    as_swagger = client.get("/swagger.json", key=None, headers=host)

    assert [a.status_code for a in (as_json, as_yaml, as_swagger)] == [200, 200, 200]
    assert as_yaml.headers["Content-Type"].startswith("application/yaml")
    document = json.loads(as_json.body)
    assert document == {**built("openapi.json"), "servers": [{"url": "http://127.0.0.1:8000"}]}
    assert yaml.safe_load(as_yaml.body) == document
    swagger = json.loads(as_swagger.body)
    assert (swagger["host"], swagger["basePath"], swagger["schemes"]) == ("127.0.0.1:8000", "/", ["http"])
    validate(document)
    validate(swagger, cls=OpenAPIV2SpecValidator)


@pytest.mark.parametrize(("accept", "media"), [
    (None, "application/yaml"),
    ("*/*", "application/yaml"),
    ("text/plain", "text/plain"),
    ("text/*", "text/plain"),
    ("application/yaml, text/plain;q=0.5", "application/yaml"),
    ("application/yaml;q=0.2, text/plain", "text/plain"),
    ("text/plain;q=0", "application/yaml"),
])
def test_the_yaml_document_is_sent_as_text_plain_to_a_client_that_prefers_it(
        client: Api, accept: str | None, media: str) -> None:
    # openapi-python-client, for one, reads only text/* answers as text.
    answer = client.get("/openapi.yaml", key=None, headers={"accept": accept} if accept else {})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == f"{media}; charset=utf-8"
    assert yaml.safe_load(answer.body)["openapi"] == "3.0.3"


def api_gateway_event(path: str, stage_path: str, host: str) -> dict[str, Any]:
    """What API Gateway (REST, Lambda proxy) hands the function for a GET."""
    headers = {"Host": host, "X-Forwarded-Proto": "https", "Accept": "*/*"}
    return {
        "resource": path, "path": path, "httpMethod": "GET", "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": path, "httpMethod": "GET", "path": stage_path, "stage": "api",
                           "domainName": host, "requestId": "c0ffee00-0000-4000-8000-000000000001",
                           "identity": {"sourceIp": "203.0.113.9"}},
    }


@pytest.mark.parametrize("stage_path, host, url", [
    ("/api/openapi.json", "abc123.execute-api.eu-west-1.amazonaws.com",
     "https://abc123.execute-api.eu-west-1.amazonaws.com/api"),
    ("/v1/openapi.json", "smm.example.com", "https://smm.example.com/v1"),  # custom domain, base path v1
    ("/openapi.json", "smm.example.com", "https://smm.example.com"),  # custom domain at its root
    ("/api/openapi.json", "bad host\r\nx: y", "/api"),  # no usable Host: a relative URL
])
def test_behind_api_gateway_the_servers_url_carries_the_stage_prefix(
        gateway: Any, stage_path: str, host: str, url: str) -> None:
    from chalice.local import LambdaContext

    context = LambdaContext("smm-gateway", 256)
    as_json = gateway.app(api_gateway_event("/openapi.json", stage_path, host), context)
    swagger_path = stage_path.replace("openapi.json", "swagger.json")
    as_swagger = gateway.app(api_gateway_event("/swagger.json", swagger_path, host), context)

    assert json.loads(as_json["body"])["servers"] == [{"url": url}]
    swagger = json.loads(as_swagger["body"])
    if url.startswith("https://"):
        assert "https://" + swagger["host"] + swagger["basePath"].rstrip("/") == url
        assert swagger["schemes"] == ["https"]
    else:
        assert "host" not in swagger and swagger["basePath"] == url


def test_behind_api_gateway_the_servers_url_ignores_the_host_and_forwarded_headers_a_client_sent(
        gateway: Any) -> None:
    from chalice.local import LambdaContext

    # given a client that reached the API's own domain, but says it came through another
    domain = "abc123.execute-api.eu-west-1.amazonaws.com"
    hostile = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
               "Accept": "*/*"}
    answers = {}
    for name in ("openapi.json", "openapi.yaml", "swagger.json"):
        event = api_gateway_event(f"/{name}", f"/api/{name}", domain)
        event.update(headers=hostile, multiValueHeaders={k: [v] for k, v in hostile.items()})
        answers[name] = gateway.app(event, LambdaContext("smm-gateway", 256))["body"]

    # then every document names the domain API Gateway says was reached, over https
    url = f"https://{domain}/api"
    assert json.loads(answers["openapi.json"])["servers"] == [{"url": url}]
    assert yaml.safe_load(answers["openapi.yaml"])["servers"] == [{"url": url}]
    swagger = json.loads(answers["swagger.json"])
    assert (swagger["host"], swagger["basePath"], swagger["schemes"]) == (domain, "/api", ["https"])


def test_locally_the_servers_url_is_the_host_asked(client: Api) -> None:
    # `chalice local` has no API Gateway context: the Host header is the only name there is
    answer = client.get("/openapi.json", key=None, headers={"host": "localhost:9000"})
    assert json.loads(answer.body)["servers"] == [{"url": "http://localhost:9000"}]


# -- requests validated by the spec's own schemas ---------------------------------------------


def test_query_parameters_are_checked_against_the_spec_naming_the_field(client: Api) -> None:
    cases = [
        ("/services?refill=yes", "refill"), ("/services?colour=red", "colour"),
        ("/services?q=" + "x" * 201, "q"), ("/orders?limit=0", "limit"), ("/orders?limit=101", "limit"),
        ("/orders?limit=ten", "limit"), ("/orders?state=lost", "state"), ("/orders?ids=1,,2", "ids"),
        ("/orders?ids=" + ",".join(["1"] * 1001), "ids"), ("/refills", "ids"), ("/refills?ids=7,x", "ids"),
    ]
    for path, field in cases:
        answer = client.get(path)
        error = json.loads(answer.body)["error"]
        assert (answer.status_code, error["code"]) == (400, "validation_error"), path
        assert error["message"].startswith(f"{field}: ") or f"'{field}'" in error["message"], (path, error)
    # the limits are the spec's: its maximum passes, one more does not
    assert client.get("/orders?limit=100").status_code == 200
    assert client.get("/services?refill=true&cancel=false&type=Default").status_code == 200


def test_bodies_are_checked_against_the_spec_naming_the_field_path(client: Api) -> None:
    cases = [
        ("/refills", {"orders": [1, "x"]}, "orders[1]"), ("/refills", {}, "orders"),
        ("/orders/cancel", {"orders": [1], "extra": True}, "extra"),
        ("/orders/cancel", {"orders": [2**53]}, "orders[0]"), ("/refills", {"orders": []}, "orders"),
    ]
    for path, sent, field in cases:
        answer = client.post(path, json_body=sent)
        error = json.loads(answer.body)["error"]
        assert (answer.status_code, error["code"]) == (400, "validation_error"), (path, sent)
        assert error["message"].startswith(f"{field}: "), (path, sent, error)
    answer = client.post("/orders", json_body={"service": 1, "link": LINK, "quantity": 100, "colour": "red"},
                         headers={"Idempotency-Key": "contract-colour"})
    assert json.loads(answer.body)["error"]["message"].startswith("colour: ")


# -- every answer is the spec's ---------------------------------------------------------------


def test_every_route_answers_as_documented_on_its_success_and_error_paths(
        client: Api, panel: SandboxPanel, gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    send = Seen(client)
    key = {"Idempotency-Key": "contract-1"}
    order = {"service": 1, "link": LINK, "quantity": 100}
    # reads
    send("GET", "/health", 200, key=None)
    for path in ("/openapi.json", "/openapi.yaml", "/swagger.json"):
        send("GET", path, 200, key=None)
    send("GET", "/balance", 200)
    send("GET", "/balance", 401, key=None)
    send("GET", "/services?type=Default&refill=true", 200)
    send("GET", "/services?cancel=maybe", 400)
    send("GET", "/services/1", 200)
    send("GET", "/services/999999", 404)
    send("GET", "/services/0", 400)
    # orders: created, replayed, as a form, refused in each way a caller can cause
    created = send("POST", "/orders", 201, json_body=order, headers=key)
    send("POST", "/orders", 201, json_body=order, headers=key)
    send("POST", "/orders", 201, body=f"service=1&link={LINK}form/&quantity=100",
         headers={**FORM, "Idempotency-Key": "contract-form"})
    send("POST", "/orders", 400, json_body=order)
    send("POST", "/orders", 400, json_body={"service": "one"}, headers={"Idempotency-Key": "contract-2"})
    send("POST", "/orders", 422, json_body={**order, "quantity": 101}, headers=key)  # key reused
    send("POST", "/orders", 422, json_body={**order, "quantity": 1}, headers={"Idempotency-Key": "contract-3"})
    send("POST", "/orders", 413, body=b'{"service": 1, "link": "' + b"x" * 300_000 + b'"}',
         headers={"Idempotency-Key": "contract-4"})
    send("POST", "/orders", 415, body=b"service=1", headers={"content-type": "text/plain",
                                                             "Idempotency-Key": "contract-5"})
    panel.set_balance(Decimal("0.01"))
    send("POST", "/orders", 402, json_body={**order, "link": LINK + "poor/"},
         headers={"Idempotency-Key": "contract-6"})
    panel.set_balance(Decimal("100"))
    set_panel_timeout(gateway, monkeypatch)  # the panel times out only while it stalls
    panel.inject("add", "delay", seconds=STALL, after_commit=True)
    send("POST", "/orders", 504, json_body={**order, "link": LINK + "slow/"},
         headers={"Idempotency-Key": "contract-7"})
    send("POST", "/orders", 409, json_body={**order, "link": LINK + "slow/"},
         headers={"Idempotency-Key": "contract-7"})
    panel.inject("cancel", "delay", seconds=STALL)
    send("POST", f"/orders/{created['id']}/cancel", 504)
    set_panel_timeout(gateway, monkeypatch, DEFAULT_TIMEOUT)
    panel.inject("add", "html_502")
    send("POST", "/orders", 502, json_body={**order, "link": LINK + "garbled/"},
         headers={"Idempotency-Key": "contract-8"})
    # status, the ledger, refills and cancels
    order_id = created["id"]
    done = place_on_panel(panel, LINK + "done/")
    panel.advance(31)
    send("GET", f"/orders/{order_id}", 200)
    send("GET", "/orders/424242", 404)
    send("GET", "/orders/abc", 400)
    send("GET", f"/orders?ids={order_id},424242,{done}", 200)
    send("GET", "/orders?limit=2", 200)
    send("GET", "/orders?state=completed", 200)
    send("GET", "/orders?ids=1&limit=2", 400)
    refill = send("POST", f"/orders/{done}/refill", 201)
    send("POST", "/orders/424242/refill", 404)
    pending = place_on_panel(panel, LINK + "pending/")
    send("POST", f"/orders/{pending}/refill", 422)  # not finished yet: not eligible
    send("POST", "/refills", 200, json_body={"orders": [done, 424242]})
    send("POST", "/refills", 400, body=b"{not json")
    send("POST", "/refills", 415, body=b"x", headers={"content-type": "text/plain"})
    send("GET", f"/refills/{refill['id']}", 200)
    send("GET", "/refills/77777", 404)
    send("GET", f"/refills?ids={refill['id']},77777", 200)
    send("GET", "/refills", 400)
    send("POST", f"/orders/{pending}/cancel", 200)
    send("POST", f"/orders/{done}/cancel", 422)
    send("POST", "/orders/424242/cancel", 404)
    send("POST", "/orders/cancel", 200, json_body={"orders": [done, 424242]})
    send("POST", "/orders/cancel", 413, body=b'{"orders": [1], "pad": "' + b"x" * 300_000 + b'"}')
    # the event log
    events = send("GET", "/events?limit=2", 200)
    send("GET", f"/events/{events['events'][0]['id']}", 200)
    send("GET", "/events/evt_00000000000000000000000000", 404)
    send("GET", "/events?type=order.nope", 400)
    send("GET", "/events?cursor=nope", 400)
    # webhooks (to an address literal: no DNS), and what a caller can get wrong there
    hook = send("POST", "/webhooks", 201, json_body={"url": "https://93.184.215.14/contract", "events": ["order.*"]})
    send("POST", "/webhooks", 422, json_body={"url": "https://10.0.0.1/", "events": ["*"]})
    send("POST", "/webhooks", 400, json_body={"url": "https://93.184.215.14/", "events": []})
    send("GET", "/webhooks?url=https%3A%2F%2F93.184.215.14%2Fcontract", 200)
    send("GET", f"/webhooks/{hook['id']}", 200)
    send("POST", f"/webhooks/{hook['id']}/test", 202)
    (delivery,) = send("GET", f"/webhooks/{hook['id']}/deliveries", 200)["deliveries"]
    send("POST", f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", 202)
    send("DELETE", f"/webhooks/{hook['id']}", 204)
    send("GET", f"/webhooks/{hook['id']}", 404)
    panel.inject("balance", "html_502", times=3)
    send("GET", "/balance", 502)
    panel.stop()
    send("GET", "/balance", 503)

    assert send.problems == []
    operations = {(m, p) for p, item in built("openapi.json")["paths"].items() for m in item}
    succeeded = {(m, p) for m, p, status in send.pairs if status < 300}
    assert operations - succeeded == set()

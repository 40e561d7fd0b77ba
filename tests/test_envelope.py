"""What wraps every answer: the request id, one JSON access line, and no upstream key anywhere.

The key checks run every route, including its error paths, and look at each answer's
body and headers, at every log line (both before redaction, as `log_lines` shows it,
and as the gateway's own handler writes it), and at anything else written to
stdout/stderr.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Iterator

import pytest

from chalicelib import errors
from chalicelib.callers import record_for
from local.aws import EmbeddedAws, write_secret
from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import CALLER_KEY, OTHER_KEY

DISTINCTIVE_KEY = "pk_live_9fQ2xZr7LmWc4TnB8vKd"
LINK = "https://instagram.com/p/envelope"
ACCESS_FIELDS = {"time", "level", "logger", "message", "request_id", "method", "route", "status", "error",
                 "latency_ms", "upstream_ms", "upstream_calls", "caller"}


def access_lines(log_lines: Any) -> list[dict[str, Any]]:
    return [line for line in log_lines if line["logger"] == "chalicelib.access"]


@pytest.fixture
def gateway_stream(gateway: Any) -> Iterator[io.StringIO]:
    """What the gateway's own JSON log handler (the one Lambda sends to CloudWatch) writes.

    That handler keeps the stream it was configured with, under pytest a capture file
    out of `capfd`'s sight, so it is pointed at a buffer for the test.
    """
    handlers = [h for h in logging.getLogger("chalicelib").handlers
                if isinstance(h, logging.StreamHandler) and getattr(h, "_smm_gateway", False)]
    assert len(handlers) == 1
    buffer = io.StringIO()
    previous = handlers[0].setStream(buffer)
    yield buffer
    handlers[0].setStream(previous)


# -- the access line and the request id -------------------------------------------------------


def test_each_request_logs_one_json_access_line(client: Any, panel: SandboxPanel, log_lines: Any) -> None:
    # when
    balance = client.get("/balance")
    missing = client.get("/orders/424242", key=OTHER_KEY)
    refused = client.get("/balance", key="sgw_nobody")
    wrong_method = client.request("DELETE", "/balance")

    # then
    lines = access_lines(log_lines)
    assert [(line["method"], line["route"], line["status"], line["caller"]) for line in lines] == [
        ("GET", "/balance", 200, "alice"),
        ("GET", "/orders/{order_id}", 404, "bob"),
        ("GET", "/balance", 401, None),
        ("DELETE", "/balance", 405, None),
    ]
    for line, answer in zip(lines, (balance, missing, refused, wrong_method)):
        assert set(line) == ACCESS_FIELDS
        assert line["request_id"] == answer.headers["X-Request-Id"]
        assert isinstance(line["latency_ms"], (int, float)) and line["latency_ms"] >= 0
        assert isinstance(line["upstream_ms"], (int, float)) and line["upstream_ms"] >= 0
    assert [line["upstream_calls"] for line in lines] == [1, 1, 0, 0]
    assert lines[0]["upstream_ms"] > 0 and lines[2]["upstream_ms"] == 0


def test_the_access_line_names_the_error_code_it_answered_so_alarms_can_count_it(
        client: Any, panel: SandboxPanel, log_lines: Any) -> None:
    # given a panel whose answer to an order is lost (HTML instead of JSON)
    panel.inject("add", "html_200")

    # when
    client.get("/balance")
    client.get("/balance", key="sgw_nobody")
    unknown = client.post("/orders", json_body={"service": 1, "link": LINK, "quantity": 100},
                          headers={"Idempotency-Key": "envelope-unknown"})

    # then
    assert json.loads(unknown.body)["error"]["code"] == "outcome_unknown"
    assert [(line["status"], line["error"]) for line in access_lines(log_lines)] == [
        (200, None), (401, "unauthorized"), (unknown.status_code, "outcome_unknown")]


def test_the_request_id_of_an_error_body_is_its_header_and_its_log_line(client: Any, log_lines: Any) -> None:
    answers = [client.get("/orders/abc"), client.get("/refills/77"), client.get("/balance", key=None),
               client.post("/refills", body=b"x", headers={"content-type": "text/plain"})]
    ids = [answer.headers["X-Request-Id"] for answer in answers]
    assert [json.loads(answer.body)["request_id"] for answer in answers] == ids
    assert [line["request_id"] for line in access_lines(log_lines)] == ids
    assert len(set(ids)) == len(ids) and all(ids)


def test_upstream_time_adds_up_over_the_concurrent_calls_of_a_batch(client: Any, log_lines: Any) -> None:
    client.get("/orders?ids=" + ",".join(str(i) for i in range(1, 251)))
    line = access_lines(log_lines)[-1]
    assert (line["status"], line["upstream_calls"]) == (200, 3)
    assert 0 < line["upstream_ms"]


def test_a_retried_read_counts_every_attempt(client: Any, panel: SandboxPanel, log_lines: Any) -> None:
    panel.inject("balance", "http_500")
    assert client.get("/balance").status_code == 200
    assert access_lines(log_lines)[-1]["upstream_calls"] == 2


def test_the_gateways_own_log_stream_writes_the_same_json_lines(client: Any, gateway_stream: io.StringIO) -> None:
    answer = client.get("/balance")
    lines = [json.loads(text) for text in gateway_stream.getvalue().splitlines()]
    assert [(line["route"], line["status"], line["request_id"]) for line in lines] == [
        ("/balance", 200, answer.headers["X-Request-Id"])]


# -- the upstream key never leaves -------------------------------------------------------------------


def every_route(client: Any, panel: SandboxPanel, panel_key: str) -> list[Any]:
    """One request to each route, and the error paths a caller or the panel can cause."""
    answers: list[Any] = []

    def send(method: str, path: str, **kw: Any) -> Any:
        answers.append(client.request(method, path, **kw))
        return answers[-1]

    form = {"content-type": "application/x-www-form-urlencoded"}
    order = json.loads(send("POST", "/orders", json_body={"service": 1, "link": LINK, "quantity": 100},
                            headers={"Idempotency-Key": "envelope-1"}).body)["id"]
    send("POST", "/orders", json_body={"service": 1, "link": LINK, "quantity": 100},
         headers={"Idempotency-Key": "envelope-1"})  # replay
    send("POST", "/orders", body=f"service=2&link={LINK}/form&quantity=100",
         headers={**form, "Idempotency-Key": "envelope-2"})
    send("POST", "/orders", json_body={"service": 1, "link": LINK + "/x", "quantity": 100})  # no key
    send("POST", "/orders", json_body={"service": 1, "link": LINK + "/x", "quantity": 1},
         headers={"Idempotency-Key": "envelope-3"})  # out of range
    panel.advance(31)
    for path in ("/health", "/openapi.json", "/openapi.yaml", "/swagger.json"):
        send("GET", path, key=None)
    for path in ("/balance", "/services", "/services?type=Poll", "/services/1", "/services/999999",
                 "/services/abc", "/services?refill=maybe", f"/orders/{order}", "/orders/424242",
                 f"/orders?ids={order},5,{order}", "/orders?ids=1,,2", "/orders", "/orders?limit=2",
                 "/refills/1", "/refills/77", "/refills?ids=1,77", "/refills"):
        send("GET", path)
    send("POST", f"/orders/{order}/refill")
    send("POST", "/orders/424242/refill", headers=form)
    send("POST", "/refills", json_body={"orders": [order, 5]})
    send("POST", f"/orders/{order}/cancel")
    send("POST", "/orders/cancel", json_body={"orders": [order, 5]})
    # callers' mistakes
    send("POST", "/refills", body=b"{not json")
    send("POST", "/refills", body=b"[" * 50_000)
    send("POST", "/orders/cancel", body=b'{"orders": [1], "pad": "' + b"x" * 300_000 + b'"}')
    send("POST", "/orders/cancel", body=b"x", headers={"content-type": "text/plain"})
    send("DELETE", "/orders/1")
    send("GET", "/balance", key=None)
    send("GET", "/balance", key="sgw_wrong")
    send("GET", "/balance", key=panel_key)  # the panel's key offered as a caller key
    send("GET", f"/orders/{order}", headers={"x-api-key": CALLER_KEY, "authorization": f"Bearer {panel_key}"})
    # the panel failing in each way it can
    for fault in ("html_502", "html_200", "truncated_json", "reset", "http_500"):
        panel.inject("cancel", fault)
        send("POST", f"/orders/{order}/cancel")
    for text in ("Invalid API key", "Incorrect request"):
        panel.inject("*", "error", text=text)
        send("GET", "/balance")
    return answers


def assert_nowhere(key: str, answers: list[Any], logged: list[str], captured: tuple[str, str]) -> None:
    for answer in answers:
        assert key not in answer.body.decode("utf-8", "replace"), answer.body[:300]
        assert all(key not in f"{name}: {value}" for name, value in answer.headers.items()), answer.headers
    for text in logged:
        assert key not in text
    assert key not in captured[0] and key not in captured[1]


def test_the_sandbox_key_is_in_no_answer_and_no_log_line(
        client: Any, panel: SandboxPanel, log_lines: Any, gateway_stream: io.StringIO,
        capfd: pytest.CaptureFixture[str]) -> None:
    answers = every_route(client, panel, DEFAULT_KEY)

    assert {answer.status_code for answer in answers} >= {200, 201, 400, 401, 404, 405, 413, 415, 422, 502}
    assert len(access_lines(log_lines)) == len(answers)
    assert_nowhere(DEFAULT_KEY, answers, [log_lines.text, gateway_stream.getvalue()], capfd.readouterr())


@pytest.fixture
def distinctive_panel(resources: EmbeddedAws) -> Iterator[SandboxPanel]:
    """A sandbox with its own key, named in the secret the gateway reads."""
    with SandboxPanel(api_key=DISTINCTIVE_KEY, clock=None, services=300) as sandbox:
        write_secret(resources.client("secretsmanager"), sandbox.url, DISTINCTIVE_KEY,
                     [record_for("alice", CALLER_KEY), record_for("bob", OTHER_KEY)])
        yield sandbox


def test_a_distinctive_panel_key_is_in_no_answer_and_no_log_line(
        client: Any, distinctive_panel: SandboxPanel, log_lines: Any, gateway_stream: io.StringIO,
        capfd: pytest.CaptureFixture[str]) -> None:
    answers = every_route(client, distinctive_panel, DISTINCTIVE_KEY)

    assert {answer.status_code for answer in answers} >= {200, 201, 400, 401, 404, 405, 413, 415, 422, 502}
    assert distinctive_panel.add_calls >= 1  # the key was really used
    assert_nowhere(DISTINCTIVE_KEY, answers, [log_lines.text, gateway_stream.getvalue()], capfd.readouterr())


def test_a_panel_that_echoes_the_key_in_an_error_does_not_leak_it(
        client: Any, distinctive_panel: SandboxPanel, log_lines: Any) -> None:
    distinctive_panel.inject("balance", "error", text=f"Invalid API key: {DISTINCTIVE_KEY}")
    answer = client.get("/balance")
    assert answer.status_code == 502
    assert DISTINCTIVE_KEY not in answer.body.decode()
    assert DISTINCTIVE_KEY not in log_lines.text


# -- an unexpected exception: one error line, one answer in the one shape ----------------------


@pytest.fixture
def bare_client(gateway: Any) -> Iterator[Any]:
    """The chalice test client without `client`'s contract check: a 500 is a bug, not an
    answer openapi.yaml documents."""
    from chalice.test import Client

    with Client(gateway.app) as test_client:
        yield test_client


def crash_lines(log_lines: Any) -> list[dict[str, Any]]:
    return [line for line in log_lines if line["level"] == "error"]


def test_an_exception_in_a_view_is_logged_once_with_its_traceback_and_answered_500(
        bare_client: Any, panel: SandboxPanel, log_lines: Any, gateway_stream: io.StringIO,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given a bug: a helper of the route fails in a way nothing expects, its message
    # holding the caller key
    from chalicelib import http

    def broken(text: str, what: str = "id") -> int:
        raise ZeroDivisionError(f"parse_id broke on {text} while {CALLER_KEY} was presented")

    monkeypatch.setattr(http, "parse_id", broken)

    # when
    answer = bare_client.http.get("/orders/42", headers={"x-api-key": CALLER_KEY, "authorization": DEFAULT_KEY})

    # then one error line, with the traceback, the request id and the route, and no key
    request_id = answer.headers["X-Request-Id"]
    body = json.loads(answer.body)
    assert answer.status_code == 500
    assert body == {"error": {"code": "internal_error", "message": body["error"]["message"], "upstream": None},
                    "request_id": request_id}
    [crash] = crash_lines(log_lines)
    assert (crash["request_id"], crash["route"], crash["method"]) == (request_id, "/orders/{order_id}", "GET")
    assert "Traceback" in crash["exception"] and "ZeroDivisionError: parse_id broke on 42" in crash["exception"]
    assert [(line["status"], line["request_id"]) for line in access_lines(log_lines)] == [(500, request_id)]
    # the gateway's own stream writes the same two lines
    assert [json.loads(text)["level"] for text in gateway_stream.getvalue().splitlines()] == ["error", "info"]
    for text in (log_lines.text, gateway_stream.getvalue(), answer.body.decode()):
        assert CALLER_KEY not in text and DEFAULT_KEY not in text


def test_an_exception_outside_any_view_is_logged_once_and_answered_500(
        bare_client: Any, panel: SandboxPanel, log_lines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the envelope's own step failing after the view answered
    from chalicelib import http

    def broken(response: Any, request_id: str, **kw: Any) -> Any:
        raise RuntimeError("framework_error broke")

    monkeypatch.setattr(http, "framework_error", broken)

    answer = bare_client.http.get("/health")

    request_id = answer.headers["X-Request-Id"]
    assert answer.status_code == 500
    assert json.loads(answer.body)["error"]["code"] == "internal_error"
    assert json.loads(answer.body)["request_id"] == request_id
    [crash] = crash_lines(log_lines)
    assert (crash["request_id"], crash["route"]) == (request_id, "/health")
    assert "RuntimeError: framework_error broke" in crash["exception"]
    assert [line["status"] for line in access_lines(log_lines)] == [500]


def test_an_answer_the_json_encoder_refuses_is_logged_once_and_answered_500(
        bare_client: Any, panel: SandboxPanel, log_lines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a bug that lets a number of 5001 digits into an answer: json refuses to write it
    from chalicelib import values

    monkeypatch.setattr(values, "money", lambda value: 10 ** 5000)

    answer = bare_client.http.get("/balance", headers={"x-api-key": CALLER_KEY})

    # then the route's own crash handling answers it: the 500 shape, one crash line
    request_id = answer.headers["X-Request-Id"]
    assert answer.status_code == 500
    assert json.loads(answer.body) == {"error": {"code": "internal_error", "upstream": None,
                                                 "message": json.loads(answer.body)["error"]["message"]},
                                       "request_id": request_id}
    [crash] = crash_lines(log_lines)
    assert (crash["request_id"], crash["route"], crash["method"]) == (request_id, "/balance", "GET")
    assert "Exceeds the limit" in crash["exception"]
    assert [line["status"] for line in access_lines(log_lines)] == [500]


def test_an_answer_chalice_refuses_is_logged_once_and_answered_500(
        bare_client: Any, panel: SandboxPanel, log_lines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a bug that puts a newline into a header: Chalice itself refuses that answer
    from chalicelib import http

    error_answer = http.error_answer

    def broken(err: Any, request_id: str) -> Any:
        status, body, headers = error_answer(err, request_id)
        return status, body, {**headers, "X-Broken": "a\nb"}

    monkeypatch.setattr(http, "error_answer", broken)

    answer = bare_client.http.get("/orders/abc", headers={"x-api-key": CALLER_KEY})

    request_id = answer.headers["X-Request-Id"]
    assert answer.status_code == 500
    assert json.loads(answer.body)["error"]["code"] == "internal_error"
    assert json.loads(answer.body)["request_id"] == request_id
    [crash] = crash_lines(log_lines)
    assert (crash["request_id"], crash["route"], crash["method"]) == (request_id, "/orders/{order_id}", "GET")
    assert "Bad value for header 'X-Broken'" in crash["exception"]
    assert [line["status"] for line in access_lines(log_lines)] == [500]


# -- the input boundary: text that cannot be stored or sent is refused before anything is ---------


def lambda_event(method: str, resource: str, *, headers: list[tuple[str, str]],
                 query: dict[str, list[str]] | None = None, body: str | None = None) -> dict[str, Any]:
    """What API Gateway (REST, payload 1.0) hands the function for one request.

    A header sent more than once is in `multiValueHeaders` with every line, and in
    `headers` with the last line only."""
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        multi.setdefault(name, []).append(value)
    return {
        "resource": resource, "path": resource, "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": {name: values[-1] for name, values in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": "/api" + resource,
                           "stage": "api", "requestId": f"lambda-{len(multi)}-{resource}",
                           "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                           "identity": {"sourceIp": "203.0.113.9"}},
        "body": body, "isBase64Encoded": False,
    }


def invoke(gateway: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The function as Lambda calls it: status and JSON body of its answer."""
    from chalice.local import LambdaContext

    answer = gateway.app(event, LambdaContext("smm-gateway", 256, max_runtime_ms=28_000))
    return answer["statusCode"], json.loads(answer["body"])


def stored_items(resources: EmbeddedAws) -> list[Any]:
    from local.aws import TABLE

    return resources.client("dynamodb").scan(TableName=TABLE)["Items"]


LONE_SURROGATE_BODIES = {
    "in the link": b'{"service": 1, "link": "https://instagram.com/p/\\ud800", "quantity": 100}',
    "deep in a list": b'{"service": 4, "link": "https://instagram.com/p/x", "comments": ["a", "b\\udfff"]}',
    "in an object key": b'{"service": 1, "link": "https://instagram.com/p/x", "quantity": 100, "\\udc00": 1}',
    "a low surrogate first": b'{"service": 1, "link": "https://instagram.com/p/\\udc00\\ud800", "quantity": 100}',
}


def test_a_lone_surrogate_in_a_json_body_is_refused_before_the_key_is_claimed(
        client: Any, resources: EmbeddedAws, panel: SandboxPanel) -> None:
    # given bodies whose JSON escapes decode to text no UTF-8 encoder accepts
    for case, sent in LONE_SURROGATE_BODIES.items():
        # when
        refused = client.post("/orders", body=sent, headers={"Idempotency-Key": "surrogate-1"})

        # then nothing was claimed, so the key is still free
        assert refused.status_code == 400, (case, refused.body)
        assert json.loads(refused.body)["error"]["code"] == "validation_error", case
        assert stored_items(resources) == [], case
    retried = client.post("/orders", json_body={"service": 1, "link": LINK, "quantity": 100},
                          headers={"Idempotency-Key": "surrogate-1"})
    assert retried.status_code == 201, retried.body
    assert panel.add_calls == 1
    # a well-formed pair of escapes is one character, and welcome
    paired = client.post("/orders", body=b'{"service": 1, "link": "https://instagram.com/p/\\ud83d\\ude00",'
                                         b' "quantity": 100}', headers={"Idempotency-Key": "surrogate-2"})
    assert paired.status_code == 201, paired.body


DUPLICATE_KEY_BODIES = {
    "quantity": b'{"service": 1, "link": "https://instagram.com/p/x", "quantity": 100, "quantity": 200}',
    "link": b'{"link": "https://instagram.com/p/x", "service": 1, "quantity": 100, "link": "https://e.com/"}',
    "deep": b'{"service": 1, "link": "https://instagram.com/p/x", "quantity": 100, "x": [{"deep": 1, "deep": 1}]}',
}


@pytest.mark.parametrize("key", sorted(DUPLICATE_KEY_BODIES))
def test_a_json_body_with_a_key_sent_twice_is_400_naming_the_key_and_nothing_is_written(
        client: Any, resources: EmbeddedAws, panel: SandboxPanel, key: str) -> None:
    refused = client.post("/orders", body=DUPLICATE_KEY_BODIES[key], headers={"Idempotency-Key": "dup-key"})

    error = json.loads(refused.body)["error"]
    assert refused.status_code == 400 and error["code"] == "validation_error", refused.body
    assert json.dumps(key) in error["message"] and "twice" in error["message"]
    assert stored_items(resources) == [] and panel.add_calls == 0


def test_read_body_names_a_duplicate_key_at_any_depth() -> None:
    from chalicelib.http import read_body

    with pytest.raises(errors.ValidationError) as caught:
        read_body(b'{"a": {"b": [1, {"c": {"d": 1, "e": 2, "d": 3}}]}}', "application/json")

    assert caught.value.details == {"field": "d"}
    assert read_body(b'{"a": {"d": 1}, "b": {"d": 2}}', None) == {"a": {"d": 1}, "b": {"d": 2}}


def test_a_lone_surrogate_in_a_header_or_a_query_value_is_refused(client: Any, panel: SandboxPanel) -> None:
    for method, path, headers in (("GET", "/balance", {"x-note": "a\ud800"}),
                                  ("GET", "/services?q=\udfff", {}),
                                  ("GET", "/services?\ud800=x", {}),
                                  ("GET", "/health", {"x-note": "\ud800"})):
        answer = client.request(method, path, headers=headers, key=None if path == "/health" else "default")
        assert answer.status_code == 400, (path, headers, answer.body)
        assert json.loads(answer.body)["error"]["code"] == "validation_error"
    assert panel.calls == []


def test_a_lone_surrogate_anywhere_in_a_lambda_event_is_refused_before_anything_is_written(
        gateway: Any, resources: EmbeddedAws, panel: SandboxPanel) -> None:
    order = '{"service": 1, "link": "https://instagram.com/p/lambda", "quantity": 100}'
    keyed = [("X-API-Key", CALLER_KEY), ("Idempotency-Key", "lambda-1"), ("Content-Type", "application/json")]
    events = {
        "a header": lambda_event("POST", "/orders", headers=[*keyed, ("X-Note", "\ud800")], body=order),
        "a repeated header's first line": lambda_event(
            "POST", "/orders", headers=[*keyed, ("X-Note", "\ud800"), ("X-Note", "fine")], body=order),
        "a query value": lambda_event("GET", "/services", headers=keyed, query={"q": ["\udc00"]}),
        "the body text": lambda_event("POST", "/orders", headers=keyed, body=order.replace("lambda", "\ud800")),
    }
    for case, event in events.items():
        status, answer = invoke(gateway, event)
        assert status == 400 and answer["error"]["code"] == "validation_error", (case, answer)
    assert stored_items(resources) == [] and panel.calls == []
    status, answer = invoke(gateway, lambda_event("POST", "/orders", headers=keyed, body=order))
    assert status == 201, answer


# -- the caller key's header, as API Gateway hands it over ---------------------------------------


def test_a_caller_key_header_sent_twice_in_a_lambda_event_is_401(gateway: Any, panel: SandboxPanel) -> None:
    # API Gateway keeps only the last line in `headers`: "last one wins" would let a
    # wrong first key through, and a proxy adding its own line would pick the caller.
    for case, lines in {"the same key twice": [CALLER_KEY, CALLER_KEY],
                        "a wrong key, then a right one": ["sgw_wrong", CALLER_KEY],
                        "a right key, then a wrong one": [CALLER_KEY, "sgw_wrong"],
                        "two callers' keys": [OTHER_KEY, CALLER_KEY],
                        "names in two cases": [CALLER_KEY, CALLER_KEY]}.items():
        names = ["X-API-Key", "x-api-key"] if case == "names in two cases" else ["X-API-Key"] * 2
        status, answer = invoke(gateway, lambda_event("GET", "/balance", headers=list(zip(names, lines))))
        assert (status, answer["error"]["code"]) == (401, "unauthorized"), case
    status, answer = invoke(gateway, lambda_event("GET", "/balance", headers=[("X-API-Key", f" {CALLER_KEY}\t")]))
    assert status == 200, answer
    assert [name for name, _ in panel.calls] == ["balance"]


def test_an_idempotency_key_sent_twice_is_refused_and_a_retry_with_one_line_places_one_order(
        gateway: Any, panel: SandboxPanel) -> None:
    # API Gateway's `headers` holds only the last line; read as one value joined by ", "
    # the lines would be a key of their own, and a tool that duplicated the header and
    # later retried with one line would order twice.
    def place(*lines: tuple[str, str]) -> tuple[int, dict[str, Any]]:
        headers = [("X-API-Key", CALLER_KEY), ("Content-Type", "application/json"), *lines]
        order = {"service": 1, "link": "https://www.instagram.com/p/zap-77/", "quantity": 100}
        return invoke(gateway, lambda_event("POST", "/orders", headers=headers, body=json.dumps(order)))

    for case, lines in {"the same key twice": [("Idempotency-Key", "zap-77")] * 2,
                        "two keys": [("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")],
                        "names in two cases": [("Idempotency-Key", "zap-77"), ("idempotency-key", "zap-77")],
                        "an empty second line": [("Idempotency-Key", "zap-77"), ("Idempotency-Key", "")]}.items():
        status, answer = place(*lines)
        assert status == 400 and answer["error"]["code"] == "validation_error", (case, answer)
        assert "once" in answer["error"]["message"], case
    assert panel.add_calls == 0

    placed_status, placed = place(("Idempotency-Key", "zap-77"))
    retried_status, retried = place(("Idempotency-Key", " zap-77 "))
    assert (placed_status, placed["idempotency_key"]) == (201, "zap-77")
    assert (retried_status, retried["id"]) == (201, placed["id"])
    assert panel.add_calls == 1

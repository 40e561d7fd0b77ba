"""Property-based run of schemathesis against the gateway, driven by openapi.yaml.

The app runs in-process behind a WSGI adapter over `chalice.local.LocalGateway`
(what `chalice local` serves with), with the sandbox panel as upstream and moto as
AWS, so every generated request goes through the real routing, middleware, panel
client and DynamoDB code. The schema is the one the gateway serves at
`/openapi.json`. Each operation is its own test: a fresh panel and table each.

Checks: no 5xx for anything a caller can send, only documented status codes,
content types and headers, bodies valid against the response schemas, and invalid
requests (the negative mode) refused rather than accepted.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import CALLER_KEY

# Fuzzing examples per operation. With the explicit-example and coverage phases this is
# about 2,100 requests (110-740 per operation with inputs, 10 for the four without) in
# about a minute on one core; SCHEMATHESIS_EXAMPLES raises it for a deeper local run, and
# SCHEMATHESIS_STATS=<file> appends each operation's request count and seconds there.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "100"))
SPEC = Path(__file__).resolve().parent.parent / "chalicelib" / "openapi.json"
SEEDED_ORDERS = 5  # 23501..23505 exist, so the spec's examples reach real orders
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
CONFIG = """
[generation]
mode = "all"
deterministic = true
database = "none"
# Headers travel as latin-1 text; values outside it are not HTTP headers at all.
codec = "latin-1"
exclude-header-characters = "\\r\\n\\u0000"
# Every request carries the caller key (the 401 path is tested in test_contract.py),
# and no invented parameters: one with an empty value never reaches the wire, so
# the "invalid" request schemathesis believes it sent is a valid one.
with-security-parameters = false
allow-extra-parameters = false

# A refusal is a refusal: 413 (body over 256 KiB) is as right as 400 for invalid data.
[checks.negative_data_rejection]
expected-statuses = [400, 401, 404, 405, 413, 415, 422]

[phases.examples]
enabled = true
[phases.coverage]
enabled = true
[phases.fuzzing]
enabled = true
[phases.stateful]
enabled = false
"""


class ChaliceWsgi:
    """The Chalice app as a WSGI callable, through the same gateway `chalice local` uses."""

    def __init__(self, app: Any) -> None:
        from chalice.config import Config
        from chalice.local import LocalGateway

        self._gateway = LocalGateway(app, Config())
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from chalice.local import LocalGatewayException

        # The raw, still-encoded target, as `chalice local` receives it from the socket.
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"]
        if environ.get("QUERY_STRING") and "?" not in path:
            path += "?" + environ["QUERY_STRING"]
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        self.calls += 1
        try:
            answer = self._gateway.handle_request(environ["REQUEST_METHOD"], path, headers, body)
        except LocalGatewayException as exc:  # no such route: API Gateway's own 403
            start_response(f"{exc.CODE} Error", list(exc.headers.items()))
            return [exc.body]
        raw = answer["body"] or b""
        if answer.get("isBase64Encoded"):
            raw = base64.b64decode(raw)
        elif isinstance(raw, str):
            raw = raw.encode("utf-8")
        # Like `chalice local` and API Gateway, answer application/json unless told otherwise.
        headers = {"Content-Type": "application/json", **answer["headers"]}
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(map(str, values))
        start_response(f"{answer['statusCode']} -", [(k, str(v)) for k, v in headers.items()])
        return [raw]


@pytest.fixture
def app(panel: SandboxPanel, gateway: Any, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[ChaliceWsgi]:
    """The gateway over a fresh table and a sandbox holding a few orders."""
    from chalicelib.webhooks.targets import Targets

    def no_dns(host: str, port: int) -> list[str]:
        raise OSError("tests ask no DNS")  # a webhook URL naming a host is refused as unresolvable

    monkeypatch.setattr(gateway, "webhook_targets", lambda: Targets(resolve=no_dns))
    for n in range(SEEDED_ORDERS):
        panel.handle({"key": DEFAULT_KEY, "action": "add", "service": str(1 + n),
                      "link": f"https://www.instagram.com/seeded_{n}/", "quantity": "1000"})
    wsgi = ChaliceWsgi(gateway.app)
    started = time.perf_counter()
    yield wsgi
    if os.environ.get("SCHEMATHESIS_STATS"):
        with open(os.environ["SCHEMATHESIS_STATS"], "a") as out:
            out.write(f"{request.node.name}\t{wsgi.calls}\t{time.perf_counter() - started:.2f}\n")


# The document the gateway serves at /openapi.json (tests/test_contract.py checks
# that the served one is this file with `servers` rewritten).
schema = schemathesis.openapi.from_path(str(SPEC), config=SchemathesisConfig.from_str(CONFIG))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_gateway_keeps_its_contract_for_any_request(case: Any, app: ChaliceWsgi) -> None:
    case.call_and_validate(app=app, headers={"X-API-Key": CALLER_KEY}, checks=CHECKS)

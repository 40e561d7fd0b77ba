"""Shared fixtures: moto on loopback, a fresh sandbox panel, the app wired to both.

No test patches the gateway's own clients: the panel is the sandbox over real HTTP
and AWS is moto's server, with DynamoDB writes serialised (see local/aws.py).
"""

from __future__ import annotations

import io
import json
import logging
import os
from typing import Any, Iterator

import pytest

from chalicelib import logs
from chalicelib.callers import record_for
from local.aws import SECRET_ID, TABLE, EmbeddedAws, create_queue, create_table, write_secret
from sandbox import DEFAULT_KEY, SandboxPanel

CALLER_KEY = "sgw_test_caller_key_0123456789"
OTHER_KEY = "sgw_test_other_caller_key_9876"
# The gateway's panel timeout in tests: the production default, so that no test that
# is not about timing can time out on a loaded machine. A test that must see the panel
# time out stalls it for STALL seconds against SHORT_TIMEOUT (set_panel_timeout), which
# then applies only to the stalled calls: the stall outlasts the timeout under any
# load, and the panel's stop() ends it, so the test waits only for the timeout.
DEFAULT_TIMEOUT = 10.0
SHORT_TIMEOUT = 1.0
STALL = 30.0


@pytest.fixture(scope="session")
def aws() -> Iterator[EmbeddedAws]:
    embedded = EmbeddedAws().start()
    os.environ.update(embedded.environ())
    os.environ.update({"GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": SECRET_ID,
                       "SMM_TIMEOUT_SECONDS": str(DEFAULT_TIMEOUT), "CATALOGUE_TTL_SECONDS": "300"})
    yield embedded
    embedded.stop()


@pytest.fixture
def panel() -> Iterator[SandboxPanel]:
    sandbox = SandboxPanel(clock=None, services=300)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def resources(aws: EmbeddedAws, panel: SandboxPanel) -> EmbeddedAws:
    """An empty table and a secret pointing at this test's sandbox."""
    aws.reset()
    create_table(aws.client("dynamodb"))
    os.environ["WEBHOOK_QUEUE_URL"] = create_queue(aws.client("sqs"))
    write_secret(aws.client("secretsmanager"), panel.url, DEFAULT_KEY,
                 [record_for("alice", CALLER_KEY), record_for("bob", OTHER_KEY)])
    return aws


@pytest.fixture
def gateway(resources: EmbeddedAws) -> Iterator[Any]:
    """The Chalice app with fresh per-container caches."""
    import app as gateway_app

    fresh_containers(gateway_app)
    yield gateway_app
    fresh_containers(gateway_app)


def set_panel_timeout(gateway: Any, monkeypatch: pytest.MonkeyPatch, seconds: float = SHORT_TIMEOUT) -> None:
    """From now on the gateway's panel calls time out after `seconds`, except the
    catalogue's: it is fetched first, under the timeout so far, so a short timeout
    applies to the calls a test stalls and not to a 300-service download."""
    gateway.catalogue().snapshot()
    monkeypatch.setenv("SMM_TIMEOUT_SECONDS", str(seconds))
    fresh_containers(gateway, keep=KEPT_ACROSS_TESTS | {"catalogue"})


@pytest.fixture
def client(gateway: Any) -> Iterator[Any]:
    from chalice.test import Client

    with Client(gateway.app) as test_client:
        yield Api(test_client)


class LogLines:
    """The JSON lines the gateway logged so far in this test, read live."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([json.loads(line) for line in self.text.splitlines()])

    def __len__(self) -> int:
        return len(self.text.splitlines())


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """Every JSON line the gateway logs during the test (iterate, or read `.text`)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter(lambda: []))
    root = logging.getLogger("chalicelib")
    root.addHandler(handler)
    yield LogLines(stream)
    root.removeHandler(handler)


KEPT_ACROSS_TESTS = frozenset({"boto_client", "schemas"})


def fresh_containers(gateway_app: Any, keep: frozenset[str] = KEPT_ACROSS_TESTS) -> None:
    """Drop what a Lambda container caches, but keep its boto3 clients (they point at
    the session's one moto server, and building them is most of a test's setup time)
    and the compiled spec (it depends on nothing a test changes)."""
    for name in dir(gateway_app):
        getter = getattr(gateway_app, name)
        if name not in keep and callable(getattr(getter, "cache_clear", None)):
            getter.cache_clear()


class Api:
    """The chalice test client with the caller key set and JSON in and out."""

    def __init__(self, test_client: Any, key: str | None = CALLER_KEY) -> None:
        self._client = test_client
        self.key = key

    def request(self, method: str, path: str, *, json_body: Any = None, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, key: str | None = "default") -> Any:
        sent = {"content-type": "application/json"}
        if (key if key != "default" else self.key) is not None:
            sent["x-api-key"] = key if key != "default" else self.key
        sent.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
        return self._client.http.request(method, path, headers=sent, body=body or b"")

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


# -- every answer a test gets from `client` keeps openapi.yaml's contract ------------------


@pytest.fixture(autouse=True)
def answers_keep_the_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """Check each answer of the `client` fixture against its operation's documented response.

    A test that makes the gateway answer an undocumented status, content type or body
    fails at teardown, naming the answers. Unknown routes and methods are not checked.
    """
    if "client" not in request.fixturenames:
        yield
        return
    from tests.contract import problems

    api = request.getfixturevalue("client")
    if not isinstance(api, Api):  # a module's own `client` (tests/test_upstream.py: the panel client)
        yield
        return
    sent = api.request
    found: list[str] = []

    def checked(method: str, path: str, **kw: Any) -> Any:
        answer = sent(method, path, **kw)
        found.extend(problems(method, path, answer.status_code, answer.headers, answer.body))
        return answer

    api.request = checked
    yield
    assert not found, "answers outside openapi.yaml:\n" + "\n".join(found)

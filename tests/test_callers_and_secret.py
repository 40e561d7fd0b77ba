"""Caller keys (salted hashes, constant-time check) and the cached gateway secret.

The secret is read from moto's Secrets Manager; outages are injected with a botocore
`before-call` hook, and the max-age runs on a manual clock.
"""

from __future__ import annotations

import json
from decimal import Decimal
import uuid
from typing import Any, Iterator, Mapping

import pytest
import requests
from botocore.awsrequest import AWSResponse

from chalicelib import errors
from chalicelib.callers import Caller, identify, new_key, record_for
from chalicelib.secret import SecretSource, parse_secret
from chalicelib.upstream import PanelClient
from local.aws import SECRET_ID, EmbeddedAws, write_secret
from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import CALLER_KEY, DEFAULT_TIMEOUT, OTHER_KEY

MAX_AGE = 60.0
GET_SECRET = "before-call.secrets-manager.GetSecretValue"


class ManualClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class SecretsManagerTap:
    """Counts GetSecretValue calls and, while `down`, answers them with a 500."""

    def __init__(self) -> None:
        self.reads = 0
        self.down = False

    def __call__(self, **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.reads += 1
        if not self.down:
            return None
        return AWSResponse("https://secretsmanager", 500, {}, None), {
            "Error": {"Code": "InternalServiceError", "Message": "injected outage"},
            "ResponseMetadata": {"HTTPStatusCode": 500}}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def secretsmanager(aws: EmbeddedAws) -> Any:
    # One client for the module: building a boto3 client costs more than these tests.
    return aws.client("secretsmanager")


@pytest.fixture
def tap(secretsmanager: Any) -> Iterator[SecretsManagerTap]:
    found = SecretsManagerTap()
    secretsmanager.meta.events.register(GET_SECRET, found)
    yield found
    secretsmanager.meta.events.unregister(GET_SECRET, found)


@pytest.fixture
def secret_id(secretsmanager: Any) -> Iterator[str]:
    """A secret of this test's own, as the gateway's is: panel URL and key, caller hashes."""
    name = f"smm-gateway/test-{uuid.uuid4().hex}"
    write_secret(secretsmanager, "http://127.0.0.1:1/api/v2", DEFAULT_KEY,
                 [record_for("alice", CALLER_KEY), record_for("bob", OTHER_KEY)], secret_id=name)
    yield name
    try:
        secretsmanager.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    except secretsmanager.exceptions.ResourceNotFoundException:
        pass  # another test reset moto meanwhile


@pytest.fixture
def source(secretsmanager: Any, secret_id: str, tap: SecretsManagerTap, clock: ManualClock) -> SecretSource:
    return SecretSource(secretsmanager, secret_id, max_age=MAX_AGE, clock=clock)


def rotate(secretsmanager: Any, secret_id: str, url: str, key: str, callers: list[Any]) -> None:
    write_secret(secretsmanager, url, key, callers, secret_id=secret_id)


# -- caller keys ----------------------------------------------------------------------------


def test_a_caller_key_is_stored_only_as_a_salted_hash() -> None:
    key = new_key()
    first, second = record_for("alice", key), record_for("alice", key)

    assert set(first) == {"name", "salt", "hash"}
    assert key not in json.dumps(first) and key[4:] not in json.dumps(first)
    # salted: the same key gives unrelated records
    assert first["salt"] != second["salt"] and first["hash"] != second["hash"]
    assert identify(key, [first]) == identify(key, [second]) == Caller("alice")


def test_new_keys_are_long_random_and_prefixed() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(k.startswith("sgw_") and len(k) >= 40 for k in keys)


def test_the_stored_secret_never_holds_a_caller_key(secretsmanager: Any, secret_id: str) -> None:
    text = secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
    assert CALLER_KEY not in text and OTHER_KEY not in text
    callers = parse_secret(text).callers
    assert identify(CALLER_KEY, callers) == Caller("alice") and identify(OTHER_KEY, callers) == Caller("bob")


@pytest.mark.parametrize("presented", [None, "", " ", "sgw_unknown", CALLER_KEY.upper(), CALLER_KEY[:-1],
                                       CALLER_KEY + " ", " " + CALLER_KEY, CALLER_KEY + "\x00", "ключ",
                                       "\ud800", DEFAULT_KEY])
def test_an_unknown_or_empty_key_is_refused(presented: str | None) -> None:
    records = [record_for("alice", CALLER_KEY), record_for("bob", OTHER_KEY)]
    assert identify(presented, records) is None


def test_no_records_means_no_caller() -> None:
    assert identify(CALLER_KEY, []) is None


class CountingRecord(dict):  # type: ignore[type-arg]
    """A caller record that counts how often its hash is compared."""

    def __init__(self, record: Mapping[str, object], seen: list[str]) -> None:
        super().__init__(record)
        self._seen = seen

    def __getitem__(self, name: str) -> Any:
        if name == "hash":
            self._seen.append(super().__getitem__("name"))
        return super().__getitem__(name)


@pytest.mark.parametrize("presented", [CALLER_KEY, "sgw_no_such_key"])
def test_identify_checks_every_record_whether_or_not_one_matches(presented: str) -> None:
    # Stopping at the first match would tell, by timing, which record a key belongs to.
    seen: list[str] = []
    records = [CountingRecord(record_for(name, key), seen)
               for name, key in (("alice", CALLER_KEY), ("bob", OTHER_KEY), ("carol", new_key()))]
    identify(presented, records)  # type: ignore[arg-type]
    assert seen == ["alice", "bob", "carol"]


# -- the secret: cached, rotated, kept through outages ---------------------------------------------


def test_the_secret_is_read_once_per_max_age(source: SecretSource, tap: SecretsManagerTap,
                                             clock: ManualClock) -> None:
    for _ in range(10):
        source.get()
        source.panel()
        clock.now += MAX_AGE / 20
    assert tap.reads == 1
    clock.now += MAX_AGE
    source.get()
    assert tap.reads == 2


def test_a_rotation_is_picked_up_after_the_max_age(source: SecretSource, secretsmanager: Any, secret_id: str,
                                                   clock: ManualClock) -> None:
    # given a secret already read
    assert identify(CALLER_KEY, source.get().callers) == Caller("alice")
    new = new_key()
    rotate(secretsmanager, secret_id, "http://127.0.0.1:1/api/v2", "pk_rotated", [record_for("alice", new)])

    # when less than the max-age has passed, the old value still serves
    clock.now += MAX_AGE - 1
    assert identify(CALLER_KEY, source.get().callers) == Caller("alice")

    # then after it, the new one does
    clock.now += 2
    assert identify(new, source.get().callers) == Caller("alice")
    assert identify(CALLER_KEY, source.get().callers) is None
    assert source.panel().key == "pk_rotated"


def test_a_failed_refresh_keeps_serving_the_last_good_value(
        source: SecretSource, tap: SecretsManagerTap, clock: ManualClock, log_lines: Any) -> None:
    first = source.get()
    tap.down = True
    clock.now += MAX_AGE + 1

    assert source.get() is first
    assert tap.reads == 2
    assert any("secret refresh failed" in line["message"] for line in log_lines)
    # the failure is not retried on every request, only after another max-age
    source.get()
    assert tap.reads == 2
    tap.down = False
    clock.now += MAX_AGE + 1
    source.get()
    assert tap.reads == 3


def test_a_broken_rotation_keeps_the_last_good_value(source: SecretSource, secretsmanager: Any, secret_id: str,
                                                     clock: ManualClock) -> None:
    first = source.get()
    for broken in ('{"api_url": "ftp://x", "api_key": "k"}', "not json", '{"api_url": "http://x"}', '["a list"]'):
        secretsmanager.put_secret_value(SecretId=secret_id, SecretString=broken)
        clock.now += MAX_AGE + 1
        assert source.get() is first, broken


def test_without_any_value_the_configuration_is_unavailable(source: SecretSource, tap: SecretsManagerTap) -> None:
    tap.down = True
    with pytest.raises(errors.ConfigurationUnavailable) as raised:
        source.get()
    assert (raised.value.status, raised.value.code) == (503, "configuration_unavailable")
    # and the next request tries again, since there is nothing to serve meanwhile
    tap.down = False
    assert identify(CALLER_KEY, source.get().callers) == Caller("alice")


def test_a_missing_secret_is_unavailable_configuration(secretsmanager: Any, clock: ManualClock) -> None:
    with pytest.raises(errors.ConfigurationUnavailable):
        SecretSource(secretsmanager, "smm-gateway/no-such-secret", clock=clock).get()


def test_the_panel_key_is_not_shown_by_repr_and_not_read_before_use(source: SecretSource,
                                                                     tap: SecretsManagerTap) -> None:
    assert source.loaded_panel_key() is None and tap.reads == 0
    value = source.get()
    assert DEFAULT_KEY not in repr(value) and DEFAULT_KEY not in str(value)
    assert source.loaded_panel_key() == DEFAULT_KEY


@pytest.fixture
def rotated_panel() -> Iterator[SandboxPanel]:
    with SandboxPanel(api_key="pk_rotated_panel_key", clock=None, services=16) as sandbox:
        yield sandbox


def test_a_rotated_panel_key_reaches_the_panel_client_after_the_max_age(
        source: SecretSource, secretsmanager: Any, secret_id: str, clock: ManualClock,
        rotated_panel: SandboxPanel) -> None:
    # given the panel's key was rotated and the secret still holds the old one
    rotate(secretsmanager, secret_id, rotated_panel.url, DEFAULT_KEY, [])
    client = PanelClient(requests.Session(), source.panel, timeout=DEFAULT_TIMEOUT, sleep=lambda _: None)
    with pytest.raises(errors.UpstreamAuthFailed):
        client.balance()

    # when the secret is rotated too, the client uses the new key once the max-age has passed
    rotate(secretsmanager, secret_id, rotated_panel.url, "pk_rotated_panel_key", [])
    with pytest.raises(errors.UpstreamAuthFailed):
        client.balance()
    clock.now += MAX_AGE + 1
    assert client.balance()["currency"] == "USD"


# -- through the routes ------------------------------------------------------------------------------


def test_without_a_secret_every_protected_route_is_503_but_health_answers(
        client: Any, resources: EmbeddedAws, panel: SandboxPanel) -> None:
    resources.client("secretsmanager").delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)

    for path in ("/balance", "/services", "/orders/23501"):
        answer = client.get(path)
        assert answer.status_code == 503, answer.body
        found = json.loads(answer.body)
        assert found["error"]["code"] == "configuration_unavailable"
        assert found["request_id"] == answer.headers["X-Request-Id"]
    assert client.get("/health", key=None).status_code == 200
    assert panel.calls == []


def test_each_caller_is_known_by_its_own_key(client: Any, log_lines: Any) -> None:
    assert client.get("/balance").status_code == 200
    assert client.get("/balance", key=OTHER_KEY).status_code == 200
    assert client.get("/balance", key="sgw_nobody").status_code == 401
    callers = [line["caller"] for line in log_lines if line["logger"] == "chalicelib.access"]
    assert callers == ["alice", "bob", None]


def test_whitespace_around_the_caller_key_header_is_not_part_of_the_key(client: Any, panel: SandboxPanel) -> None:
    # RFC 9110 5.5: optional whitespace (spaces, tabs) around a field value is not part of it.
    for sent in (f" {CALLER_KEY}", f"{CALLER_KEY} ", f"\t{CALLER_KEY}\t", f"  \t{CALLER_KEY} \t "):
        answer = client.get("/balance", key=sent)
        assert answer.status_code == 200, (repr(sent), answer.body)
    for sent in (f"{CALLER_KEY[:8]} {CALLER_KEY[8:]}", f"{CALLER_KEY}\x0b", f"{CALLER_KEY}, {CALLER_KEY}"):
        assert client.get("/balance", key=sent).status_code == 401, repr(sent)


# -- what a key may do ------------------------------------------------------------------------------


def test_a_record_keeps_its_scopes_own_orders_only_and_caps() -> None:
    record = record_for("dash", CALLER_KEY, scopes=["orders:read", "balance:read"], own_orders_only=True,
                        max_order_charge="5", daily_spend_limit="20.50")

    assert identify(CALLER_KEY, [record]) == Caller("dash", frozenset({"orders:read", "balance:read"}), True,
                                                    Decimal("5"), Decimal("20.50"))


@pytest.mark.parametrize("restriction", [{"scopes": "orders:read"}, {"scopes": [1]}, {"own_orders_only": "yes"},
                                         {"max_order_charge": "-5"}, {"daily_spend_limit": "lots"},
                                         {"max_order_charge": 5}])
def test_a_record_whose_restrictions_cannot_be_read_is_refused_rather_than_served_unrestricted(
        restriction: dict[str, Any]) -> None:
    record = {**record_for("dash", CALLER_KEY), **restriction}
    text = json.dumps({"api_url": "http://127.0.0.1:1/api/v2", "api_key": "k", "callers": [record]})

    assert parse_secret(text).callers == []


def test_a_scope_this_version_does_not_know_grants_nothing() -> None:
    record = record_for("dash", CALLER_KEY, scopes=["orders:read"])
    record["scopes"].append("payments:write")

    caller = identify(CALLER_KEY, [record])
    assert caller is not None and caller.scopes == frozenset({"orders:read"})

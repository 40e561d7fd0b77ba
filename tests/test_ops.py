"""The operator commands (`python -m ops`) against moto, checked through the gateway itself.

Each test starts from what a fresh stack leaves behind: an empty table and a secret
that exists but has no value yet. Containers re-read the secret on every request
here (SECRET_MAX_AGE_SECONDS=0), so a change shows at the next request.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest

from local.aws import SECRET_ID, TABLE, EmbeddedAws, create_table
from chalicelib.callers import SCOPES, new_key, record_for
from ops import cli
from ops.secret_doc import OpsError, SecretDocument
from sandbox import DEFAULT_KEY, SandboxPanel
from tests.conftest import Api, fresh_containers

ROOT = Path(__file__).resolve().parent.parent
ORDER = {"service": 1, "link": "https://www.instagram.com/p/ops/", "quantity": 100}


def ops(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdin=io.StringIO(stdin), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def deployed(aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    aws.reset()
    create_table(aws.client("dynamodb"))
    aws.client("secretsmanager").create_secret(Name=SECRET_ID)  # as CloudFormation creates it: no value
    monkeypatch.setenv("SECRET_MAX_AGE_SECONDS", "0")
    import app as gateway_app

    fresh_containers(gateway_app)
    yield gateway_app
    fresh_containers(gateway_app)


@pytest.fixture
def http(deployed: Any) -> Iterator[Any]:
    from chalice.test import Client

    with Client(deployed.app) as test_client:
        yield test_client


@pytest.fixture
def configured(deployed: Any, panel: SandboxPanel) -> SandboxPanel:
    """The operator's first step after a deploy: point the secret at the panel."""
    code, _, err = ops("secret", "set", "--api-url", panel.url, "--api-key-stdin", stdin=DEFAULT_KEY + "\n")
    assert code == 0, err
    return panel


def new_caller(name: str = "zapier", *extra: str) -> str:
    code, out, err = ops("callers", "create", name, *extra)
    assert code == 0, err
    return out.strip()


def stored(aws: EmbeddedAws) -> dict[str, Any]:
    return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=SECRET_ID)["SecretString"])


# -- secret ------------------------------------------------------------------------


def test_a_new_caller_key_authenticates_at_the_gateway(configured: SandboxPanel, http: Any) -> None:
    key = new_caller()

    assert key.startswith("sgw_")
    assert Api(http, key=key).get("/balance").status_code == 200
    assert Api(http, key=key + "x").get("/balance").status_code == 401


def test_the_new_key_is_printed_once_and_only_its_hash_is_stored(configured: SandboxPanel,
                                                                 aws: EmbeddedAws) -> None:
    key = new_caller()

    (record,) = stored(aws)["callers"]
    assert record["name"] == "zapier" and key not in json.dumps(record)
    code, out, _ = ops("callers", "list")
    assert code == 0 and "name=zapier" in out and "created_at=20" in out
    assert key not in out and record["hash"] not in out


def test_secret_show_prints_a_fingerprint_never_the_panel_key(configured: SandboxPanel) -> None:
    new_caller()

    code, out, _ = ops("secret", "show")

    shown = json.loads(out)
    assert code == 0 and DEFAULT_KEY not in out
    assert shown["api_url"] == configured.url and shown["api_key"].startswith("sha256:")
    assert shown["callers"] == ["zapier"]


def test_a_rotated_panel_key_is_used_at_the_next_request_and_callers_stay(configured: SandboxPanel,
                                                                          http: Any) -> None:
    api = Api(http, key=new_caller())

    assert ops("secret", "set", "--api-key-stdin", stdin="not-the-panel-key\n")[0] == 0
    refused = api.get("/balance")
    assert ops("secret", "set", "--api-key-stdin", stdin=DEFAULT_KEY + "\n")[0] == 0

    assert refused.status_code == 502 and json.loads(refused.body)["error"]["code"] == "upstream_auth_failed"
    assert api.get("/balance").status_code == 200


def test_pointing_at_another_panel_changes_where_orders_go(configured: SandboxPanel, http: Any) -> None:
    api = Api(http, key=new_caller())
    with SandboxPanel(clock=None, services=300) as other:
        assert ops("secret", "set", "--api-url", other.url)[0] == 0

        answer = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "k-other"})

        assert answer.status_code == 201
        assert (configured.add_calls, other.add_calls) == (0, 1)


def test_verify_leaves_the_secret_alone_when_the_panel_refuses_the_key(configured: SandboxPanel,
                                                                        aws: EmbeddedAws) -> None:
    before = stored(aws)

    code, _, err = ops("secret", "set", "--api-key-stdin", "--verify", stdin="wrong-key\n")

    assert code == 1 and "error:" in err
    assert stored(aws) == before


def test_the_first_set_needs_both_url_and_key(deployed: Any, panel: SandboxPanel) -> None:
    code, _, err = ops("secret", "set", "--api-url", panel.url)

    assert code == 1 and "no panel key yet" in err


def test_a_write_racing_another_operator_changes_nothing(configured: SandboxPanel, aws: EmbeddedAws) -> None:
    doc = SecretDocument(aws.client("secretsmanager"), SECRET_ID)

    def meanwhile(data: dict[str, Any]) -> None:  # another operator writes between our read and write
        new_caller("other-operator")
        data["callers"].append({"name": "lost", "salt": "00", "hash": "00"})

    with pytest.raises(OpsError, match="changed while"):
        doc.update(meanwhile)

    assert [c["name"] for c in stored(aws)["callers"]] == ["other-operator"]


# -- callers -----------------------------------------------------------------------


def test_a_revoked_key_is_refused(configured: SandboxPanel, http: Any) -> None:
    api = Api(http, key=new_caller())
    assert api.get("/balance").status_code == 200

    code, out, _ = ops("callers", "revoke", "zapier")

    assert code == 0 and "name=zapier" in out
    assert api.get("/balance").status_code == 401


def test_a_key_rotates_without_downtime(configured: SandboxPanel, http: Any) -> None:
    old = new_caller()
    (old_id,) = [e["key_id"] for e in json.loads(ops("--json", "callers", "list")[1])]
    assert ops("callers", "create", "zapier")[0] == 1  # a second key must be asked for

    new = new_caller("zapier", "--additional")
    both = (Api(http, key=old).get("/balance").status_code, Api(http, key=new).get("/balance").status_code)
    assert ops("callers", "revoke", "zapier", "--key-id", old_id)[0] == 0

    assert both == (200, 200)
    assert Api(http, key=old).get("/balance").status_code == 401
    assert Api(http, key=new).get("/balance").status_code == 200


def test_a_caller_name_cannot_carry_the_tables_separator(configured: SandboxPanel) -> None:
    code, out, err = ops("callers", "create", "a#b")

    assert code == 1 and out == "" and "caller name" in err


# -- scopes and limits -------------------------------------------------------------


def test_create_with_json_prints_one_object_with_the_key_and_what_it_may_do(configured: SandboxPanel,
                                                                            http: Any) -> None:
    code, out, err = ops("--json", "callers", "create", "dashboard", "--scopes", "orders:read,services:read",
                         "--own-orders-only", "--daily-spend-limit", "25")

    created = json.loads(out)
    assert code == 0, err
    assert {"name", "key", "key_id", "scopes"} <= set(created)
    assert created["name"] == "dashboard" and created["scopes"] == ["services:read", "orders:read"]
    assert created["own_orders_only"] is True and created["daily_spend_limit"] == "25"
    api = Api(http, key=created["key"])
    assert api.get("/orders").status_code == 200
    refused = api.get("/balance")
    assert refused.status_code == 403
    assert json.loads(refused.body)["error"]["details"] == {"required_scope": "balance:read"}


def test_a_new_key_gets_every_scope_unless_told_otherwise(configured: SandboxPanel) -> None:
    code, out, _ = ops("--json", "callers", "create", "operator")

    assert code == 0 and json.loads(out)["scopes"] == list(SCOPES)
    assert json.loads(out)["own_orders_only"] is False and json.loads(out)["max_order_charge"] is None


@pytest.mark.parametrize("options", [["--scopes", "orders:delete"], ["--scopes", ""],
                                     ["--max-order-charge", "-1"], ["--daily-spend-limit", "lots"],
                                     ["--max-order-charge", "NaN"]])
def test_an_unknown_scope_or_an_amount_that_is_not_one_is_refused(configured: SandboxPanel, aws: EmbeddedAws,
                                                                 options: list[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        ops("callers", "create", "zapier", *options)

    assert refused.value.code == 2 and stored(aws)["callers"] == []


def test_list_shows_each_keys_scopes_and_limits_never_its_hash(configured: SandboxPanel, aws: EmbeddedAws) -> None:
    new_caller("reader", "--scopes", "orders:read", "--own-orders-only")
    new_caller("zapier", "--max-order-charge", "5", "--daily-spend-limit", "50")
    aws.client("secretsmanager").put_secret_value(SecretId=SECRET_ID, SecretString=json.dumps(
        {**stored(aws), "callers": [*stored(aws)["callers"], {"name": "old", "salt": "ab" * 16, "hash": "cd" * 32}]}))

    code, plain, _ = ops("callers", "list")
    listed = {e["name"]: e for e in json.loads(ops("--json", "callers", "list")[1])}

    assert code == 0 and "scopes=orders:read" in plain and "own_orders_only=True" in plain
    assert listed["reader"]["scopes"] == ["orders:read"] and listed["reader"]["own_orders_only"] is True
    assert (listed["zapier"]["max_order_charge"], listed["zapier"]["daily_spend_limit"]) == ("5", "50")
    assert listed["old"]["scopes"] == list(SCOPES)  # made before scopes: every one
    for record in stored(aws)["callers"]:
        assert record["hash"] not in plain and "hash" not in listed[record["name"]]


def test_update_changes_scopes_and_limits_and_the_key_stays_the_same(configured: SandboxPanel, http: Any,
                                                                     aws: EmbeddedAws) -> None:
    api = Api(http, key=new_caller())
    (key_id,) = [e["key_id"] for e in json.loads(ops("--json", "callers", "list")[1])]
    hashed = stored(aws)["callers"][0]["hash"]

    assert ops("callers", "update", "zapier", "--key-id", key_id, "--scopes", "orders:read,orders:write",
               "--max-order-charge", "0.05")[0] == 0
    balance = api.get("/balance")
    capped = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-cap"})  # 0.09
    assert ops("callers", "update", "zapier", "--max-order-charge", "none", "--scopes", "all")[0] == 0

    assert balance.status_code == 403
    assert capped.status_code == 422 and json.loads(capped.body)["error"]["code"] == "spending_limit_exceeded"
    assert api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-cap"}).status_code == 201
    assert api.get("/balance").status_code == 200
    assert stored(aws)["callers"][0]["hash"] == hashed and "max_order_charge" not in stored(aws)["callers"][0]


def test_update_needs_a_change_and_a_key_that_exists(configured: SandboxPanel) -> None:
    new_caller()

    assert "nothing to change" in ops("callers", "update", "zapier")[2]
    assert "no key of caller" in ops("callers", "update", "zapier", "--key-id", "00000000", "--all-orders")[2]
    assert "no key of caller" in ops("callers", "update", "nobody", "--all-orders")[2]


def test_a_rotated_key_keeps_the_scopes_and_limits_of_the_key_it_replaces(configured: SandboxPanel) -> None:
    new_caller("dashboard", "--scopes", "orders:read", "--own-orders-only", "--daily-spend-limit", "9")

    _, out, _ = ops("--json", "callers", "create", "dashboard", "--additional")
    _, widened, _ = ops("--json", "callers", "create", "dashboard", "--additional", "--scopes", "all")

    assert json.loads(out)["scopes"] == ["orders:read"] and json.loads(out)["own_orders_only"] is True
    assert json.loads(out)["daily_spend_limit"] == "9"
    assert json.loads(widened)["scopes"] == list(SCOPES) and json.loads(widened)["daily_spend_limit"] == "9"


def test_a_key_the_secret_has_no_room_for_is_refused_and_nothing_changes(configured: SandboxPanel,
                                                                        aws: EmbeddedAws) -> None:
    # given the secret holding 130 keys of the largest form (a 64-character name, every scope, both caps)
    doc = SecretDocument(aws.client("secretsmanager"), SECRET_ID)
    largest = {**record_for("n" * 64, new_key(), scopes=SCOPES, own_orders_only=True,
                            max_order_charge="99999.99", daily_spend_limit="999999.99"),
               "created_at": "2026-11-30T06:13:21+00:00"}
    doc.update(lambda data: data.setdefault("callers", []).extend([largest] * 130))
    before = stored(aws)

    code, _, err = ops("callers", "create", "n" * 64, "--additional", "--daily-spend-limit", "999999.99")

    assert code == 1 and "65536" in err
    assert stored(aws) == before


# -- orders ------------------------------------------------------------------------


def test_resolving_an_unknown_order_makes_its_key_replay_the_panels_order(configured: SandboxPanel,
                                                                          http: Any) -> None:
    api = Api(http, key=new_caller())
    configured.inject("add", "html_200", after_commit=True)  # placed on the panel, answer lost
    lost = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-1"})
    (placed,) = configured.orders

    code, out, _ = ops("--json", "orders", "unknown")
    (listed,) = json.loads(out)
    resolved = ops("orders", "resolve", "--caller", "zapier", "--key", "zap-1", "--order-id", str(placed))
    replay = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-1"})

    assert json.loads(lost.body)["error"]["code"] == "outcome_unknown"
    assert code == 0 and (listed["caller"], listed["idempotency_key"]) == ("zapier", "zap-1")
    assert resolved[0] == 0
    assert replay.status_code == 201 and json.loads(replay.body)["id"] == placed
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert configured.add_calls == 1
    assert json.loads(ops("--json", "orders", "unknown")[1]) == []


def test_releasing_an_unknown_order_lets_the_retry_place_it(configured: SandboxPanel, http: Any) -> None:
    api = Api(http, key=new_caller())
    configured.inject("add", "html_200")  # the panel placed nothing, but the gateway cannot know
    lost = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-2"})
    still_held = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-2"})

    code, _, _ = ops("orders", "resolve", "--caller", "zapier", "--key", "zap-2", "--release")
    retry = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-2"})

    assert (lost.status_code, still_held.status_code) == (502, 409)
    assert code == 0
    assert retry.status_code == 201 and list(configured.orders) == [json.loads(retry.body)["id"]]


def test_resolve_touches_only_keys_the_ledger_shows_as_unknown(configured: SandboxPanel, http: Any) -> None:
    api = Api(http, key=new_caller())
    done = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-3"})

    code, _, err = ops("orders", "resolve", "--caller", "zapier", "--key", "zap-3", "--release")

    assert done.status_code == 201
    assert code == 1 and "no unknown order" in err
    assert api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-3"}).headers.get(
        "Idempotent-Replayed") == "true"


@pytest.mark.parametrize("order_id", ["-5", "0", "1.5", "x", "", "9007199254740992", "+7", "\u0667"])
def test_resolve_takes_only_a_positive_integer_order_id(configured: SandboxPanel, http: Any,
                                                        capsys: pytest.CaptureFixture[str], order_id: str) -> None:
    # given an unknown outcome
    api = Api(http, key=new_caller())
    configured.inject("add", "html_200", after_commit=True)
    api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-9"})
    capsys.readouterr()

    # when the operator mistypes the panel's id
    with pytest.raises(SystemExit) as exited:
        ops("orders", "resolve", "--caller", "zapier", "--key", "zap-9", "--order-id", order_id)

    # then nothing is recorded: the key still answers outcome_unknown
    assert exited.value.code == 2
    assert "--order-id" in capsys.readouterr().err
    assert [e["idempotency_key"] for e in json.loads(ops("--json", "orders", "unknown")[1])] == ["zap-9"]


@pytest.mark.parametrize("order_id", [0, -5, True, 2**53])
def test_the_desk_refuses_to_record_an_order_id_that_is_not_a_positive_integer(
        configured: SandboxPanel, http: Any, deployed: Any, order_id: int) -> None:
    from chalicelib.errors import ValidationError

    api = Api(http, key=new_caller())
    configured.inject("add", "html_200", after_commit=True)
    api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-10"})

    with pytest.raises(ValidationError):
        cli._desk(TABLE).resolve("zapier", "zap-10", order_id)

    assert [e["idempotency_key"] for e in json.loads(ops("--json", "orders", "unknown")[1])] == ["zap-10"]


def test_releasing_an_unknown_order_gives_back_its_daily_spend(configured: SandboxPanel, http: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # given a daily cap with room for one order
    api = Api(http, key=new_caller())
    rate = Decimal(json.loads(api.get("/services/1").body)["rate"])
    monkeypatch.setenv("DAILY_SPEND_LIMIT", str(rate * ORDER["quantity"] / 1000 * Decimal("1.5")))
    configured.inject("add", "html_200")  # nothing placed, the outcome unknown: the day's room is taken
    lost = api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-4"})
    other = {**ORDER, "link": "https://www.instagram.com/p/ops-other/"}
    capped = api.post("/orders", json_body=other, headers={"Idempotency-Key": "zap-5"})

    # when the operator releases the unknown key
    code, _, err = ops("orders", "resolve", "--caller", "zapier", "--key", "zap-4", "--release")
    placed = api.post("/orders", json_body=other, headers={"Idempotency-Key": "zap-6"})

    # then its reservation is given back, so the day's cap has room again
    assert lost.status_code == 502
    assert json.loads(capped.body)["error"]["code"] == "spending_limit_exceeded"
    assert code == 0, err
    assert placed.status_code == 201


def test_unknown_reads_only_the_unsettled_entries_not_the_whole_ledger(configured: SandboxPanel,
                                                                       http: Any) -> None:
    # given a caller with many settled orders and one unknown
    api = Api(http, key=new_caller())
    for n in range(12):
        body = {**ORDER, "link": f"https://www.instagram.com/p/ops-{n}/"}
        assert api.post("/orders", json_body=body, headers={"Idempotency-Key": f"k-{n}"}).status_code == 201
    configured.inject("add", "html_200", after_commit=True)
    api.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "zap-lost"})
    read: list[dict[str, Any]] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        read.append(parsed)

    dynamodb = cli._client("dynamodb")  # the operator's own, not the function's
    dynamodb.meta.events.register("after-call.dynamodb.Query", count)
    try:
        code, out, _ = ops("--json", "orders", "unknown")
    finally:
        dynamodb.meta.events.unregister("after-call.dynamodb.Query", count)

    assert code == 0 and [e["idempotency_key"] for e in json.loads(out)] == ["zap-lost"]
    assert sum(page["ScannedCount"] for page in read) == 1


def stored_unknown(aws: EmbeddedAws, link: str, key: str = "zap-11") -> None:
    """A ledger entry as an older gateway may have written it, with `link` stored as is."""
    aws.client("dynamodb").put_item(TableName=TABLE, Item={
        "pk": {"S": "LEDGER#zapier"}, "sk": {"S": "2026-11-29T10:00:00.000Z#o1"}, "state": {"S": "unknown"},
        "idempotency_key": {"S": key}, "unsettled": {"S": "zapier"},
        "request": {"S": json.dumps({"service": 1, "link": link, "quantity": 100})},
        "estimated_charge": {"S": "0.09"}, "created_at": {"S": "2026-11-29T10:00:00.000Z"}})


def written_before_the_index(aws: EmbeddedAws, key: str, state: str, at: str) -> None:
    """A ledger entry as a gateway older than the `unsettled` index wrote it: without that attribute."""
    aws.client("dynamodb").put_item(TableName=TABLE, Item={
        "pk": {"S": "LEDGER#zapier"}, "sk": {"S": f"2026-11-29T10:00:{at}.000Z#{key}"}, "state": {"S": state},
        "idempotency_key": {"S": key}, "request": {"S": json.dumps(ORDER)},
        "estimated_charge": {"S": "0.09"}, "created_at": {"S": f"2026-11-29T10:00:{at}.000Z"}})


def test_backfill_lets_unknown_list_orders_claimed_before_the_index_once(configured: SandboxPanel,
                                                                          aws: EmbeddedAws) -> None:
    # given a ledger from before the index: two unknown orders and a settled one
    new_caller("zapier")
    new_caller("make")
    written_before_the_index(aws, "old-1", "unknown", "01")
    written_before_the_index(aws, "old-2", "unknown", "02")
    written_before_the_index(aws, "old-done", "completed", "03")
    assert json.loads(ops("--json", "orders", "unknown")[1]) == []

    # when
    code, out, err = ops("orders", "backfill-unsettled")

    # then
    assert code == 0, err
    assert out.splitlines() == ["caller=make  marked=0", "caller=zapier  marked=2"]
    listed = json.loads(ops("--json", "orders", "unknown")[1])
    assert [(e["caller"], e["idempotency_key"]) for e in listed] == [("zapier", "old-2"), ("zapier", "old-1")]
    settled = aws.client("dynamodb").get_item(
        TableName=TABLE, Key={"pk": {"S": "LEDGER#zapier"}, "sk": {"S": "2026-11-29T10:00:03.000Z#old-done"}})
    assert "unsettled" not in settled["Item"]
    code, out, _ = ops("--json", "orders", "backfill-unsettled", "--caller", "zapier")
    assert code == 0 and json.loads(out) == [{"caller": "zapier", "marked": 0, "entries": []}]


def strict_utf8() -> io.TextIOWrapper:
    """A stream like a terminal's stdout: text that UTF-8 cannot encode is an error."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_unknown_prints_stored_text_that_utf8_cannot_encode(configured: SandboxPanel, aws: EmbeddedAws,
                                                            as_json: bool) -> None:
    # given a ledger entry written before the gateway refused lone surrogates (the store
    # keeps the request as JSON, so the link's escape comes back as a lone surrogate)
    new_caller()
    stored_unknown(aws, "https://x.com/\ud800", key="zap-8")
    out = strict_utf8()

    # when
    code = cli.main([*(["--json"] if as_json else []), "orders", "unknown"], out=out, err=io.StringIO())

    # then the operator sees the entry, the unencodable characters escaped
    out.flush()
    printed = out.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert code == 0
    assert "https://x.com/\\ud800" in printed and "zap-8" in printed


def test_unknown_shows_control_and_format_characters_escaped_so_the_terminal_shows_what_is_stored(
        configured: SandboxPanel, aws: EmbeddedAws) -> None:
    # given a link that a terminal would show reversed, recoloured, on two lines or not at all
    new_caller()
    link = "https://x.com/\u202egpj.exe\u200b\x1b[31m\nkey=zap-0\r\x85\ufeff\U000e0041\u2028"
    stored_unknown(aws, link)

    # when
    code, plain, _ = ops("orders", "unknown")
    _, as_json, _ = ops("--json", "orders", "unknown")

    # then each character is shown as its escape, and the entry stays on one line
    assert code == 0
    assert plain.count("\n") == 1
    assert ("https://x.com/\\u202egpj.exe\\u200b\\u001b[31m\\u000akey=zap-0\\u000d\\u0085\\ufeff"
            "\\U000e0041\\u2028") in plain
    assert json.loads(as_json)[0]["link"] == link


def test_plain_output_keeps_ordinary_text_as_it_is(configured: SandboxPanel, aws: EmbeddedAws) -> None:
    new_caller()
    stored_unknown(aws, "https://x.com/caf\u00e9/\U0001f600/\u043f")

    code, plain, _ = ops("orders", "unknown")

    assert code == 0 and "https://x.com/caf\u00e9/\U0001f600/\u043f" in plain


# -- the module as operators run it ------------------------------------------------------


def test_runs_as_a_module_against_the_embedded_aws(configured: SandboxPanel, aws: EmbeddedAws) -> None:
    new_caller()
    env = {**os.environ, **aws.environ(), "GATEWAY_SECRET_ID": SECRET_ID, "GATEWAY_TABLE": TABLE}

    listed = subprocess.run([sys.executable, "-m", "ops", "callers", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    helped = subprocess.run([sys.executable, "-m", "ops", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert listed.returncode == 0 and "name=zapier" in listed.stdout
    assert aws.endpoint in listed.stderr  # the target is shown before anything happens
    assert helped.returncode == 0 and "callers" in helped.stdout and "resolve" in helped.stdout

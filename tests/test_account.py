"""The balance-low line: logged whenever the gateway reads a balance under BALANCE_LOW_THRESHOLD.

It is what the `balance-low` alarm counts (infra/resources.json, tests/test_infra.py).
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.account import Account, threshold

ORDER = {"service": 1, "link": "https://www.instagram.com/p/balance-low/", "quantity": 100}


def low_lines(log_lines: Any) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log_lines.text.splitlines()]
    return [line for line in lines if line["logger"] == "chalicelib.account" and line["message"] == "balance low"]


@pytest.mark.parametrize(("balance", "limit", "logged"), [
    ("99.99", "100", True), ("100", "100", False), ("100.01", "100", False), ("0", None, False)])
def test_reading_the_balance_logs_one_line_only_when_it_is_under_the_threshold(
        client: Any, panel: Any, log_lines: Any, monkeypatch: pytest.MonkeyPatch,
        balance: str, limit: str | None, logged: bool) -> None:
    # given
    if limit is None:
        monkeypatch.delenv("BALANCE_LOW_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("BALANCE_LOW_THRESHOLD", limit)
    panel.set_balance(Decimal(balance))

    # when
    answer = client.get("/balance")

    # then
    read = json.loads(answer.body)["balance"]
    assert answer.status_code == 200 and Decimal(read) == Decimal(balance)
    expected = [{"balance": read, "currency": "USD", "threshold": limit}] if logged else []
    assert [{k: line[k] for k in ("balance", "currency", "threshold")} for line in low_lines(log_lines)] == expected
    assert all(line["level"] == "warning" for line in low_lines(log_lines))


@pytest.mark.parametrize(("limit", "logged"), [("1000", True), ("10", False), (None, False)])
def test_the_account_currency_lookup_logs_a_low_balance_too(
        client: Any, panel: Any, log_lines: Any, monkeypatch: pytest.MonkeyPatch,
        limit: str | None, logged: bool) -> None:
    # given a panel balance of 500, read by the first order's currency lookup
    if limit is None:
        monkeypatch.delenv("BALANCE_LOW_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("BALANCE_LOW_THRESHOLD", limit)
    panel.set_balance(Decimal("500"))

    # when
    placed = client.post("/orders", json_body=ORDER, headers={"Idempotency-Key": "balance-low-1"})

    # then
    assert placed.status_code == 201 and json.loads(placed.body)["currency"] == "USD"
    lines = low_lines(log_lines)
    assert [(Decimal(line["balance"]), line["threshold"]) for line in lines] == (
        [(Decimal("500"), limit)] if logged else [])


def test_an_unreadable_threshold_is_logged_once_as_an_error_and_watches_nothing(
        client: Any, panel: Any, log_lines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setenv("BALANCE_LOW_THRESHOLD", "ten dollars")
    panel.set_balance(Decimal("1"))

    # when: two readings in one container
    answers = [client.get("/balance"), client.get("/balance")]

    # then both are answered, nothing is watched, and the setting's fault is one error line
    assert [a.status_code for a in answers] == [200, 200]
    assert low_lines(log_lines) == []
    lines = [json.loads(line) for line in log_lines.text.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert [(e["logger"], e["message"], e["value"]) for e in errors] == [
        ("chalicelib.account", "BALANCE_LOW_THRESHOLD unreadable: the balance is not watched", "ten dollars")]


@pytest.mark.parametrize("text", ["abc", "NaN", "Infinity", "-1", "1e30", "1,5"])
def test_a_threshold_that_is_not_an_amount_is_off(text: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="chalicelib.account"):
        assert threshold(text) is None
    assert len(caplog.records) == 1


@pytest.mark.parametrize(("text", "value"), [(None, None), ("", None), ("100", Decimal("100")),
                                             (" 0.50 ", Decimal("0.50"))])
def test_a_threshold_is_an_amount_or_unset(text: str | None, value: Decimal | None) -> None:
    assert threshold(text) == value


def test_the_balance_is_compared_as_a_decimal_not_as_text_or_float(caplog: pytest.LogCaptureFixture) -> None:
    account = Account(lambda: {"balance": "9.5", "currency": "EUR"}, Decimal("10"))  # "9.5" > "10" as text
    with caplog.at_level(logging.INFO, logger="chalicelib.account"):
        assert account.balance() == {"balance": "9.5", "currency": "EUR"}
    assert [r.getMessage() for r in caplog.records] == ["balance low"]

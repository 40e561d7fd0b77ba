"""Panel values in the one form callers get (upstream-api.md, "Values" and "statuses").

Money stays an exact decimal string, counts and ids become ints, and every spelling
of a status maps to one `state`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib import values

# -- money ------------------------------------------------------------------------


@pytest.mark.parametrize("sent, kept", [
    ("100.84292", "100.84292"),
    ("0.27819", "0.27819"),
    ("0.00000001", "0.00000001"),  # eight decimals, the most panels send
    ("0.90", "0.90"),  # trailing zeros are part of the panel's text
    (" 12.5 ", "12.5"),
    ("1000", "1000"),
    (Decimal("0.1"), "0.1"),  # JSON numbers arrive as Decimal, never as float
    (Decimal("1E-8"), "0.00000001"),  # and never in exponent form
    (42, "42"),
    ("-3.50", "-3.50"),  # a panel may show a debt
])
def test_money_is_kept_as_the_exact_decimal_string(sent: Any, kept: str) -> None:
    assert values.money(sent) == kept


def test_money_is_never_rounded_through_a_float() -> None:
    # 0.1 + 0.2 as floats is 0.30000000000000004; as text it must stay exact.
    total = Decimal(values.money("0.1")) + Decimal(values.money("0.2"))
    assert str(total) == "0.3"
    assert values.money("123456789.12345678") == "123456789.12345678"


@pytest.mark.parametrize("sent", [None, True, False, "", "abc", "NaN", "Infinity", "1,5", [], {}])
def test_unreadable_money_is_refused(sent: Any) -> None:
    with pytest.raises(ValueError):
        values.money(sent)


# -- counts -----------------------------------------------------------------------


@pytest.mark.parametrize("sent, count", [
    ("3572", 3572),
    (157, 157),
    (" 42 ", 42),
    (Decimal("12"), 12),
    (Decimal("12.0"), 12),
    ("2147483647", 2147483647),
    (0, 0),
    ("0", 0),
])
def test_counts_become_integers_from_strings_or_numbers(sent: Any, count: int) -> None:
    assert values.count(sent) == count


@pytest.mark.parametrize("sent", ["Unknown", "unknown", "", "  ", None, "n/a", "1.5", Decimal("1.5"),
                                  True, "NaN"])
def test_counts_that_are_not_whole_numbers_are_none(sent: Any) -> None:
    assert values.count(sent) is None


# -- ids --------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["23501", 23501, Decimal("23501"), " 23501 "])
def test_ids_become_integers_from_numbers_or_strings(sent: Any) -> None:
    assert values.identifier(sent) == 23501


@pytest.mark.parametrize("sent", ["0", 0, "-1", -7, "abc", "", None, True, "1.5", Decimal("1.5"), [1]])
def test_ids_that_are_not_positive_integers_are_refused(sent: Any) -> None:
    with pytest.raises(ValueError):
        values.identifier(sent)


# -- flags ------------------------------------------------------------------------


@pytest.mark.parametrize("sent, flag", [
    (True, True), (False, False), (1, True), (0, False), ("1", True), ("0", False),
    ("true", True), ("false", False), ("TRUE", True), (None, False),
])
def test_panel_booleans_read_in_every_spelling(sent: Any, flag: bool) -> None:
    assert values.flag(sent) is flag


# -- statuses ---------------------------------------------------------------------


@pytest.mark.parametrize("status, state", [
    ("Pending", "pending"),
    ("In progress", "in_progress"),
    ("In Progress", "in_progress"),
    ("in progress", "in_progress"),
    ("IN_PROGRESS", "in_progress"),
    ("Processing", "processing"),
    ("Completed", "completed"),
    ("completed", "completed"),
    ("Partial", "partial"),
    ("Canceled", "canceled"),
    ("Cancelled", "canceled"),
    ("canceled", "canceled"),
    ("Refunded", "canceled"),
    ("  Pending ", "pending"),
])
def test_every_order_status_spelling_maps_to_one_state(status: str, state: str) -> None:
    assert values.order_state(status) == state


@pytest.mark.parametrize("status", ["Fail", "Queued", "", "Something new"])
def test_an_order_status_never_seen_before_is_unknown(status: str) -> None:
    assert values.order_state(status) == "unknown"


@pytest.mark.parametrize("status, state", [
    ("Pending", "pending"),
    ("Awaiting", "pending"),
    ("In progress", "in_progress"),
    ("In Progress", "in_progress"),
    ("Refilling", "in_progress"),
    ("Completed", "completed"),
    ("completed", "completed"),
    ("Rejected", "rejected"),
    ("Error", "rejected"),
    ("Failed", "rejected"),
])
def test_every_refill_status_spelling_maps_to_one_state(status: str, state: str) -> None:
    assert values.refill_state(status) == state


def test_a_refill_status_never_seen_before_is_unknown() -> None:
    assert values.refill_state("Partially refilled") == "unknown"

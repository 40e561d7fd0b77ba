"""Panel values in the one form callers get (upstream-api.md, "Values" and "statuses").

Money stays an exact decimal string, counts and ids become ints, and every spelling
of a status maps to one `state`.
"""

from __future__ import annotations

import time
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


HUGE = ["1e5000", "1e100000", "1E999999999", "-1e999999999", Decimal("1E+999999999"), "1" * 5000,
        "0." + "0" * 5000 + "1", Decimal("1E-999999999"), "1e-30", 10 ** 5000]


def label(value: Any) -> str:
    """A short test id: pytest cannot even write 10**5000 out as one."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:20]}...({len(text)} chars)"


@pytest.mark.parametrize("sent", HUGE + [10 ** 18, "1000000000000000000"], ids=label)
def test_money_of_an_implausible_size_is_refused(sent: Any) -> None:
    with pytest.raises(ValueError) as raised:
        values.money(sent)
    assert len(str(raised.value)) < 200  # the message is not the blow-up either


@pytest.mark.parametrize("sent, kept", [
    ("999999999999999999.999999999999999999", "999999999999999999.999999999999999999"),
    ("0.1000000000000000000000000", "0.1"),  # trailing zeros past 18 places are not places
    (Decimal("5E+3"), "5000"),
])
def test_money_within_its_bounds_is_read_exactly(sent: Any, kept: str) -> None:
    assert values.money(sent) == kept


def test_huge_exponents_are_read_in_no_time() -> None:
    # an exponent is a few characters; writing its number out would be a billion digits
    started = time.monotonic()
    for sent in HUGE:
        values.count(sent)
        with pytest.raises(ValueError):
            values.identifier(sent)
    assert time.monotonic() - started < 2.0


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


@pytest.mark.parametrize("sent", HUGE + [2 ** 63, -2 ** 63 - 1, "9223372036854775808", Decimal("1E+19")],
                         ids=label)
def test_counts_beyond_the_contracts_int64_are_none(sent: Any) -> None:
    assert values.count(sent) is None


@pytest.mark.parametrize("sent", [2 ** 63 - 1, "9223372036854775807", -2 ** 63, Decimal("9.2E+18")])
def test_counts_at_the_edge_of_int64_are_read(sent: Any) -> None:
    assert values.count(sent) == int(sent)


# -- ids --------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["23501", 23501, Decimal("23501"), " 23501 "])
def test_ids_become_integers_from_numbers_or_strings(sent: Any) -> None:
    assert values.identifier(sent) == 23501


@pytest.mark.parametrize("sent", ["0", 0, "-1", -7, "abc", "", None, True, "1.5", Decimal("1.5"), [1],
                                  2 ** 53, "9007199254740992", "1" * 5000], ids=label)
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

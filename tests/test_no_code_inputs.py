"""What no-code tools send is read as meant, and what is refused is said for a person (issue 12).

Zapier and Make map fields as text ("100"), some tools send whole numbers as floats
(100.0), `curl -d` labels JSON as a form. Refusals name the field as the spec names
it and say what to send: no Python repr, no regular expression.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.schemas import Schemas
from tests.conftest import Api

LINK = "https://www.instagram.com/p/no_code/"
FORM = {"content-type": "application/x-www-form-urlencoded"}
# What jsonschema and Python say that a person should never read.
MACHINE_TALK = re.compile(r"is not of type|is a required property|does not match|Additional properties|"
                          r"is (less|greater) than|is too (long|short)|is not one of|non-empty|\^|\$'|"
                          r"\[\d+, |\{'|'\w+'")


def order(client: Api, body: Any, key: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    answer = client.post("/orders", json_body=body, headers={"Idempotency-Key": key, **kw.pop("headers", {})},
                         **kw)
    return answer.status_code, json.loads(answer.body)


def message(answer: Any) -> str:
    return json.loads(answer.body)["error"]["message"]


def last_add(panel: Any) -> dict[str, str]:
    return [params for action, params in panel.calls if action == "add"][-1]


# -- numbers and booleans as text -------------------------------------------------------------


def test_integer_fields_take_their_canonical_decimal_text(client: Api, panel: Any) -> None:
    status, placed = order(client, {"service": "1", "link": LINK, "quantity": "100"}, "text-numbers")

    assert status == 201, placed
    assert (placed["service"], placed["quantity"]) == (1, 100)
    assert (last_add(panel)["service"], last_add(panel)["quantity"]) == ("1", "100")


def test_whole_numbers_sent_as_floats_are_integers(client: Api, panel: Any) -> None:
    status, placed = order(client, {"service": 1.0, "link": LINK, "quantity": 100.0}, "float-numbers")

    assert status == 201, placed
    assert (placed["service"], placed["quantity"]) == (1, 100)
    assert last_add(panel)["quantity"] == "100"


def test_the_same_order_spelt_as_text_replays_the_first_answer(client: Api) -> None:
    first = order(client, {"service": 1, "link": LINK, "quantity": 100}, "same-meaning")
    again = order(client, {"service": "1", "link": LINK, "quantity": "100"}, "same-meaning")

    assert first == again and first[0] == 201


@pytest.mark.parametrize("sent, shown", [
    ("1e2", 'the text "1e2"'), ("100.5", 'the text "100.5"'), (" 100", 'the text " 100"'),
    ("0100", 'the text "0100"'), ("+100", 'the text "+100"'), ("", 'the text ""'), ("ten", 'the text "ten"'),
    (100.5, "100.5"), (True, "true"), ([100], "a list"),
])
def test_other_spellings_of_a_number_are_refused_saying_what_to_send(
        client: Api, panel: Any, sent: Any, shown: str) -> None:
    status, answer = order(client, {"service": 1, "link": LINK, "quantity": sent}, "odd-number")

    assert status == 400
    assert answer["error"]["message"] == f"quantity: must be a whole number, not {shown}."
    assert panel.add_calls == 0


def test_batch_ids_take_their_decimal_text(client: Api) -> None:
    answer = client.post("/orders/cancel", json_body={"orders": ["424242", 424243.0]})

    assert answer.status_code == 200
    assert [item["id"] for item in json.loads(answer.body)["orders"]] == [424242, 424243]


def test_boolean_fields_take_true_and_false_as_text() -> None:
    schemas = Schemas({"components": {"schemas": {"Flags": {
        "type": "object", "additionalProperties": False,
        "properties": {"enabled": {"type": "boolean"}, "count": {"type": "integer"}}}}}})

    assert schemas.checked("Flags", {"enabled": "true", "count": "3"}) == {"enabled": True, "count": 3}
    assert schemas.checked("Flags", {"enabled": "false"}) == {"enabled": False}
    with pytest.raises(errors.ValidationError) as refused:
        schemas.checked("Flags", {"enabled": "yes"})
    assert refused.value.message == 'enabled: must be true or false, not the text "yes".'


# -- mislabelled bodies ----------------------------------------------------------------------------


def test_json_sent_as_a_form_by_curl_d_is_read_as_json(client: Api, panel: Any) -> None:
    body = {"service": 4, "link": LINK, "comments": ["one", "two", "three", "four", "five"]}
    answer = client.post("/orders", body=json.dumps(body), headers={**FORM, "Idempotency-Key": "curl-d"})

    assert answer.status_code == 201, answer.body
    assert last_add(panel)["comments"] == "one\ntwo\nthree\nfour\nfive"


def test_a_json_list_item_holding_a_line_break_is_still_refused_when_labelled_a_form(
        client: Api, panel: Any) -> None:
    # Read as JSON, not as a form: a form's list field would be split at line breaks.
    body = {"service": 4, "link": LINK, "comments": ["one\ntwo", "three", "four", "five", "six"]}
    answer = client.post("/orders", body=json.dumps(body), headers={**FORM, "Idempotency-Key": "curl-d-lines"})

    assert answer.status_code == 400 and "comments[0]" in message(answer)
    assert panel.add_calls == 0


def test_a_form_sent_as_json_is_refused_naming_the_content_type_to_send(client: Api, panel: Any) -> None:
    answer = client.post("/orders", body=f"service=1&link={LINK}&quantity=100",
                         headers={"Idempotency-Key": "form-as-json"})

    assert answer.status_code == 400
    assert message(answer) == ("The body is not JSON but looks like a form (name=value&...); send it with "
                               "Content-Type: application/x-www-form-urlencoded, or send JSON.")
    assert panel.add_calls == 0


def test_a_form_sent_as_json_to_a_json_only_route_is_told_to_send_json(client: Api) -> None:
    answer = client.post("/orders/cancel", body="orders=23501")

    assert answer.status_code == 400
    assert message(answer) == "The body is not JSON but looks like a form (name=value&...); send JSON instead."


@pytest.mark.parametrize("path, accepted", [
    ("/orders", "application/json or application/x-www-form-urlencoded"),
    ("/orders/cancel", "application/json"),
    ("/orders/23501/cancel", "application/json or application/x-www-form-urlencoded"),
])
def test_an_unsupported_media_type_is_answered_listing_the_accepted_ones(
        client: Api, path: str, accepted: str) -> None:
    answer = client.post(path, body=b"hello", headers={"content-type": "Text/Plain; charset=utf-8",
                                                       "Idempotency-Key": "media"})

    assert answer.status_code == 415
    assert message(answer) == f"The Content-Type text/plain is not accepted here; send {accepted}."


# -- messages for people -----------------------------------------------------------------------------


def test_a_path_id_is_named_id_as_in_the_spec(client: Api) -> None:
    for path in ("/orders/abc", "/orders/0/refill", "/refills/x1", "/services/-3"):
        answer = client.post(path) if path.endswith("refill") else client.get(path)
        error = json.loads(answer.body)["error"]
        assert answer.status_code == 400, path
        assert error["message"].startswith("id: must be a whole number from 1 to 9007199254740991, not "), path


@pytest.mark.parametrize("method, path, body, expected", [
    ("POST", "/orders", [1, 2], "The body must be an object, not a list."),
    ("POST", "/orders", {"link": LINK}, "service: this field is required."),
    ("POST", "/orders", {"service": 1, "colour": "red"},
     "colour: not a field of this request; check the name against the API description."),
    ("POST", "/orders", {"service": 1, "quantity": 0}, "quantity: must be at least 1."),
    ("POST", "/orders", {"service": 1, "expiry": "2025-12-31"}, "expiry: must be written like 31/12/2025."),
    ("POST", "/orders", {"service": 1, "comments": ["a", ""]}, "comments[1]: must not be empty."),
    ("POST", "/refills", {"orders": [1, "x"]}, 'orders[1]: must be a whole number, not the text "x".'),
    ("POST", "/refills", {"orders": []}, "orders: must hold at least one item."),
    ("GET", "/orders?ids=23501,abc", None, "ids: must be written like 23501,23502,99."),
    ("GET", "/orders?state=done", None,
     "state: must be one of pending, in_progress, processing, completed, partial, canceled, unknown, submitting."),
    ("GET", "/orders?limit=101", None, "limit: must be at most 100."),
    ("GET", "/balance?curency=EUR", None,
     "curency: not a query parameter of this route (it takes none); check the name."),
])
def test_refusals_are_plain_english_naming_the_field_as_the_spec_does(
        client: Api, method: str, path: str, body: Any, expected: str) -> None:
    headers = {"Idempotency-Key": "plain"} if path == "/orders" else {}
    answer = client.request(method, path, json_body=body, headers=headers)

    assert answer.status_code == 400, answer.body
    assert message(answer) == expected
    assert not MACHINE_TALK.search(expected)


@pytest.mark.parametrize("body, says", [
    (b"[" * 100_000, "arrays or objects are nested too deeply"),
    (b'{"service": 1, "quantity": ' + b"9" * 5000 + b"}", "it holds a number with too many digits"),
    (b'{"service": 1, "quantity": NaN}', "NaN is not a JSON number"),
    (b'{"service": 1, "quantity": Infinity}', "Infinity is not a JSON number"),
    (b'{"service": 1,}', "expecting property name enclosed in double quotes at line 1, column 15"),
])
def test_a_body_that_is_not_json_is_refused_in_words_never_pythons(client: Api, panel: Any, body: bytes,
                                                                   says: str) -> None:
    answer = client.post("/orders", body=body, headers={"Idempotency-Key": "k-json",
                                                        "Content-Type": "application/json"})

    assert answer.status_code == 400 and message(answer) == f"The body is not valid JSON: {says}."
    assert panel.add_calls == 0


def test_a_json_body_opening_with_a_byte_order_mark_is_read(client: Api, panel: Any) -> None:
    body = b"\xef\xbb\xbf" + json.dumps({"service": 1, "link": "https://www.instagram.com/p/bom/",
                                         "quantity": 100}).encode()

    answer = client.post("/orders", body=body, headers={"Idempotency-Key": "k-bom",
                                                        "Content-Type": "application/json"})

    assert answer.status_code == 201 and panel.add_calls == 1

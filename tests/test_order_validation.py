"""Nothing invalid reaches the panel: per-type fields, ranges, links, caps (issue 3, part 4-5).

Service ids are the sandbox's fixed ones (see sandbox/catalogue.py).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import errors
from tests.ordering_kit import Rig, make_rig

LINK = "https://www.instagram.com/p/abc/"
LINES = ["one", "two", "three", "four", "five"]

VALID: dict[str, dict[str, Any]] = {
    "Default": {"service": 1, "link": LINK, "quantity": 100},
    "Default drip-feed": {"service": 1, "link": LINK, "quantity": 100, "runs": 3, "interval": 30},
    "Package": {"service": 3, "link": LINK},
    "Custom Comments": {"service": 4, "link": LINK, "comments": LINES},
    "Custom Comments Package": {"service": 5, "link": LINK, "comments": LINES},
    "Mentions": {"service": 6, "link": LINK, "quantity": 100, "usernames": ["a", "b"]},
    "Mentions with Hashtags": {"service": 7, "link": LINK, "quantity": 100, "usernames": ["a"],
                               "hashtags": ["#x"]},
    "Mentions Custom List": {"service": 8, "link": LINK, "usernames": ["a", "b", "c"]},
    "Mentions Hashtag": {"service": 9, "link": LINK, "quantity": 100, "hashtag": "#x"},
    "Mentions User Followers": {"service": 10, "link": LINK, "quantity": 100, "username": "someone"},
    "Mentions Media Likers": {"service": 11, "link": LINK, "quantity": 100, "media": "https://x.com/m/1"},
    "Comment Likes": {"service": 12, "link": LINK, "quantity": 100, "username": "someone"},
    "Poll": {"service": 13, "link": LINK, "quantity": 100, "answer_number": 2},
    "Invites from Groups": {"service": 14, "link": LINK, "quantity": 100, "groups": ["https://t.me/g"]},
    "Subscriptions": {"service": 15, "username": "someone", "min": 100, "max": 200, "delay": 0,
                      "posts": 3, "expiry": "31/12/2027"},
    "Web Traffic keyword": {"service": 16, "link": LINK, "quantity": 1000, "country": "US", "device": 1,
                            "type_of_traffic": 1, "google_keyword": "smm panel"},
    "Web Traffic referrer": {"service": 16, "link": LINK, "quantity": 1000, "country": "US", "device": 5,
                             "type_of_traffic": 2, "referring_url": "https://example.com/"},
    "Web Traffic blank": {"service": 16, "link": LINK, "quantity": 1000, "country": "US", "device": 2,
                          "type_of_traffic": 3},
}


@pytest.fixture
def rig(resources: Any, panel: Any) -> Rig:
    return make_rig(resources, panel.url)


def last_add(panel: Any) -> dict[str, str]:
    """What the panel's last `add` received (the first order of a desk also asks `balance`)."""
    return [params for action, params in panel.calls if action == "add"][-1]


def refusal(rig: Rig, body: Any, **kw: Any) -> errors.GatewayError:
    with pytest.raises(errors.GatewayError) as caught:
        rig.place(body, **kw)
    return caught.value


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_service_type_is_placed_with_its_fields(rig: Rig, panel: Any, name: str) -> None:
    answer = rig.place(VALID[name])

    assert answer.status == 201
    sent = last_add(panel)
    assert sent["service"] == str(VALID[name]["service"])
    for field, value in VALID[name].items():
        expected = "\n".join(value) if isinstance(value, list) else str(value)
        assert sent[field] == expected  # lists go one item per line


@pytest.mark.parametrize("body, field, code", [
    ({"service": 1, "quantity": 100}, "link", "validation_error"),
    ({"service": 1, "link": LINK}, "quantity", "validation_error"),
    ({"service": 3, "link": LINK, "quantity": 1}, "quantity", "validation_error"),
    ({"service": 4, "link": LINK, "comments": LINES, "quantity": 5}, "quantity", "validation_error"),
    ({"service": 2, "link": LINK, "quantity": 100, "runs": 2, "interval": 5}, "interval", "validation_error"),
    ({"service": 1, "link": LINK, "quantity": 100, "runs": 2}, "interval", "validation_error"),
    ({"service": 6, "link": LINK, "quantity": 100}, "usernames", "validation_error"),
    ({"service": 16, "link": LINK, "quantity": 1000, "country": "US", "device": 1, "type_of_traffic": 1},
     "google_keyword", "validation_error"),
    ({"service": 16, "link": LINK, "quantity": 1000, "country": "US", "device": 1, "type_of_traffic": 3,
      "referring_url": "https://e.com"}, "referring_url", "validation_error"),
    ({"service": 15, "username": "u", "min": 300, "max": 200, "delay": 0}, "min", "validation_error"),
    ({"service": 15, "username": "u", "min": 1, "max": 2, "delay": 0, "expiry": "31/02/2027"}, "expiry",
     "validation_error"),
    ({"service": 1, "link": "ftp://x.com/a", "quantity": 100}, "link", "validation_error"),
    ({"service": 1, "link": "https://x.com/a b", "quantity": 100}, "link", "validation_error"),
    ({"service": 1, "link": "https://", "quantity": 100}, "link", "validation_error"),
    ({"service": 1, "link": "https://x.com/" + "a" * 2100, "quantity": 100}, "link", "validation_error"),
    ({"service": 1, "link": LINK, "quantity": 100, "colour": "red"}, None, "validation_error"),
    ({"service": 1, "link": LINK, "quantity": "1e2"}, "quantity", "validation_error"),  # "100" is taken
    ({"service": 1, "link": LINK, "quantity": 100.5}, "quantity", "validation_error"),
    ({"service": 1, "link": LINK, "quantity": -5}, "quantity", "validation_error"),
    ({"service": True, "link": LINK, "quantity": 100}, "service", "validation_error"),
    ({"link": LINK, "quantity": 100}, None, "validation_error"),
    ({"service": 1, "link": LINK, "quantity": 49}, "quantity", "quantity_out_of_range"),
    ({"service": 1, "link": LINK, "quantity": 10001}, "quantity", "quantity_out_of_range"),
    ({"service": 4, "link": LINK, "comments": ["a", "b"]}, "comments", "quantity_out_of_range"),
    ({"service": 999999, "link": LINK, "quantity": 100}, "service", "unknown_service"),
])
def test_invalid_orders_are_refused_naming_the_field_and_nothing_is_sent(
        rig: Rig, panel: Any, body: dict[str, Any], field: str | None, code: str) -> None:
    refused = refusal(rig, body)

    assert refused.code == code
    assert refused.status == (400 if code == "validation_error" else 422)
    if field:
        assert field in refused.message
    assert panel.add_calls == 0 and rig.items() == []


def test_a_panel_slowed_by_a_loaded_machine_does_not_turn_a_refusal_into_a_timeout(
        rig: Rig, panel: Any) -> None:
    panel.inject("services", "delay", seconds=1.2)  # slower than the 0.5 s the rig once had

    assert refusal(rig, {"service": 1, "link": LINK, "quantity": 10001}).code == "quantity_out_of_range"


@pytest.mark.parametrize("body", [[], "text", 17, None, {"service": {"$gt": 1}}])
def test_a_body_that_is_not_an_order_object_is_refused(rig: Rig, panel: Any, body: Any) -> None:
    assert refusal(rig, body).code == "validation_error"
    assert panel.add_calls == 0


def test_form_lists_are_one_item_per_line(rig: Rig, panel: Any) -> None:
    rig.place({"service": "4", "link": LINK, "comments": "one\r\ntwo\nthree\n\nfour\nfive\n"}, form=True)

    assert last_add(panel)["comments"] == "one\ntwo\nthree\nfour\nfive"


def test_form_fields_that_are_not_numbers_are_refused(rig: Rig, panel: Any) -> None:
    refused = refusal(rig, {"service": "1", "link": LINK, "quantity": "ten"}, form=True)

    assert refused.code == "validation_error" and "quantity" in refused.message


@pytest.mark.parametrize("body, charge", [
    ({"service": 1, "link": LINK, "quantity": 1000}, "0.9"),
    ({"service": 1, "link": LINK, "quantity": 150}, "0.135"),
    ({"service": 1, "link": LINK, "quantity": 100, "runs": 3, "interval": 30}, "0.27"),
    ({"service": 3, "link": LINK}, "4.50"),
    ({"service": 4, "link": LINK, "comments": LINES}, "0.06"),
])
def test_the_answer_carries_the_estimated_charge_as_a_decimal_string(rig: Rig, body: dict[str, Any],
                                                                      charge: str) -> None:
    assert Decimal(rig.place(body).body["estimated_charge"]) == Decimal(charge)


def test_an_order_over_the_per_order_cap_is_refused_before_anything_is_written(resources: Any,
                                                                               panel: Any) -> None:
    rig = make_rig(resources, panel.url, max_order_charge=Decimal("1"))

    refused = refusal(rig, {"service": 1, "link": LINK, "quantity": 2000})  # 1.80
    placed = rig.place({"service": 1, "link": LINK, "quantity": 1000}, key="other")  # 0.90

    assert refused.code == "spending_limit_exceeded" and refused.status == 422
    assert placed.status == 201 and panel.add_calls == 1


def test_the_daily_cap_counts_placed_orders_and_frees_refused_ones(resources: Any, panel: Any) -> None:
    rig = make_rig(resources, panel.url, daily_spend_limit=Decimal("2"))
    order = {"service": 1, "link": "", "quantity": 1000}  # 0.90 each

    # a refused order gives its reservation back
    panel.set_balance(Decimal("0"))
    assert refusal(rig, {**order, "link": "https://x.com/0"}, key="k0").code == "insufficient_funds"
    panel.set_balance(Decimal("100"))
    rig.place({**order, "link": "https://x.com/1"}, key="k1")
    rig.place({**order, "link": "https://x.com/2"}, key="k2")
    over = refusal(rig, {**order, "link": "https://x.com/3"}, key="k3")
    other_caller = rig.place({**order, "link": "https://x.com/4"}, key="k4", caller="bob")
    rig.clock.advance(86400)
    next_day = rig.place({**order, "link": "https://x.com/5"}, key="k5")

    assert over.code == "spending_limit_exceeded"
    assert other_caller.status == 201 and next_day.status == 201
    assert panel.add_calls == 5  # k0 (refused by the panel), k1, k2, k4, k5


# -- links through the gateway: what urlsplit forgives or trips on ---------------------------

BAD_LINKS = {
    "NUL": "https://x.com/a\x00b", "CR": "https://x.com/a\rb", "LF": "https://x.com/a\nb",
    "tab": "https://x.com/a\tb", "a leading tab": "\thttps://x.com/a", "escape": "https://x.com/\x1b[0m",
    "unit separator": "https://x.com/\x1f", "DEL": "https://x.com/a\x7f", "a C1 control": "https://x.com/\x85",
    "port 0": "https://x.com:0/a", "port 65536": "https://x.com:65536/a", "port 99999": "https://x.com:99999/",
    "a negative port": "https://x.com:-1/", "a port that is not a number": "https://x.com:https/",
    "an unclosed IPv6 literal": "https://[::1/", "an unopened IPv6 literal": "https://::1]/",
    "an IPv6 literal that is not an address": "https://[zz::1]/", "an IPv4 address in brackets": "https://[127.0.0.1]/",
    "an IPv6 literal with a bad port": "https://[::1]:70000/",
    # urlsplit drops what stands next to a bracketed host
    "text after an IPv6 literal": "https://[::1]x/", "text before an IPv6 literal": "https://a[::1]/",
    "an IPv6 zone id": "https://[fe80::1%eth0]/", "an encoded IPv6 zone id": "https://[fe80::1%25eth0]/",
    "an empty IPv6 literal": "https://[]/", "an IPvFuture literal": "https://[v1.fe]/",
    "a percent-escape in the host": "https://%00/", "an encoded dot in the host": "https://x%2ecom/",
    "a backslash in the host": "https://x.com\\@evil.com/", "user information": "https://user:pass@x.com/",
    "an empty host with user information": "https://@/", "no authority": "https:x.com",
    "an empty authority": "https:///x", "a port with a sign": "https://x.com:+80/",
    "a port in other digits": "https://x.com:\u0668\u0660/", "a space before the port": "https://x.com: 80/",
    # invalid percent-encoding anywhere
    "a percent sign without hex digits": "https://x.com/%zz", "a percent sign at the end": "https://x.com/%",
    "a percent sign with one hex digit": "https://x.com/a%4", "a bad escape in the query": "https://x.com/?q=%g1",
    "a bad escape in the fragment": "https://x.com/#%",
    # invisible format characters (Unicode Cf)
    "a zero-width space": "https://x.com/a\u200bb", "a right-to-left override": "https://x.com/\u202egpj.exe",
    "a byte order mark": "https://x.com/\ufeff", "a leading byte order mark": "\ufeffhttps://x.com/",
    "a zero-width space in the host": "https://x\u200b.com/", "a soft hyphen": "https://x.com/a\u00adb",
    "a line separator": "https://x.com/a\u2028b",
}


@pytest.mark.parametrize("case", sorted(BAD_LINKS))
def test_a_malformed_link_is_400_naming_link_and_nothing_is_written(
        client: Any, resources: Any, panel: Any, case: str) -> None:
    answer = client.post("/orders", json_body={"service": 1, "link": BAD_LINKS[case], "quantity": 100},
                         headers={"Idempotency-Key": "bad-link"})

    assert_refused_naming_link(answer, resources, panel)


BAD_FORM_LINKS = {
    "bytes that are not UTF-8": "https%3A%2F%2Fx.com%2F%ff",
    "an encoded surrogate": "https%3A%2F%2Fx.com%2F%ED%A0%80",
    "a truncated UTF-8 sequence": "https://x.com/%E2%82",
    "a percent sign without hex digits": "https://x.com/100%zz",
    "a percent sign at the end": "https://x.com/a%",
    "a percent sign with one digit": "https://x.com/a%4",
    "an encoded NUL": "https://x.com/a%00b",
    "an encoded line feed": "https://x.com/a%0Ab",
}


@pytest.mark.parametrize("case", sorted(BAD_FORM_LINKS))
def test_a_form_link_with_invalid_percent_encoding_is_400_naming_link(
        client: Any, resources: Any, panel: Any, case: str) -> None:
    answer = client.post("/orders", body=f"service=1&link={BAD_FORM_LINKS[case]}&quantity=100",
                         headers={"Idempotency-Key": "bad-form-link",
                                  "content-type": "application/x-www-form-urlencoded"})

    assert_refused_naming_link(answer, resources, panel)


def test_a_well_formed_form_link_is_decoded_and_ordered(client: Any, panel: Any) -> None:
    sent = "https%3A%2F%2Fx.com%2Fp%2F%C3%A9t%C3%A9%3Fa%3D1%2B2"
    answer = client.post("/orders", body=f"service=1&link={sent}&quantity=100",
                         headers={"Idempotency-Key": "good-form-link",
                                  "content-type": "application/x-www-form-urlencoded"})

    assert answer.status_code == 201, answer.body
    assert panel.calls[-1][1]["link"] == "https://x.com/p/\u00e9t\u00e9?a=1+2"


@pytest.mark.parametrize("link", ["https://x.com:1/a", "https://x.com:65535/a", "http://[::1]:8080/a",
                                  "https://[2001:db8::1]/p", "https://x.com:/a", "https://[::1]:/a",
                                  "https://[::ffff:1.2.3.4]/", "https://[2001:DB8::1]/", "https://x.com:080/"])
def test_edge_ports_and_ipv6_literals_pass_the_link_check(rig: Rig, panel: Any, link: str) -> None:
    assert rig.place({"service": 1, "link": link, "quantity": 100}).status == 201


@pytest.mark.parametrize("link", [
    "HTTPS://WWW.INSTAGRAM.COM/p/abc/", "http://x.com", "https://127.0.0.1/p", "https://xn--80ak6aa92e.com/",
    "https://\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444/", "https://x.com/p/\u00e9t\u00e9?a=1+2",
    "https://x.com/a%20b%2Fc?q=%E2%82%AC#frag%41", "https://x.com/\U0001f600", "https://x.com/?a=[1]&b=@c",
    "https://my-site.example.co.uk./path;p=1?q#f", "https://x.com/p?next=https://y.com/%3Fa%3D1",
])
def test_ordinary_links_pass_the_link_check(rig: Rig, panel: Any, link: str) -> None:
    assert rig.place({"service": 1, "link": link, "quantity": 100}).status == 201
    assert last_add(panel)["link"] == link


@pytest.mark.parametrize("case", sorted(BAD_LINKS))
def test_the_link_check_names_link_as_the_field(rig: Rig, case: str) -> None:
    refused = refusal(rig, {"service": 1, "link": BAD_LINKS[case], "quantity": 100})

    assert refused.code == "validation_error" and refused.details == {"field": "link"}


def assert_refused_naming_link(answer: Any, resources: Any, panel: Any) -> None:
    from local.aws import TABLE

    assert answer.status_code == 400, answer.body
    error = json.loads(answer.body)["error"]
    assert error["code"] == "validation_error" and error["message"].startswith("link"), error
    assert panel.add_calls == 0
    assert resources.client("dynamodb").scan(TableName=TABLE)["Items"] == []


# -- list fields: the lines the panel counts are the items the gateway priced ---------------

def post_order(client: Any, body: Any, key: str = "list-item") -> Any:
    return client.post("/orders", json_body=body, headers={"Idempotency-Key": key})


def assert_refused_naming(answer: Any, resources: Any, panel: Any, field: str) -> None:
    from local.aws import TABLE

    assert answer.status_code == 400, answer.body
    error = json.loads(answer.body)["error"]
    assert error["code"] == "validation_error" and error["message"].startswith(field + " "), error
    assert panel.add_calls == 0
    assert resources.client("dynamodb").scan(TableName=TABLE)["Items"] == []


# Each would be split by the panel into more (or fewer) lines than the items priced.
BAD_ITEMS = {
    "a line feed": "a\nb", "a carriage return": "a\rb", "CRLF": "a\r\nb", "a vertical tab": "a\x0bb",
    "a form feed": "a\x0cb", "a file separator": "a\x1cb", "a NEL": "a\x85b", "a line separator": "a\u2028b",
    "a paragraph separator": "a\u2029b", "a NUL": "a\x00b", "a tab": "a\tb", "DEL": "a\x7fb",
    "only spaces": "   ", "only a no-break space": "\u00a0",
}
LIST_ORDERS = {
    "Custom Comments": ({"service": 4, "link": LINK}, "comments"),
    "Mentions Custom List": ({"service": 8, "link": LINK}, "usernames"),
    "Mentions": ({"service": 6, "link": LINK, "quantity": 100}, "usernames"),
    "Mentions with Hashtags": ({"service": 7, "link": LINK, "quantity": 100, "usernames": ["a"]}, "hashtags"),
    "Invites from Groups": ({"service": 14, "link": LINK, "quantity": 100}, "groups"),
}


@pytest.mark.parametrize("item", sorted(BAD_ITEMS))
@pytest.mark.parametrize("kind", sorted(LIST_ORDERS))
def test_a_list_item_the_panel_would_count_as_other_lines_is_400_naming_it_and_nothing_is_sent(
        client: Any, resources: Any, panel: Any, kind: str, item: str) -> None:
    base, field = LIST_ORDERS[kind]
    items = ["one", "two", BAD_ITEMS[item], "four", "five"]

    answer = post_order(client, {**base, field: items})

    assert_refused_naming(answer, resources, panel, f"{field}[2]")


def test_comments_holding_many_lines_cannot_order_more_than_was_priced(client: Any, resources: Any,
                                                                        panel: Any) -> None:
    # the probe's case: 5 items of 100 lines each, priced as 5 comments, counted by the panel as 500
    comments = ["\n".join(f"comment {n}.{line}" for line in range(100)) for n in range(5)]

    answer = post_order(client, {"service": 4, "link": LINK, "comments": comments})

    assert_refused_naming(answer, resources, panel, "comments[0]")


def test_usernames_holding_many_lines_cannot_order_more_than_was_priced(client: Any, resources: Any,
                                                                         panel: Any) -> None:
    usernames = ["alice", "bob\ncarol\ndave"]

    answer = post_order(client, {"service": 8, "link": LINK, "usernames": usernames})

    assert_refused_naming(answer, resources, panel, "usernames[1]")


def test_the_refused_item_is_named_in_the_details(rig: Rig, panel: Any) -> None:
    refused = refusal(rig, {"service": 8, "link": LINK, "usernames": ["a", "b", "c\nd"]})

    assert refused.details == {"field": "usernames[2]"} and panel.add_calls == 0


def test_list_items_with_emoji_and_inner_spaces_are_one_line_each(rig: Rig, panel: Any) -> None:
    # a zero-width joiner (format character) is part of an emoji, not a line break
    comments = ["Great shot! \U0001f468\u200d\U0001f469\u200d\U0001f467", "  padded  ", "é\u00a0x", "4", "5"]

    answer = rig.place({"service": 4, "link": LINK, "comments": comments})

    assert answer.status == 201 and answer.body["quantity"] == 5
    assert last_add(panel)["comments"].split("\n") == comments


def test_a_form_list_with_a_control_character_in_a_line_is_400_naming_the_item(
        client: Any, resources: Any, panel: Any) -> None:
    answer = client.post("/orders", body=f"service=4&link={LINK}&comments=one%0Atwo%0Ath%00ree%0Afour%0Afive",
                         headers={"Idempotency-Key": "form-list",
                                  "content-type": "application/x-www-form-urlencoded"})

    assert_refused_naming(answer, resources, panel, "comments[2]")


def test_json_and_form_count_the_same_lines(rig: Rig, panel: Any) -> None:
    # the form splits on line breaks and drops blank lines; the JSON items that would
    # do either are refused, so what is priced is what the panel counts either way
    placed = rig.place({"service": 4, "link": LINK, "comments": "one\r\ntwo\x0bthree\n \nfour\u2028five"},
                       form=True)

    assert placed.body["quantity"] == 5
    assert last_add(panel)["comments"] == "one\ntwo\nthree\nfour\nfive"


# -- every text field: nothing the panel would read differently --------------------------

TEXT_FIELDS = {  # (valid order by type, the text field to spoil)
    "username": ("Mentions User Followers", "username"),
    "subscription username": ("Subscriptions", "username"),
    "hashtag": ("Mentions Hashtag", "hashtag"),
    "media": ("Mentions Media Likers", "media"),
    "google_keyword": ("Web Traffic keyword", "google_keyword"),
    "country": ("Web Traffic blank", "country"),
    "referring_url": ("Web Traffic referrer", "referring_url"),
}
CONTROLS = {"LF": "\n", "CRLF": "\r\n", "NUL": "\x00", "tab": "\t", "escape": "\x1b", "DEL": "\x7f",
            "NEL": "\x85", "a C1 control": "\x9b"}


@pytest.mark.parametrize("control", sorted(CONTROLS))
@pytest.mark.parametrize("case", sorted(TEXT_FIELDS))
def test_a_control_character_in_any_text_field_is_400_naming_it_and_nothing_is_sent(
        rig: Rig, panel: Any, case: str, control: str) -> None:
    kind, field = TEXT_FIELDS[case]
    body = {**VALID[kind], field: VALID[kind][field][:-1] + CONTROLS[control] + VALID[kind][field][-1:]}

    refused = refusal(rig, body)

    assert refused.code == "validation_error" and refused.details == {"field": field}
    assert panel.add_calls == 0 and rig.items() == []


@pytest.mark.parametrize("referrer", ["ftp://e.com/", "e.com/page", "https://e.com/a b", "https://e.com:0/",
                                      "https://[::1/", "https://"])
def test_the_referring_url_is_checked_as_a_link(rig: Rig, panel: Any, referrer: str) -> None:
    refused = refusal(rig, {**VALID["Web Traffic referrer"], "referring_url": referrer})

    assert refused.code == "validation_error" and refused.details == {"field": "referring_url"}
    assert refused.message.startswith("referring_url") and panel.add_calls == 0


def test_a_control_character_in_a_username_is_refused_through_the_gateway(client: Any, resources: Any,
                                                                          panel: Any) -> None:
    answer = post_order(client, {**VALID["Mentions User Followers"], "username": "a\nb"}, key="ctl-user")

    assert_refused_naming(answer, resources, panel, "username")

"""What an order needs, by service type, checked before any money is at stake.

The request body has already passed the `OrderRequest` schema (types, sizes,
unknown fields). This module adds what depends on the service from the catalogue:
the fields its type requires or allows, text the panel would read otherwise than
it was checked (control characters, a list item holding a line break, links that
are not plain http(s) URLs), the quantity range, drip-feed, and the estimated
charge. Its output is exactly the form the panel's `add` receives.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.catalogue import Service

DRIP = frozenset({"runs", "interval"})
URLS = frozenset({"link", "referring_url"})  # the fields the panel (or its traffic) opens as URLs
# Text the panel receives must mean what was checked. Lists are sent one item per
# line and the panel counts the lines (splitting, as Python's splitlines does, at
# CR, LF, VT, FF, FS..RS, NEL, U+2028 and U+2029, and dropping blank ones), so an
# item holding a break would be charged as more lines than were priced and capped.
# No other field has a use for a control character either.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, line/paragraph separators


@dataclass(frozen=True)
class Rule:
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    counted: str | None = None  # quantity is the number of lines in this field
    per_package: bool = False  # the rate is per order, not per 1000 units


def _rule(required: str, optional: str = "", **kw: Any) -> Rule:
    return Rule(frozenset(required.split()), frozenset(optional.split()), **kw)


RULES: dict[str, Rule] = {
    "Default": _rule("link quantity", "runs interval"),
    "Package": _rule("link", per_package=True),
    "Custom Comments": _rule("link comments", counted="comments"),
    "Custom Comments Package": _rule("link comments", per_package=True),
    "Mentions": _rule("link quantity usernames"),
    "Mentions with Hashtags": _rule("link quantity usernames hashtags"),
    "Mentions Custom List": _rule("link usernames", counted="usernames"),
    "Mentions Hashtag": _rule("link quantity hashtag"),
    "Mentions User Followers": _rule("link quantity username"),
    "Mentions Media Likers": _rule("link quantity media"),
    "Comment Likes": _rule("link quantity username"),
    "Poll": _rule("link quantity answer_number"),
    "Invites from Groups": _rule("link quantity groups"),
    "Subscriptions": _rule("username min max delay", "posts old_posts expiry"),
    "Web Traffic": _rule("link quantity country device type_of_traffic",
                         "google_keyword referring_url runs interval"),
}
# RFC 3986 (with IRI letters in the host): scheme "://" authority, then path, query
# and fragment; the authority is a reg-name (which covers IPv4) or a bracketed IPv6
# address without zone id, then an optional port. No userinfo: credentials have no
# place in an order's link, and `a@b` hides which host is meant.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?:[/?#].*)?", re.DOTALL)
_AUTHORITY = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=\u00a0-\U0010ffff]+)"
                        r"(?::(?P<port>.*))?", re.DOTALL)
_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")
# Web Traffic: which extra field each type_of_traffic needs (3, blank referrer, needs none).
TRAFFIC_FIELDS = {1: "google_keyword", 2: "referring_url"}


@dataclass(frozen=True)
class Prepared:
    params: dict[str, str]  # the panel's `add` parameters (without key and action)
    quantity: int | None
    estimated_charge: Decimal


def prepare(request: dict[str, Any], service: Service) -> Prepared:
    rule = RULES.get(service["type"])
    if rule is None:
        raise errors.Refused(f"Service {service['id']} has type {service['type']}, which the gateway "
                             "cannot order.", code="unsupported_service_type")
    given = set(request) - {"service"}
    _check_fields(given, rule, request, service)
    _check_text(request)
    for field in sorted(URLS & given):
        _check_url(request[field], field)
    quantity = len(request[rule.counted]) if rule.counted else request.get("quantity")
    if quantity is not None and not service["min"] <= quantity <= service["max"]:
        field = rule.counted or "quantity"
        counted = f" ({quantity} lines)" if rule.counted else f" {quantity}"
        raise errors.Refused(
            f"{field}:{counted} is outside {service['min']}..{service['max']} for service {service['id']}.",
            code="quantity_out_of_range", details={"field": field})
    if service["type"] == "Subscriptions":
        _check_subscription(request)
    return Prepared(_panel_params(request), quantity, _charge(request, service, rule, quantity))


def _check_fields(given: set[str], rule: Rule, request: dict[str, Any], service: Service) -> None:
    kind = service["type"]
    missing = sorted(rule.required - given)
    if missing:
        raise _invalid(missing[0], f"{missing[0]} is required for a service of type {kind}.")
    extra = sorted(given - rule.required - rule.optional)
    if extra:
        raise _invalid(extra[0], f"{extra[0]} does not apply to a service of type {kind}.")
    drip = given & DRIP
    if drip and not service["dripfeed"]:
        raise _invalid(sorted(drip)[0], f"service {service['id']} does not offer drip-feed (runs/interval).")
    if len(drip) == 1:
        field = "interval" if "runs" in drip else "runs"
        raise _invalid(field, "runs and interval go together.")
    if kind == "Web Traffic":
        needed = TRAFFIC_FIELDS.get(request["type_of_traffic"])
        for field in TRAFFIC_FIELDS.values():
            if field == needed and field not in given:
                raise _invalid(field, f"{field} is required for type_of_traffic {request['type_of_traffic']}.")
            if field != needed and field in given:
                raise _invalid(field, f"{field} does not apply to type_of_traffic {request['type_of_traffic']}.")


def _check_text(request: dict[str, Any]) -> None:
    """Every text the panel receives, list items one by one (`comments[2]`, counting from 0)."""
    for name, value in request.items():
        texts = [(f"{name}[{n}]", item) for n, item in enumerate(value)] if isinstance(value, list) \
            else [(name, value)]
        one_line = " (each item of a list is one line)" if isinstance(value, list) else ""
        for field, text in texts:
            if isinstance(text, str) and _UNSENDABLE.search(text):
                raise _invalid(field, f"{field} must not contain control characters or line breaks "
                                      f"(NUL, tab, CR, LF, U+2028, ...){one_line}.")
            if isinstance(value, list) and not str(text).strip():
                raise _invalid(field, f"{field} is blank; the panel would not count it as an item.")


def _check_url(value: str, field: str) -> None:
    """An http(s) URL read by RFC 3986's grammar, not by urlsplit's leniency.

    urlsplit silently drops tabs and newlines, keeps what stands next to a bracketed
    host (`https://a[::1]x/`) and accepts IPv6 zone ids and `%` escapes in a host,
    so what it accepts is not what the panel would open. Invisible format characters
    (zero-width, bidi overrides, BOM) would make the link differ from what is shown."""
    if any(c.isspace() or unicodedata.category(c) in {"Cc", "Cf"} for c in value):
        raise _invalid(field, f"{field} must not contain spaces, control characters (NUL, tab, CR, LF, ...) "
                              "or invisible format characters (zero-width, bidi, BOM).")
    parts = _URL.fullmatch(value)
    if parts is None or parts["scheme"].lower() not in {"http", "https"}:
        raise _invalid(field, f"{field} must be an http(s) URL: http(s)://host/...")
    if _BAD_ESCAPE.search(value):
        raise _invalid(field, f"{field} has a % that is not followed by two hex digits.")
    if "@" in parts["authority"]:
        raise _invalid(field, f"{field} must not hold user information (user@host).")
    authority = _AUTHORITY.fullmatch(parts["authority"])
    if authority is None or not _host_ok(authority["host"]):
        raise _invalid(field, f"{field} is not a well-formed URL: its host is not a valid name, IPv4 or "
                              "[IPv6] address (no %-escapes, no zone id).")
    port = authority["port"]
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise _invalid(field, f"{field}: the port must be a number between 1 and 65535.")


def _host_ok(host: str) -> bool:
    if not host.startswith("["):
        return True  # _AUTHORITY allows only reg-name characters outside brackets
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


def _check_subscription(request: dict[str, Any]) -> None:
    if request["min"] > request["max"]:
        raise _invalid("min", "min must not be greater than max.")
    if "expiry" in request:
        try:
            datetime.strptime(request["expiry"], "%d/%m/%Y")
        except ValueError:
            raise _invalid("expiry", "expiry must be a date as dd/mm/yyyy.") from None


def _charge(request: dict[str, Any], service: Service, rule: Rule, quantity: int | None) -> Decimal:
    rate = Decimal(service["rate"])
    if rule.per_package:
        return rate
    if quantity is None:  # Subscriptions: at most `max` units per post, for `posts` posts
        quantity = request["max"] * request.get("posts", 1)
    return rate * quantity * request.get("runs", 1) / 1000


def _panel_params(request: dict[str, Any]) -> dict[str, str]:
    return {name: "\n".join(value) if isinstance(value, list) else str(value)
            for name, value in request.items()}


def _invalid(field: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"{field}: {message}" if not message.startswith(field) else message,
                                  details={"field": field})

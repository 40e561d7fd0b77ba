"""The sandbox panel's service catalogue, and the per-type rules for `add`.

The gateway has to survive real catalogues, so the generated part reproduces the
quirks of upstream-api.md ("Services") while the first sixteen ids are fixed, clean
and canonical so tests can name them:

| id | type                    | name                                 | category        | rate  | min  | max     | refill | cancel | dripfeed |
|----|-------------------------|--------------------------------------|-----------------|-------|------|---------|--------|--------|----------|
| 1  | Default                 | Instagram followers                  | Instagram       | 0.90  | 50   | 10000   | true   | true   | true     |
| 2  | Default                 | Instagram likes                      | Instagram       | 0.25  | 100  | 50000   | false  | false  | false    |
| 3  | Package                 | Instagram 1000 followers package     | Instagram       | 4.50  | 1    | 1       | false  | false  | false    |
| 4  | Custom Comments         | Instagram custom comments            | Instagram       | 12.00 | 5    | 500     | true   | true   | false    |
| 5  | Custom Comments Package | Instagram 10 custom comments package | Instagram       | 2.50  | 1    | 1       | false  | false  | false    |
| 6  | Mentions                | Instagram mentions                   | Instagram       | 3.00  | 100  | 10000   | false  | true   | false    |
| 7  | Mentions with Hashtags  | Instagram mentions with hashtags     | Instagram       | 3.50  | 100  | 10000   | true   | true   | false    |
| 8  | Mentions Custom List    | Instagram mentions custom list       | Instagram       | 4.00  | 1    | 1000    | false  | true   | false    |
| 9  | Mentions Hashtag        | Instagram mentions by hashtag        | Instagram       | 3.20  | 100  | 10000   | false  | true   | false    |
| 10 | Mentions User Followers | Instagram mentions of user followers | Instagram       | 3.40  | 100  | 10000   | false  | true   | false    |
| 11 | Mentions Media Likers   | Instagram mentions of media likers   | Instagram       | 3.60  | 100  | 10000   | false  | true   | false    |
| 12 | Comment Likes           | Instagram comment likes              | Instagram       | 1.80  | 20   | 5000    | true   | true   | false    |
| 13 | Poll                    | Telegram poll votes                  | Telegram        | 1.20  | 100  | 100000  | false  | true   | false    |
| 14 | Invites from Groups     | Telegram group invites               | Telegram        | 6.00  | 100  | 20000   | true   | false  | false    |
| 15 | Subscriptions           | Instagram auto likes subscription    | Instagram       | 0.40  | 50   | 5000    | false  | false  | false    |
| 16 | Web Traffic             | Website traffic from Google          | Website traffic | 0.05  | 1000 | 1000000 | false  | true   | true     |

The panel's lifecycle keys on service ids: ids divisible by 7 (here 7 and 14) end
Partial, ids divisible by 11 (here 11) report `remains` "Unknown" while Pending.
Generated services (ids 17 and up) are decided by a seeded `random.Random`, so a
seed always gives the same catalogue, byte for byte.

Charges (5 decimals, half up): `rate * quantity / 1000`; Package and Custom Comments
Package cost `rate` per order; Subscriptions `rate * max * posts / 1000` (posts 1 when
absent). Drip-feed orders are charged on `quantity` as given, whatever `runs`.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Mapping

INCORRECT_REQUEST = "Incorrect request"
MONEY_PLACES = Decimal("0.00001")
INT_MAX = 2147483647


class Refusal(Exception):
    """The panel refuses a call; the message is the exact `error` text it answers."""


@dataclass(frozen=True)
class Service:
    """A service as the panel itself understands it; `wire` is how `services` shows it."""

    id: int
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool
    wire: dict[str, object] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Rule:
    """What `add` needs for one service type (upstream-api.md, "`add` by service type")."""

    required: tuple[str, ...]
    counts: str | None = None  # quantity is the number of lines of this field
    package: bool = False  # the rate is the price of the whole order; no quantity


RULES: dict[str, Rule] = {
    "Default": Rule(("link", "quantity")),
    "Package": Rule(("link",), package=True),
    "Custom Comments": Rule(("link", "comments"), counts="comments"),
    "Custom Comments Package": Rule(("link", "comments"), counts="comments", package=True),
    "Mentions": Rule(("link", "quantity", "usernames")),
    "Mentions with Hashtags": Rule(("link", "quantity", "usernames", "hashtags")),
    "Mentions Custom List": Rule(("link", "usernames"), counts="usernames"),
    "Mentions Hashtag": Rule(("link", "quantity", "hashtag")),
    "Mentions User Followers": Rule(("link", "quantity", "username")),
    "Mentions Media Likers": Rule(("link", "quantity", "media")),
    "Comment Likes": Rule(("link", "quantity", "username")),
    "Poll": Rule(("link", "quantity", "answer_number")),
    "Invites from Groups": Rule(("link", "quantity", "groups")),
    "Subscriptions": Rule(("username", "min", "max", "delay")),
    "Web Traffic": Rule(("link", "quantity", "country", "device", "type_of_traffic")),
}
TYPES = tuple(RULES)

_FIXED: tuple[tuple[str, str, str, str, int, int, bool, bool, bool], ...] = (
    ("Default", "Instagram followers", "Instagram", "0.90", 50, 10000, True, True, True),
    ("Default", "Instagram likes", "Instagram", "0.25", 100, 50000, False, False, False),
    ("Package", "Instagram 1000 followers package", "Instagram", "4.50", 1, 1, False, False, False),
    ("Custom Comments", "Instagram custom comments", "Instagram", "12.00", 5, 500, True, True, False),
    ("Custom Comments Package", "Instagram 10 custom comments package", "Instagram", "2.50", 1, 1,
     False, False, False),
    ("Mentions", "Instagram mentions", "Instagram", "3.00", 100, 10000, False, True, False),
    ("Mentions with Hashtags", "Instagram mentions with hashtags", "Instagram", "3.50", 100, 10000,
     True, True, False),
    ("Mentions Custom List", "Instagram mentions custom list", "Instagram", "4.00", 1, 1000,
     False, True, False),
    ("Mentions Hashtag", "Instagram mentions by hashtag", "Instagram", "3.20", 100, 10000,
     False, True, False),
    ("Mentions User Followers", "Instagram mentions of user followers", "Instagram", "3.40", 100,
     10000, False, True, False),
    ("Mentions Media Likers", "Instagram mentions of media likers", "Instagram", "3.60", 100, 10000,
     False, True, False),
    ("Comment Likes", "Instagram comment likes", "Instagram", "1.80", 20, 5000, True, True, False),
    ("Poll", "Telegram poll votes", "Telegram", "1.20", 100, 100000, False, True, False),
    ("Invites from Groups", "Telegram group invites", "Telegram", "6.00", 100, 20000,
     True, False, False),
    ("Subscriptions", "Instagram auto likes subscription", "Instagram", "0.40", 50, 5000,
     False, False, False),
    ("Web Traffic", "Website traffic from Google", "Website traffic", "0.05", 1000, 1000000,
     False, True, True),
)
FIXED_COUNT = len(_FIXED)

# What each network sells as plain Default services.
_PRODUCTS: dict[str, tuple[str, ...]] = {
    "Instagram": ("followers", "likes", "views", "saves", "story views", "reel plays"),
    "TikTok": ("followers", "likes", "views", "shares", "saves"),
    "YouTube": ("subscribers", "views", "likes", "watch time hours", "shorts views"),
    "Telegram": ("channel members", "post views", "reactions"),
    "X": ("followers", "likes", "retweets", "impressions"),
    "Facebook": ("page likes", "followers", "post likes", "video views"),
    "Spotify": ("plays", "followers", "monthly listeners", "saves"),
    "Website traffic": ("visits from Google", "direct visits", "social referrals"),
}
# Where the special types plausibly appear (a Poll on Spotify would look odd in a demo).
_HOMES: dict[str, tuple[str, ...]] = {
    "Package": tuple(_PRODUCTS),
    "Custom Comments": ("Instagram", "TikTok", "YouTube", "Facebook"),
    "Custom Comments Package": ("Instagram", "TikTok", "YouTube"),
    "Mentions": ("Instagram",),
    "Mentions with Hashtags": ("Instagram",),
    "Mentions Custom List": ("Instagram",),
    "Mentions Hashtag": ("Instagram",),
    "Mentions User Followers": ("Instagram",),
    "Mentions Media Likers": ("Instagram",),
    "Comment Likes": ("Instagram", "TikTok", "YouTube"),
    "Poll": ("Telegram", "X"),
    "Invites from Groups": ("Telegram",),
    "Subscriptions": ("Instagram", "TikTok", "Telegram"),
    "Web Traffic": ("Website traffic",),
}
_TAGS = ("", " [Refill 30D]", " [Max 100K]", " | Instant", " [HQ]", " [Real]", " [No drop]",
         " | 10K/day", " [Lifetime guarantee]")


class Catalogue:
    """`size` services, the fixed ones first, indexed by id, with the `services` answer pre-encoded."""

    def __init__(self, size: int = 3000, seed: int = 1) -> None:
        if size < FIXED_COUNT:
            raise ValueError(f"the catalogue holds at least the {FIXED_COUNT} fixed services")
        fixed = [_fixed(number, row) for number, row in enumerate(_FIXED, start=1)]
        rng = random.Random(seed)
        generated = [_generated(number, rng) for number in range(FIXED_COUNT + 1, size + 1)]
        self.services: dict[int, Service] = {s.id: s for s in fixed + generated}
        # Encoded once: `services` is the largest answer and tests call it often.
        self.body: bytes = json.dumps([s.wire for s in self.services.values()]).encode()

    def get(self, raw: str) -> Service | None:
        return self.services.get(int(raw)) if re.fullmatch(r"\s*[0-9]+\s*", raw) else None


def _fixed(number: int, row: tuple[str, str, str, str, int, int, bool, bool, bool]) -> Service:
    type_, name, category, rate, low, high, refill, cancel, dripfeed = row
    wire: dict[str, object] = {
        "service": number, "name": name, "type": type_, "category": category, "rate": rate,
        "min": str(low), "max": str(high), "refill": refill, "cancel": cancel, "dripfeed": dripfeed,
    }
    return Service(number, name, type_, category, Decimal(rate), low, high, refill, cancel,
                   dripfeed, wire)


def _generated(number: int, rng: random.Random) -> Service:
    # One in eight is a special type, taken in turn so that every type recurs.
    type_ = TYPES[1 + (number // 8) % (len(TYPES) - 1)] if number % 8 == 0 else "Default"
    network = rng.choice(_HOMES.get(type_, tuple(_PRODUCTS)))
    product = rng.choice(_PRODUCTS[network]) if type_ == "Default" else type_.lower()
    name = f"{network} {product}{rng.choice(_TAGS)}"
    category = network if network == "Website traffic" else f"{network} {product.title()}"
    rate = _rate(rng)
    if RULES[type_].package:
        low, high = 1, 1
    else:
        low = rng.choice((10, 20, 50, 100, 100, 500, 1000))
        high = INT_MAX if rng.random() < 0.004 else low * rng.choice((10, 100, 200, 1000))
    refill = type_ not in ("Package", "Subscriptions", "Web Traffic") and rng.random() < 0.4
    cancel = rng.random() < 0.5
    dripfeed = type_ in ("Default", "Web Traffic") and rng.random() < 0.3

    # The quirks change only how the service is shown, never what it is; an absent
    # `cancel` or `dripfeed` reads as false, so the panel's own flag is false too.
    has_cancel, has_dripfeed = rng.random() >= 0.15, rng.random() >= 0.15
    cancel, dripfeed = cancel and has_cancel, dripfeed and has_dripfeed
    as_numbers = rng.random() < 0.3
    wire: dict[str, object] = {
        "service": str(number) if rng.random() < 0.1 else number,
        "name": name,
        "type": type_.lower() if rng.random() < 0.1 else type_,
        "category": category,
        "rate": str(rate),
        "min": low if as_numbers else str(low),
        "max": high if as_numbers else str(high),
        "refill": refill,
    }
    if has_cancel:
        wire["cancel"] = cancel
    if has_dripfeed:
        wire["dripfeed"] = int(dripfeed) if rng.random() < 0.2 else dripfeed
    return Service(number, name, type_, category, rate, low, high, refill, cancel, dripfeed, wire)


def _rate(rng: random.Random) -> Decimal:
    places = rng.choice((2, 2, 2, 3, 4, 5, 8))
    scale = 10**places
    # Whole units at the chosen precision, so str() keeps exactly `places` decimals.
    return Decimal(rng.randint(scale // 100, 40 * scale)).scaleb(-places)


@dataclass(frozen=True)
class Placement:
    """A valid `add` for a service: what the order delivers and what it costs."""

    link: str  # "" for Subscriptions, which target a username
    quantity: int
    charge: Decimal
    runs: int | None
    interval: int | None
    fields: dict[str, str]  # the type's own fields as sent (comments, usernames, ...)


def placement(service: Service, params: Mapping[str, str]) -> Placement:
    """Validate `add` for `service` the way panels do, or raise `Refusal` with their text."""
    rule = RULES[service.type]
    given = {name: params.get(name, "").strip() for name in rule.required}
    if not all(given.values()):
        raise Refusal(INCORRECT_REQUEST)
    if service.type == "Web Traffic":
        given.update(_traffic_source(params, given["type_of_traffic"]))
    runs, interval = _dripfeed(service, params)
    link = given.get("link", "")
    if "link" in rule.required and not re.fullmatch(r"https?://\S+", link, re.IGNORECASE):
        raise Refusal("Incorrect link")

    if service.type == "Subscriptions":
        quantity, charge = _subscription(service, params, given)
    else:
        if rule.counts:
            # One comment or username per line, blank lines ignored.
            quantity = len([line for line in given[rule.counts].splitlines() if line.strip()])
        elif rule.package:
            quantity = 1
        else:
            quantity = _integer(given["quantity"])
        if not rule.package:
            _check_range(service, quantity, quantity)
        charge = service.rate if rule.package else service.rate * quantity / 1000
    fields = {k: v for k, v in given.items() if k not in ("link", "quantity")}
    return Placement(link, quantity, _money(charge), runs, interval, fields)


def _traffic_source(params: Mapping[str, str], kind: str) -> dict[str, str]:
    needed = {"1": "google_keyword", "2": "referring_url"}.get(kind)
    if needed is None:
        return {}
    value = params.get(needed, "").strip()
    if not value:
        raise Refusal(INCORRECT_REQUEST)
    return {needed: value}


def _dripfeed(service: Service, params: Mapping[str, str]) -> tuple[int | None, int | None]:
    runs, interval = params.get("runs", "").strip(), params.get("interval", "").strip()
    if not runs and not interval:
        return None, None
    if not (service.dripfeed and runs and interval):
        raise Refusal(INCORRECT_REQUEST)
    runs_n, interval_n = _integer(runs), _integer(interval)
    if runs_n < 1 or interval_n < 1:
        raise Refusal(INCORRECT_REQUEST)
    return runs_n, interval_n


def _subscription(service: Service, params: Mapping[str, str], given: dict[str, str]
                  ) -> tuple[int, Decimal]:
    # Charged up front for `posts` posts (1 when unlimited) at `max` each.
    low, high, delay = _integer(given["min"]), _integer(given["max"]), _integer(given["delay"])
    posts = _integer(params["posts"]) if params.get("posts", "").strip() else 1
    if low > high or delay < 0 or posts < 1:
        raise Refusal(INCORRECT_REQUEST)
    if params.get("old_posts", "").strip():
        _integer(params["old_posts"])
    expiry = params.get("expiry", "").strip()
    if expiry:
        try:
            datetime.strptime(expiry, "%d/%m/%Y")
        except ValueError:
            raise Refusal(INCORRECT_REQUEST) from None
    _check_range(service, low, high)
    return high * posts, service.rate * high * posts / 1000


def _check_range(service: Service, low: int, high: int) -> None:
    if low < service.min:
        raise Refusal(f"Quantity less than minimal {service.min}")
    if high > service.max:
        raise Refusal(f"Quantity more than maximum {service.max}")


def _integer(text: str) -> int:
    if not re.fullmatch(r"\s*-?[0-9]+\s*", text):
        raise Refusal(INCORRECT_REQUEST)
    return int(text)


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)

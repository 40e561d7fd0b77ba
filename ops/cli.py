"""`python -m ops`: the operator's commands, against real AWS or `make run`'s embedded AWS.

Which secret and table: `--stage S` means smm-gateway/S and smm-gateway-S (the names
the stack creates); without it GATEWAY_SECRET_ID and GATEWAY_TABLE are read, as the
function does, defaulting to the dev names. boto3 finds credentials, region and
AWS_ENDPOINT_URL (the embedded AWS of `make run`) the usual way. The target is
printed on stderr before anything is changed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import unicodedata
from typing import Any, TextIO

from chalicelib.callers import CAPS, SCOPES, checked_cap, checked_scopes
from ops import callers, orders, panel
from ops.secret_doc import OpsError, SecretDocument

DEFAULT_SECRET_ID, DEFAULT_TABLE = "smm-gateway/dev", "smm-gateway-dev"
_UNSHOWN = frozenset({"Cc", "Cf", "Zl", "Zp"})  # Unicode categories say() escapes
_CLIENTS: dict[tuple[str | None, ...], Any] = {}
NONE = "none"  # `callers update --max-order-charge none`: remove the cap
EXAMPLES = """examples:
  python -m ops --stage prod secret set --api-url https://panel.example/api/v2 --api-key-stdin --verify
  python -m ops --stage prod secret show
  python -m ops --stage prod callers create zapier
  python -m ops --stage prod callers create dashboard --scopes orders:read --own-orders-only
  python -m ops --stage prod callers create zap-acme --scopes services:read,orders:read,orders:write \
      --own-orders-only --max-order-charge 20 --daily-spend-limit 100
  python -m ops --stage prod callers list
  python -m ops --stage prod callers update zap-acme --key-id 1a2b3c4d --daily-spend-limit 250
  python -m ops --stage prod callers revoke zapier --key-id 1a2b3c4d
  python -m ops --stage prod orders unknown
  python -m ops --stage prod orders resolve --caller zapier --key zap-run-4711 --order-id 23501
  python -m ops --stage prod orders resolve --caller zapier --key zap-run-4711 --release
  python -m ops --stage prod orders backfill-unsettled
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m ops", description=__doc__, epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--stage", help="use smm-gateway/STAGE and smm-gateway-STAGE (overrides GATEWAY_*)")
    top.add_argument("--json", action="store_true", help="print results as JSON")
    groups = top.add_subparsers(dest="group", required=True, metavar="{secret,callers,orders}")

    secret = groups.add_parser("secret", help="the panel URL and key").add_subparsers(dest="command", required=True)
    setter = secret.add_parser("set", help="set or rotate the panel URL and/or key (callers are kept)")
    setter.add_argument("--api-url", help="the panel's API v2 URL, e.g. https://panel.example/api/v2")
    setter.add_argument("--api-key-stdin", action="store_true",
                        help="read the new panel key from stdin (asked without echo at a terminal); "
                             "never put it on the command line")
    setter.add_argument("--verify", action="store_true",
                        help="call the panel's balance with the new URL/key first; change nothing if it fails")
    secret.add_parser("show", help="the panel URL, a fingerprint of the key (never the key), the caller names")

    keys = groups.add_parser("callers", help="the gateway's caller keys").add_subparsers(dest="command", required=True)
    create = keys.add_parser("create", help="issue a key for NAME; it is printed once, only its hash is kept "
                                            "(with --json: an object with name, key, key_id, scopes, limits)")
    create.add_argument("name")
    create.add_argument("--additional", action="store_true",
                        help="NAME already has a key: add a second one (rotation without downtime); "
                             "it copies the newest key's scopes and limits unless given here")
    _limit_options(create)
    create.add_argument("--own-orders-only", action="store_const", const=True, default=None,
                        help="the key reads, refills and cancels only orders placed through NAME's keys")
    keys.add_parser("list", help="names, key ids, creation dates, scopes and limits (no keys, no hashes)")
    update = keys.add_parser("update", help="change the scopes and limits of NAME's keys; the keys stay the same")
    update.add_argument("name")
    update.add_argument("--key-id", help="only the key with this id (from `callers list`); else every key of NAME")
    _limit_options(update, unsettable=True)
    only = update.add_mutually_exclusive_group()
    only.add_argument("--own-orders-only", action="store_const", const=True, default=None,
                      help="limit the key to orders placed through NAME's keys")
    only.add_argument("--all-orders", dest="own_orders_only", action="store_const", const=False,
                      help="lift that limit")
    revoke = keys.add_parser("revoke", help="remove NAME's keys (all, or one --key-id)")
    revoke.add_argument("name")
    revoke.add_argument("--key-id", help="only the key with this id (from `callers list`)")

    book = groups.add_parser("orders", help="orders whose outcome is unknown").add_subparsers(
        dest="command", required=True)
    listing = book.add_parser("unknown", help="list them (all callers in the secret, or one)")
    listing.add_argument("--caller")
    settle = book.add_parser("resolve", help="record the order the panel shows for a key, or release the key")
    settle.add_argument("--caller", required=True)
    settle.add_argument("--key", required=True, help="the Idempotency-Key, as `orders unknown` shows it")
    outcome = settle.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--order-id", type=_order_id, help="the panel's id of the order this key placed")
    outcome.add_argument("--release", action="store_true",
                         help="the panel has no such order: free the key so the caller's retry places it")
    backfill = book.add_parser("backfill-unsettled",
                               help="once after upgrading: let `unknown` see orders claimed by an older version")
    backfill.add_argument("--caller")
    return top


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    if args.stage:
        secret_id, table = target(args.stage)
    else:
        secret_id = os.environ.get("GATEWAY_SECRET_ID") or DEFAULT_SECRET_ID
        table = os.environ.get("GATEWAY_TABLE") or DEFAULT_TABLE
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.errors import GatewayError

    try:
        doc = SecretDocument(_client("secretsmanager"), secret_id)
        where = f"secret {secret_id}, table {table}, region {doc.region}"
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        print(f"[{where}{', endpoint ' + endpoint if endpoint else ''}]", file=err)
        result = run(args, doc, table, stdin, err)
    except (OpsError, GatewayError) as exc:
        say(f"error: {exc}", err)
        return 1
    except (BotoCoreError, ClientError) as exc:
        say(f"error: AWS: {exc}", err)
        return 1
    show(result, args.json, out)
    return 0


def run(args: argparse.Namespace, doc: SecretDocument, table: str, stdin: TextIO, err: TextIO) -> Any:
    command = f"{args.group} {args.command}"
    if command == "secret set":
        key = _read_key(stdin, err) if args.api_key_stdin else None
        return panel.set_panel(doc, args.api_url, key, check=_verify if args.verify else None)
    if command == "secret show":
        return panel.show(doc)
    if command == "callers create":
        key, entry = callers.create(doc, args.name, additional=args.additional, limits=_limits(args))
        print(f"New key for {args.name} (key id {entry['key_id']}, scopes {','.join(entry['scopes'])}); "
              "it is shown only now, store it in the caller's secret store:", file=err)
        return {**entry, "key": key} if args.json else key
    if command == "callers list":
        return callers.listing(doc)
    if command == "callers update":
        changed = callers.update(doc, args.name, args.key_id, _limits(args))
        print("updated; running containers apply it within SECRET_MAX_AGE_SECONDS (60 s by default)", file=err)
        return changed
    if command == "callers revoke":
        gone = callers.revoke(doc, args.name, args.key_id)
        print("revoked; running containers drop the key within SECRET_MAX_AGE_SECONDS (60 s by default)", file=err)
        return gone
    if command == "orders unknown":
        names = [args.caller] if args.caller else callers_in(doc)
        return orders.unknown(_desk(table), names)
    if command == "orders resolve":
        entry = orders.resolve(_desk(table), args.caller, args.key, None if args.release else args.order_id)
        verdict = "released: the caller's next retry places the order" if args.release else \
            f"recorded: the key now replays order {args.order_id}"
        return {**entry, "resolution": verdict}
    if command == "orders backfill-unsettled":
        names = [args.caller] if args.caller else callers_in(doc)
        marked = orders.backfill_unsettled(_store(table), names)
        return [{"caller": name, "marked": len(entries), **({"entries": entries} if args.json else {})}
                for name, entries in marked.items()]
    raise AssertionError(command)


def _limit_options(command: argparse.ArgumentParser, unsettable: bool = False) -> None:
    lift = "; 'none' removes it" if unsettable else ""
    command.add_argument("--scopes", type=_scopes,
                         help=f"comma-separated, from {','.join(SCOPES)}; 'all' for every one"
                              + ("" if unsettable else " (the default)"))
    command.add_argument("--max-order-charge", type=_cap, metavar="AMOUNT",
                         help=f"refuse an order whose estimated charge is over AMOUNT{lift}")
    command.add_argument("--daily-spend-limit", type=_cap, metavar="AMOUNT",
                         help=f"refuse orders past AMOUNT a day (UTC) for NAME{lift}")


def _limits(args: argparse.Namespace) -> callers.Limits:
    caps = {name: getattr(args, name) for name in CAPS}
    return callers.Limits(
        scopes=args.scopes, own_orders_only=args.own_orders_only,
        max_order_charge=caps["max_order_charge"] if caps["max_order_charge"] != NONE else None,
        daily_spend_limit=caps["daily_spend_limit"] if caps["daily_spend_limit"] != NONE else None,
        unset=tuple(name for name, value in caps.items() if value == NONE))


def _scopes(text: str) -> list[str]:
    if text.strip() == "all":
        return list(SCOPES)
    try:
        scopes = checked_scopes(part.strip() for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not scopes:
        raise argparse.ArgumentTypeError("give at least one scope (a key without any could do nothing)")
    return scopes


def _cap(text: str) -> Any:
    if text.strip().lower() == NONE:
        return NONE
    try:
        return checked_cap(text, "the amount")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def target(stage: str) -> tuple[str, str]:
    """The secret id and table name the stack creates for `stage` (infra/resources.json)."""
    return f"smm-gateway/{stage}", f"smm-gateway-{stage}"


def callers_in(doc: SecretDocument) -> list[str]:
    return sorted({entry["name"] for entry in callers.listing(doc)})


def show(result: Any, as_json: bool, out: TextIO) -> None:
    if as_json or isinstance(result, dict):
        for line in json.dumps(result, indent=1, default=str).split("\n"):  # say() escapes a line break
            say(line, out)
    elif isinstance(result, list):
        for row in result:
            say("  ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in row.items()), out)
        if not result:
            say("(none)", out)
    else:
        say(str(result), out)


def say(text: str, stream: TextIO) -> None:
    """Print `text` as one line, escaping what the stream cannot encode or a terminal would not show.

    Stored text can hold anything, e.g. a lone surrogate from a request written
    before the gateway refused them; the operator must still see the entry. And see
    it as stored: control and format characters (escape sequences, line breaks,
    bidi overrides, zero-width characters, BOM) and U+2028/U+2029 are printed as
    \\uXXXX, so a link cannot show reversed, recoloured, split over lines or shorter
    than it is."""
    shown = "".join(_escaped(c) if unicodedata.category(c) in _UNSHOWN else c for c in text)
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(shown.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def _escaped(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


def _client(service: str) -> Any:
    # One client per target: building one loads botocore's service model (~0.1 s).
    where = (service, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_REGION"),
             os.environ.get("AWS_DEFAULT_REGION"), os.environ.get("AWS_PROFILE"))
    if where not in _CLIENTS:
        import boto3

        _CLIENTS[where] = boto3.session.Session().client(service)
    return _CLIENTS[where]


def _desk(table: str) -> Any:
    """The order desk on `table`, for its operator methods: only its store is used.

    Built here, not by importing the function's `app`: ops needs no Chalice, no panel
    and none of the function's settings but the retention of a resolved answer."""
    from chalicelib.orders.desk import OrderDesk, Policy

    days = float(os.environ.get("IDEMPOTENCY_RETENTION_DAYS") or "7")  # as app.desk() reads it
    return OrderDesk(panel=None, catalogue=None, store=_store(table), schemas=None,
                     policy=Policy(retention_seconds=days * 86400))


def _store(table: str) -> Any:
    from chalicelib.orders.store import DynamoStore

    return DynamoStore(_client("dynamodb"), table)


def _order_id(text: str) -> int:
    """A panel order id as the gateway reads ids: a positive integer in plain digits."""
    from chalicelib.errors import GatewayError
    from chalicelib.http import parse_id

    try:
        return parse_id(text.strip(), "the order id")
    except GatewayError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _read_key(stdin: TextIO, err: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass("panel API key (not echoed): ", stream=err)
    return stdin.readline().strip()


def _verify(api_url: str, api_key: str) -> Any:
    """One balance call with the candidate URL and key: a wrong key fails here, not in production."""
    import requests

    from chalicelib.upstream import PanelClient, PanelConfig

    return PanelClient(requests.Session(), lambda: PanelConfig(api_url, api_key), timeout=10).balance()

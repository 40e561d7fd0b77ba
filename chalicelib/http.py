"""Between HTTP and the domain: reading parameters and bodies, writing errors.

No Chalice import: `app.py` hands in plain strings and bytes and gets back plain
status/body/headers, so this layer is tested without a web framework.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping
from urllib.parse import unquote_to_bytes

from chalicelib import errors

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 256 * 1024
MAX_IDS = 1000
MAX_ID = 2**53 - 1
_ID = re.compile(r"^[0-9]{1,16}$")
# A lone surrogate is text no UTF-8 encoder accepts: JSON's `\ud800` escape and a
# Lambda event's strings can carry one, and DynamoDB or the panel's form would then
# fail after the Idempotency-Key was claimed.
_SURROGATE = re.compile("[\ud800-\udfff]")
_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")
_FORM_LIKE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.%-]*=[^&]*(&[A-Za-z_][A-Za-z0-9_.%-]*=[^&]*)*&?\s*$")
# The parts of an API Gateway event that hold what the caller sent.
_EVENT_TEXT = (("headers", "header"), ("multiValueHeaders", "header"),
               ("queryStringParameters", "query parameter"), ("multiValueQueryStringParameters", "query parameter"),
               ("pathParameters", "path parameter"), ("body", "body"))


def error_answer(err: errors.GatewayError, request_id: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """The one error shape: status, body and extra headers."""
    return err.status, {"error": err.body(), "request_id": request_id}, dict(err.headers)


def parse_id(text: str, what: str = "id") -> int:
    if not _ID.match(text or "") or not 0 < int(text) <= MAX_ID:
        raise errors.ValidationError(f"{what}: must be a whole number from 1 to {MAX_ID}, not "
                                     f"{_quoted(text)}.", details={"field": what})
    return int(text)


def _quoted(text: str, limit: int = 40) -> str:
    """Text the caller sent, for a message: in JSON's double quotes, cut at `limit`."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)


def parse_ids(text: str, what: str = "ids", limit: int = MAX_IDS) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise errors.ValidationError(f"{what} must be a comma-separated list of positive integers.",
                                     details={"field": what})
    if len(parts) > limit:
        raise errors.ValidationError(f"{what} holds {len(parts)} ids; at most {limit} per request.",
                                     details={"field": what})
    return [parse_id(p, what) for p in parts]


def parse_flag(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in {"true", "false"}:
        raise errors.ValidationError(f"{what} must be true or false.", details={"field": what})
    return lowered == "true"


def parse_limit(text: str, what: str = "limit", high: int = 100) -> int:
    number = parse_id(text, what)
    if number > high:
        raise errors.ValidationError(f"{what} must be between 1 and {high}.", details={"field": what})
    return number


def field_value(headers: Mapping[str, str], lines: Mapping[str, list[str]] | None, name: str,
                refused: type[errors.GatewayError] = errors.ValidationError) -> str | None:
    """A header's value, or None if it was not sent; one sent on more than one line is `refused`.

    Whitespace around a value is not part of it (RFC 9110 5.5). A header sent twice is
    decided by its lines, never guessed from a comma: HTTP would read the lines as one
    value joined by ", " (5.3), a new key for a tool that later retries with one line.
    API Gateway gives only the last line in `headers` and every line in
    `multiValueHeaders` (`lines`), and so does the local run."""
    wanted = name.lower()
    found = [line for key, values in (lines or {}).items() if key.lower() == wanted for line in values]
    if not found and (value := headers.get(wanted)) is not None:
        found = [value]
    if len(found) > 1:
        raise refused(f"Send the {name} header once; it came {len(found)} times.", details={"field": name})
    return found[0].strip(" \t") if found else None


def media_type(content_type: str | None) -> str:
    """The media type a Content-Type names, lower-cased and without parameters (RFC 9110 8.3.1).

    `APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8` is a form. No Content-Type is JSON."""
    return (content_type or JSON).split(";", 1)[0].strip(" \t").lower() or JSON


class FormFields(dict[str, Any]):
    """A body that came as a form: its values are text, to be read in the schema's types."""


def read_body(raw: bytes | None, content_type: str | None, *, form: bool = False) -> Any:
    """JSON (or, where allowed, a form, as `FormFields`) body as Python values; size-checked.

    Labels are often wrong in no-code tools: `curl -d '{...}'` sends JSON labelled as a
    form. A form-labelled body that opens with `{` or `[` cannot be a form of this
    API's fields, so it is read as the JSON it is. A JSON-labelled body that reads
    as a form is refused, naming the Content-Type to send."""
    raw = raw or b""
    if len(raw) > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes.")
    media = media_type(content_type)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.ValidationError("The body is not UTF-8.") from None
    if form and media == FORM and not text.lstrip().startswith(("{", "[")):
        return FormFields(parse_form(text))
    if not text.strip():
        raise errors.ValidationError("The body is empty; a JSON object is expected.")
    text = text.removeprefix("\ufeff")  # a byte order mark, which RFC 8259 lets a reader ignore
    try:
        parsed = json.loads(text, object_pairs_hook=_object_once, parse_constant=_not_a_json_number)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, errors.GatewayError):
            raise
        if _FORM_LIKE.match(text):
            send = f"send it with Content-Type: {FORM}, or send JSON" if form else "send JSON instead"
            raise errors.ValidationError(f"The body is not JSON but looks like a form (name=value&...); "
                                         f"{send}.") from None
        raise errors.ValidationError(f"The body is not valid JSON: {_json_fault(exc)}.") from None
    require_unicode(parsed, "body field")
    return parsed


def _not_a_json_number(name: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON has not: refused as the parser would.
    raise errors.ValidationError(f"The body is not valid JSON: {name} is not a JSON number.")


def _json_fault(exc: BaseException) -> str:
    """What is wrong with a body json refused, in words (never Python's own advice)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg.lower()} at line {exc.lineno}, column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "arrays or objects are nested too deeply"
    return "it holds a number with too many digits"  # int() over sys.get_int_max_str_digits()


def _object_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are unique: `json` would keep the last of two silently,
    so `{"quantity": 100, "quantity": 200}` would order what another reader of the same
    body (a log, a proxy, the caller's own check) takes for 100."""
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            field = None if _SURROGATE.search(name) else name  # details stay encodable; repr escapes it
            shown = _quoted(name) if field else json.dumps(name[:40])  # escaped: details stay encodable
            raise errors.ValidationError(f"The body holds the key {shown} twice in one object; send "
                                         "each field once.", details={"field": field} if field else {})
        found[name] = value
    return found


def parse_form(text: str, what: str = "form") -> dict[str, Any]:
    """An `application/x-www-form-urlencoded` body (or query string), decoded strictly.

    `parse_qs` turns `%ff` into U+FFFD and keeps `%zz` as it is, so a mangled link
    would be ordered; here either is a 400 naming the field. A repeated name gives a list."""
    fields: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            name = _form_text(name, None, what)
            fields.setdefault(name, []).append(_form_text(value, name, what))
    return {name: values if len(values) > 1 else values[0] for name, values in fields.items()}


def _form_text(encoded: str, field: str | None, what: str) -> str:
    if not _BAD_ESCAPE.search(encoded):
        try:
            return unquote_to_bytes(encoded.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError:
            pass
    where = f"{field}: the {what} value" if field else f"A {what} field name"
    raise errors.ValidationError(f"{where} is not valid percent-encoded UTF-8.",
                                 details={"field": field} if field else {})


def require_event_unicode(event: Mapping[str, Any]) -> None:
    """Refuse a request whose headers, query, path or body hold text UTF-8 cannot encode."""
    for part, what in _EVENT_TEXT:
        require_unicode(event.get(part), what)


def require_unicode(value: Any, what: str) -> None:
    """Refuse `value` if any string in it, key or value at any depth, holds a lone surrogate.

    Checked once, where input enters, so nothing downstream (the store, the panel's
    form, the logs) meets text it cannot encode."""
    if not _holds_surrogate(value):
        return
    named = [name for name, item in value.items() if _holds_surrogate((name, item))] \
        if isinstance(value, Mapping) else []
    field = named[0] if named and not _holds_surrogate(named[0]) else None
    where = f"{what.capitalize()} {_quoted(field)}" if field else f"A {what}" if named else f"The {what}"
    raise errors.ValidationError(f"{where} holds text that is not valid Unicode (a lone surrogate such as "
                                 "\\ud800); send UTF-8.", details={"field": field} if field else {})


def _holds_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:  # a loop, not recursion: JSON may nest as deep as its parser allows
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


# Chalice answers some requests itself ({"Code": ..., "Message": ...}); give them our shape.
_FRAMEWORK_CODES = {
    "BadRequestError": (400, "validation_error"),
    "UnsupportedMediaType": (415, "unsupported_media_type"),
    "MethodNotAllowedError": (405, "method_not_allowed"),
    "NotFoundError": (404, "not_found"),
    "InternalServerError": (500, "internal_error"),
}


def framework_error(response: Any, request_id: str, *, content_type: str | None = None,
                    accepted: tuple[str, ...] = ()) -> Any:
    """Rewrite a Chalice-made error body (duck-typed Response) into the one error shape.

    A 415 names the type sent and the `accepted` ones of the route (its body types)."""
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        status, code = _FRAMEWORK_CODES.get(body["Code"], (response.status_code, "internal_error"))
        message = str(body.get("Message", ""))
        if status == 500:
            message = "An internal error occurred; it has been logged."
        if status == 415 and accepted:
            message = (f"The Content-Type {media_type(content_type)} is not accepted here; send "
                       f"{' or '.join(accepted)}.")
        response.body = {"error": {"code": code, "message": message, "upstream": None},
                         "request_id": request_id}
    return response


def coerce_form(fields: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Form fields are all text: give them the JSON types of `schema` before validation.

    Integers come as decimal text, lists as one string with one item per line (or as
    repeated fields). What cannot be converted is left as is for the schema to refuse.
    """
    properties = schema.get("properties", {})
    typed: dict[str, Any] = {}
    for name, value in fields.items():
        kind = properties.get(name, {}).get("type")
        kind = kind[0] if isinstance(kind, list) else kind
        if kind == "integer" and isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,19}\s*", value):
            value = int(value)
        elif kind == "array":
            lines = value if isinstance(value, list) else [value]
            value = [line.strip() for text in lines for line in str(text).splitlines() if line.strip()]
        typed[name] = value
    return typed

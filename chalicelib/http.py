"""Between HTTP and the domain: reading parameters and bodies, writing errors.

No Chalice import: `app.py` hands in plain strings and bytes and gets back plain
status/body/headers, so this layer is tested without a web framework.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from chalicelib import errors

MAX_BODY_BYTES = 256 * 1024
MAX_IDS = 1000
MAX_ID = 2**53 - 1
_ID = re.compile(r"^[0-9]{1,16}$")


def error_answer(err: errors.GatewayError, request_id: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """The one error shape: status, body and extra headers."""
    return err.status, {"error": err.body(), "request_id": request_id}, dict(err.headers)


def parse_id(text: str, what: str = "id") -> int:
    if not _ID.match(text or "") or not 0 < int(text) <= MAX_ID:
        raise errors.ValidationError(f"{what} must be a positive integer, not {text[:40]!r}.",
                                     details={"field": what})
    return int(text)


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


def read_body(raw: bytes | None, content_type: str | None, *, form: bool = False) -> Any:
    """JSON (or, where allowed, a form) body as Python values; size-checked."""
    raw = raw or b""
    if len(raw) > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes.")
    media = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.ValidationError("The body is not UTF-8.") from None
    if form and media == "application/x-www-form-urlencoded":
        return {name: vals if len(vals) > 1 else vals[0]
                for name, vals in parse_qs(text, keep_blank_values=True).items()}
    if not text.strip():
        raise errors.ValidationError("The body is empty; a JSON object is expected.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise errors.ValidationError(f"The body is not valid JSON: {exc}.") from None


# Chalice answers some requests itself ({"Code": ..., "Message": ...}); give them our shape.
_FRAMEWORK_CODES = {
    "BadRequestError": (400, "validation_error"),
    "UnsupportedMediaType": (415, "unsupported_media_type"),
    "MethodNotAllowedError": (405, "method_not_allowed"),
    "NotFoundError": (404, "not_found"),
    "InternalServerError": (500, "internal_error"),
}


def framework_error(response: Any, request_id: str) -> Any:
    """Rewrite a Chalice-made error body (duck-typed Response) into the one error shape."""
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        status, code = _FRAMEWORK_CODES.get(body["Code"], (response.status_code, "internal_error"))
        message = str(body.get("Message", ""))
        if status == 500:
            message = "An internal error occurred; it has been logged."
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

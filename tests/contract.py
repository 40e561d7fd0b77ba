"""Checking one answer of the gateway against openapi.yaml's response for it.

Used by tests/test_contract.py, and by tests/conftest.py for every answer any test
gets from the `client` fixture, so the whole suite keeps the spec honest.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from chalicelib.schemas import json_schema

SPEC_PATH = Path(__file__).resolve().parent.parent / "chalicelib" / "openapi.json"
# Answers the gateway gives today that the spec rightly does not document: each is a
# bug elsewhere, tolerated here so the suite stays green until it is fixed. Remove the
# entry with the fix.
KNOWN_DEVIATIONS: dict[tuple[str, str, int], str] = {}


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    # Literal paths first, as API Gateway routes: /orders/cancel is not /orders/{id}.
    paths = sorted(spec()["paths"], key=lambda path: path.count("{"))
    return [(re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in paths]


def operation_of(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The spec's (path template, operation) a request went to, or None if it has none."""
    bare = path.split("?", 1)[0]
    for pattern, template in _templates():
        if pattern.match(bare):
            operation = spec()["paths"][template].get(method.lower())
            return (template, operation) if operation else None
    return None


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec()
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


@cache
def _validator(pointer: str) -> jsonschema.Draft4Validator:
    schema = {"$ref": pointer} if pointer.startswith("#/") else json.loads(pointer)
    root = {"allOf": [json_schema(schema)], "components": json_schema(spec()["components"])}
    return jsonschema.Draft4Validator(root)


def problems(method: str, path: str, status: int, headers: Mapping[str, str], body: bytes) -> list[str]:
    """What is wrong with this answer by the spec; [] if nothing (or no operation matches)."""
    found = operation_of(method, path)
    if found is None:
        return []  # unknown routes and methods are API Gateway's and Chalice's, not an operation's
    template, operation = found
    where = f"{method.upper()} {template} → {status}"
    response = operation["responses"].get(str(status))
    if response is None and (method.lower(), template, status) in KNOWN_DEVIATIONS:
        return []
    if response is None:
        return [f"{where}: status not documented (documented: {sorted(operation['responses'])})"]
    response = resolve(response)
    found_problems = []
    lowered = {name.lower(): value for name, value in headers.items()}
    for name, header in response.get("headers", {}).items():
        if resolve(header).get("required") and name.lower() not in lowered:
            found_problems.append(f"{where}: header {name} missing")
    if "x-request-id" not in lowered:
        found_problems.append(f"{where}: header X-Request-Id missing")
    # API Gateway and `chalice local` send application/json when the function names none.
    media = lowered.get("content-type", "application/json").split(";")[0].strip()
    content = response.get("content", {})
    if not content and status == 204:  # No Content: nothing to check but that it is empty
        return [*found_problems, *([f"{where}: a body in a 204 answer"] if body else [])]
    if media not in content:
        return [*found_problems, f"{where}: content type {media} not documented ({sorted(content)})"]
    schema = content[media]["schema"]
    try:
        if resolve(schema).get("type") == "string":  # a text answer (the YAML document)
            document: Any = body.decode("utf-8")
            import yaml

            yaml.safe_load(document)
        elif media == "application/json":
            document = json.loads(body)
        else:
            import yaml

            document = yaml.safe_load(body)
    except ValueError as exc:
        return [*found_problems, f"{where}: body does not parse as {media}: {exc}"]
    key = schema["$ref"] if set(schema) == {"$ref"} else json.dumps(schema, sort_keys=True)
    for error in sorted(_validator(key).iter_errors(document), key=str)[:3]:
        at = "/".join(str(p) for p in error.absolute_path) or "(body)"
        found_problems.append(f"{where}: {at}: {error.message[:200]}")
    return found_problems

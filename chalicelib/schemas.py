"""Request validation against the schemas of the project's own OpenAPI document.

`openapi.yaml` is the one description of the API; `make spec` writes it as
`chalicelib/openapi.json` (no YAML parser at run time) and a test keeps the two
equal. Bodies are checked against its component schemas, query strings against
the `parameters` of the operation they were sent to, so there is no second copy
of a rule to drift. Validators are built on first use and reused for the
container's life.

No-code tools (Zapier, Make) map fields as text and some send whole numbers as
floats, so a body is first read in the schema's types: an integer field takes its
canonical decimal text ("100") or a whole float (100.0), a boolean "true"/"false".
What is refused is said in plain words naming the field as the spec does
(`comments[2]`), never with jsonschema's Python reprs or a raw pattern.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

from chalicelib import errors

SPEC_PATH = Path(__file__).with_name("openapi.json")
_PATH_PARAMETER = re.compile(r"\{[^}]*\}")
# Query values are text; those declared as integers are converted before validation
# (only plausible ones: Python refuses to parse a 5000-digit int).
_INTEGER_TEXT = re.compile(r"^-?[0-9]{1,19}$")
# In a JSON body, only the canonical spelling: not "0100", "+1", " 100", "1e2" or "100.5".
_CANONICAL_INTEGER = re.compile(r"^(0|-?[1-9][0-9]{0,18})$")
_KINDS = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "true or false",
          "array": "a list", "object": "an object", "null": "null"}


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with path.open("rb") as handle:
        return json.load(handle)


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: `nullable: true` becomes a "null" type."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    # `example` stays: a refused pattern is explained by it ("must be written like 31/12/2025").
    out = {k: json_schema(v) for k, v in node.items()
           if k not in {"nullable", "examples", "xml", "externalDocs", "discriminator"}}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


class Schemas:
    """Validators for the spec's component schemas and query parameters, compiled once each."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._components = {"components": json_schema(copy.deepcopy(spec.get("components", {})))}
        self._queries = _query_parameters(spec)
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def schema(self, name: str) -> dict[str, Any]:
        return self._components["components"]["schemas"][name]

    def checked(self, name: str, instance: Any) -> Any:
        """The instance read in the types of schema `name` (see `typed`), once it is valid."""
        instance = self.typed({"$ref": f"#/components/schemas/{name}"}, instance)
        self.validate(name, instance)
        return instance

    def typed(self, schema: dict[str, Any], value: Any) -> Any:
        """`value` with the no-code spellings of the integers and booleans that `schema`
        declares read as such; anything else is left for validation to judge."""
        schema = _resolve(self._components, schema)
        kind = schema.get("type")
        kind = kind[0] if isinstance(kind, list) else kind
        if kind == "integer":
            return _integer(value)
        if kind == "boolean" and value in ("true", "false"):
            return value == "true"
        if kind == "object" and isinstance(value, dict):
            properties = schema.get("properties", {})
            return {name: self.typed(properties[name], item) if name in properties else item
                    for name, item in value.items()}
        if kind == "array" and isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [self.typed(schema["items"], item) for item in value]
        return value

    def validate(self, name: str, instance: Any) -> None:
        validator = self._validator(name, {"$ref": f"#/components/schemas/{name}"})
        problem = next(iter(sorted(validator.iter_errors(instance), key=_depth)), None)
        if problem is not None:
            field = _field(problem)
            raise errors.ValidationError(_plain(problem, field), details={"field": field})

    def query(self, method: str, route: str, params: Mapping[str, str] | None) -> dict[str, str]:
        """The query string of a request to `route`, checked against its operation's parameters.

        Values come back as sent (text); unknown names are refused, so a misspelt
        filter does not silently match everything.
        """
        declared = self._queries.get((method.lower(), _PATH_PARAMETER.sub("{}", route)), {})
        params = dict(params or {})
        unknown = sorted(set(params) - set(declared))
        if unknown:
            takes = f"it takes {', '.join(sorted(declared))}" if declared else "it takes none"
            raise errors.ValidationError(f"{unknown[0]}: not a query parameter of this route ({takes}); "
                                         "check the name.", details={"field": unknown[0]})
        for name, parameter in declared.items():
            if name not in params:
                if parameter.get("required"):
                    raise errors.ValidationError(f"{name}: the query parameter is required.",
                                                 details={"field": name})
                continue
            schema = parameter["schema"]
            value: Any = params[name]
            if _type_of(self._components, schema) == "integer" and _INTEGER_TEXT.match(value):
                value = int(value)
            validator = self._validator(f"query {method} {route} {name}", schema)
            problem = next(iter(sorted(validator.iter_errors(value), key=_depth)), None)
            if problem is not None:
                raise errors.ValidationError(_plain(problem, name), details={"field": name})
        return params

    def _validator(self, key: str, schema: dict[str, Any]) -> Any:
        validator = self._validators.get(key)
        if validator is None:
            # jsonschema is imported on the first validation, not at start: a request
            # with no body and no query string (most reads) never needs it.
            from jsonschema import Draft4Validator

            with self._lock:
                validator = Draft4Validator({"allOf": [json_schema(schema)], **self._components})
                self._validators[key] = validator
        return validator


def _query_parameters(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(method, path with `{}` for each path parameter) → query parameters by name."""
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = (_resolve(spec, p) for p in [*item.get("parameters", []),
                                                       *operation.get("parameters", [])])
            found[(method, _PATH_PARAMETER.sub("{}", path))] = {
                p["name"]: p for p in parameters if p.get("in") == "query"}
    return found


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _type_of(components: dict[str, Any], schema: dict[str, Any]) -> Any:
    return _resolve(components, schema).get("type")


def _integer(value: Any) -> Any:
    if isinstance(value, str) and _CANONICAL_INTEGER.match(value):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _plain(problem: Any, field: str | None) -> str:
    """What is wrong, for a person: `field: what to send`, or `The body ...` for the whole body."""
    rule, limit, schema = problem.validator, problem.validator_value, problem.schema
    if rule == "required":
        return f"{field}: this field is required."
    if rule == "additionalProperties":
        return f"{field}: not a field of this request; check the name against the API description."
    if rule == "type":
        kinds = [kind for kind in (limit if isinstance(limit, list) else [limit]) if kind != "null"]
        wanted = " or ".join(_KINDS.get(kind, kind) for kind in kinds)
        text = f"must be {wanted}, not {_kind_of(problem.instance)}."
    elif rule == "minimum":
        text = f"must be at least {limit}."
    elif rule == "maximum":
        text = f"must be at most {limit}."
    elif rule == "minLength":
        text = "must not be empty." if limit == 1 else f"must be at least {limit} characters long."
    elif rule == "maxLength":
        text = f"must be at most {limit} characters long."
    elif rule == "minItems":
        text = "must hold at least one item." if limit == 1 else f"must hold at least {limit} items."
    elif rule == "maxItems":
        text = f"must hold at most {limit} items."
    elif rule == "enum":
        text = f"must be one of {', '.join(str(item) for item in limit if item is not None)}."
    elif rule == "pattern" and "example" in schema:
        text = f"must be written like {schema['example']}."
    else:
        text = "is not valid here; see its description in the API description."
    return f"{field}: {text}" if field else f"The body {text}"


def _kind_of(value: Any) -> str:
    """How a sent value reads to its sender: `the text "ten"`, `a list`, `12.5`."""
    if isinstance(value, str):
        return f"the text {json.dumps(_short(value, 40), ensure_ascii=False)}"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return _short(str(value), 40)
    return "a list" if isinstance(value, list) else "an object"


def _field(problem: Any) -> str | None:
    """The path of the offending field as the spec names it (`comments[2]`, `error.code`);
    for a missing or unknown property, that property."""
    path: list[str | int] = list(problem.absolute_path)
    names: Iterator[str] = iter(())
    if problem.validator == "required":
        names = (n for n in problem.validator_value if isinstance(problem.instance, dict)
                 and n not in problem.instance)
    elif problem.validator == "additionalProperties" and isinstance(problem.instance, dict):
        allowed = problem.schema.get("properties", {})
        names = (n for n in sorted(problem.instance) if n not in allowed)
    name = next(names, None)
    text = ""
    for part in path + ([name] if name else []):
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or None


def _depth(problem: Any) -> tuple[int, str]:
    return (len(problem.absolute_path), problem.message)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "…"

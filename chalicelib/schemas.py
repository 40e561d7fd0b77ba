"""Request validation against the schemas of the project's own OpenAPI document.

`openapi.yaml` is the one description of the API; `make spec` writes it as
`chalicelib/openapi.json` (no YAML parser at run time) and a test keeps the two
equal. Bodies are checked against its component schemas, query strings against
the `parameters` of the operation they were sent to, so there is no second copy
of a rule to drift. Validators are built on first use and reused for the
container's life.
"""

from __future__ import annotations

import copy
import json
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


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with path.open("rb") as handle:
        return json.load(handle)


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: `nullable: true` becomes a "null" type."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items()
           if k not in {"nullable", "example", "examples", "xml", "externalDocs", "discriminator"}}
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
        """The instance itself, once it is valid against schema `name`."""
        self.validate(name, instance)
        return instance

    def validate(self, name: str, instance: Any) -> None:
        validator = self._validator(name, {"$ref": f"#/components/schemas/{name}"})
        problem = next(iter(sorted(validator.iter_errors(instance), key=_depth)), None)
        if problem is not None:
            field = _field(problem)
            where = f"{field}: " if field else ""
            raise errors.ValidationError(f"{where}{_short(problem.message)}", details={"field": field})

    def query(self, method: str, route: str, params: Mapping[str, str] | None) -> dict[str, str]:
        """The query string of a request to `route`, checked against its operation's parameters.

        Values come back as sent (text); unknown names are refused, so a misspelt
        filter does not silently match everything.
        """
        declared = self._queries.get((method.lower(), _PATH_PARAMETER.sub("{}", route)), {})
        params = dict(params or {})
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise errors.ValidationError(f"Unknown query parameter {unknown[0]!r}.", details={"field": unknown[0]})
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
                raise errors.ValidationError(f"{name}: {_short(problem.message)}", details={"field": name})
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


def _field(problem: Any) -> str | None:
    """The dotted path of the offending field; for a missing or unknown property, that property."""
    path = [str(p) for p in problem.absolute_path]
    names: Iterator[str] = iter(())
    if problem.validator == "required":
        names = (n for n in problem.validator_value if isinstance(problem.instance, dict)
                 and n not in problem.instance)
    elif problem.validator == "additionalProperties" and isinstance(problem.instance, dict):
        allowed = problem.schema.get("properties", {})
        names = (n for n in sorted(problem.instance) if n not in allowed)
    name = next(names, None)
    return ".".join(path + ([name] if name else [])) or None


def _depth(problem: Any) -> tuple[int, str]:
    return (len(problem.absolute_path), problem.message)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "…"

"""Request validation against the schemas of the project's own OpenAPI document.

`openapi.yaml` is the one description of the API; `make spec` writes it as
`chalicelib/openapi.json` (no YAML parser at run time) and a test keeps the two
equal. Validators are built on first use and reused for the container's life.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

from chalicelib import errors

SPEC_PATH = Path(__file__).with_name("openapi.json")


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
    """Validators for the spec's component schemas, compiled once each."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from jsonschema import Draft4Validator  # lazy: keeps the cold start small

        self._validator_class = Draft4Validator
        self._components = {"components": json_schema(copy.deepcopy(spec.get("components", {})))}
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def schema(self, name: str) -> dict[str, Any]:
        return self._components["components"]["schemas"][name]

    def checked(self, name: str, instance: Any) -> Any:
        """The instance itself, once it is valid against schema `name`."""
        self.validate(name, instance)
        return instance

    def validate(self, name: str, instance: Any) -> None:
        validator = self._validators.get(name)
        if validator is None:
            with self._lock:
                validator = self._validator_class(
                    {"$ref": f"#/components/schemas/{name}", **self._components})
                self._validators[name] = validator
        problem = next(iter(sorted(validator.iter_errors(instance), key=_depth)), None)
        if problem is not None:
            field = ".".join(str(p) for p in problem.absolute_path) or None
            where = f"{field}: " if field else ""
            raise errors.ValidationError(f"{where}{_short(problem.message)}", details={"field": field})


def _depth(problem: Any) -> tuple[int, str]:
    return (len(problem.absolute_path), problem.message)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "…"

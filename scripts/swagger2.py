"""OpenAPI 3.0 → Swagger 2.0, for tools that import only 2.0 (Power Automate custom connectors).

Written here because no maintained converter does it offline and validly: PyPI has
none for this direction, and npm's `api-spec-converter` (2.12.0) puts `example` on
response headers, which makes its output invalid 2.0. This one covers exactly the
constructs `openapi.yaml` uses (local `$ref`s, JSON bodies, and `anyOf` only as a
list of named object shapes, which 2.0 cannot say: it becomes one object with every
variant's fields, as Power Automate needs); `tests/test_openapi_document.py`
validates its output as 2.0.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

# Keywords a 2.0 non-body parameter or header takes from its schema.
_SIMPLE_KEYWORDS = ("type", "format", "items", "default", "maximum", "exclusiveMaximum", "minimum",
                    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
                    "uniqueItems", "enum", "multipleOf")
_REFS = {"#/components/schemas/": "#/definitions/", "#/components/parameters/": "#/parameters/",
         "#/components/responses/": "#/responses/"}
_JSON = "application/json"


def convert(spec: dict[str, Any]) -> dict[str, Any]:
    """The Swagger 2.0 twin of an OpenAPI 3.0 document."""
    spec = _merged_unions(spec)
    components = spec.get("components", {})
    host, base_path, schemes = server_parts(spec["servers"][0]["url"])
    out: dict[str, Any] = {
        "swagger": "2.0",
        "info": copy.deepcopy(spec["info"]),
        "host": host,
        "basePath": base_path,
        "schemes": schemes,
        "consumes": [_JSON],
        "produces": [_JSON],
        "tags": copy.deepcopy(spec.get("tags", [])),
        "securityDefinitions": {name: _security_scheme(scheme)
                                for name, scheme in components.get("securitySchemes", {}).items()},
        "security": copy.deepcopy(spec.get("security", [])),
        "paths": {path: {method: _operation(spec, operation) for method, operation in item.items()}
                  for path, item in spec["paths"].items()},
        "definitions": {name: _schema(schema) for name, schema in components.get("schemas", {}).items()},
        "parameters": {name: _parameter(spec, parameter)
                       for name, parameter in components.get("parameters", {}).items()},
        "responses": {name: _response(spec, response)
                      for name, response in components.get("responses", {}).items()},
    }
    out["definitions"] = _used(out)
    return out


def _merged_unions(spec: dict[str, Any]) -> dict[str, Any]:
    """The document with each `anyOf` of object shapes as one object: every variant's
    fields (the first variant's wins a name), required only where all require it."""

    def merged(node: Any) -> Any:
        if isinstance(node, list):
            return [merged(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "anyOf" not in node:
            return {key: merged(value) for key, value in node.items()}
        variants = [_resolve(spec, variant) for variant in node["anyOf"]]
        properties: dict[str, Any] = {}
        for variant in variants:
            for name, schema in variant.get("properties", {}).items():
                properties.setdefault(name, copy.deepcopy(schema))
        required = [name for name in variants[0].get("required", [])
                    if all(name in variant.get("required", []) for variant in variants)]
        names = ", ".join(f"`{variant['$ref'].split('/')[-1]}`" for variant in node["anyOf"])
        out = {"type": "object", "additionalProperties": True,
               "description": f"One of {names}, as one object with all of their fields.",
               "properties": properties}
        return {**out, "required": required} if required else out

    return {key: merged(value) for key, value in spec.items()}


def _used(document: dict[str, Any]) -> dict[str, Any]:
    """The definitions some operation reaches. The simple ones that 2.0 parameters
    inline, and the variants of a 3.0 `anyOf` (merged into one object), are left
    out: a 2.0 reader has no use for them."""
    definitions = document["definitions"]
    roots = {key: value for key, value in document.items() if key != "definitions"}
    used: set[str] = set()
    pending = [roots]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                name = ref.split("/")[-1]
                if name not in used:
                    used.add(name)
                    pending.append(definitions[name])
            pending.extend(value for key, value in node.items() if key not in ("example", "examples"))
        elif isinstance(node, list):
            pending.extend(node)
    return {name: schema for name, schema in definitions.items() if name in used}


def server_parts(url: str) -> tuple[str, str, list[str]]:
    """A server URL as 2.0's `host`, `basePath` and `schemes`."""
    parts = urlsplit(url)
    return parts.netloc, parts.path.rstrip("/") or "/", [parts.scheme or "https"]


def _security_scheme(scheme: dict[str, Any]) -> dict[str, Any]:
    if scheme["type"] != "apiKey":
        raise ValueError(f"only apiKey security schemes are converted, not {scheme['type']!r}")
    return {key: scheme[key] for key in ("type", "in", "name", "description") if key in scheme}


def _operation(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    out = {key: copy.deepcopy(operation[key])
           for key in ("operationId", "summary", "description", "tags", "security", "x-required-scope")
           if key in operation}
    # Power Automate's own extensions (a webhook trigger, its notification shape, what is hidden)
    # are written in openapi.yaml and carried over, with their schema refs renamed for 2.0.
    out.update({key: _schema(value) for key, value in operation.items() if key.startswith("x-ms-")})
    parameters = [_ref(p) if "$ref" in p else _parameter(spec, p) for p in operation.get("parameters", [])]
    body = operation.get("requestBody")
    if body is not None:
        # 2.0 has one body per operation: JSON. The form variant of POST /orders is for
        # webhook tools; a connector sends JSON, so nothing is lost for 2.0's readers.
        media = body["content"][_JSON]
        parameters.append({"name": "body", "in": "body", "required": body.get("required", False),
                           "description": (body.get("description") or "The request body.").strip(),
                           "schema": _schema(media["schema"]), "x-ms-summary": "Body"})
        out["consumes"] = [_JSON]
    if parameters:
        out["parameters"] = parameters
    produces = sorted({media for response in operation["responses"].values()
                       for media in _resolve(spec, response).get("content", {})})
    if produces and produces != [_JSON]:
        out["produces"] = produces
    out["responses"] = {status: _ref(response) if "$ref" in response else _response(spec, response)
                        for status, response in operation["responses"].items()}
    return out


def _parameter(spec: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
    out = {key: parameter[key] for key in ("name", "in", "description", "required") if key in parameter}
    out.update(_simple(spec, parameter["schema"]))
    if "example" in parameter:
        out["x-example"] = parameter["example"]  # 2.0 parameters have no `example`
    out["x-ms-summary"] = _title(parameter["name"])
    return out


def _response(spec: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response["description"]}
    content = response.get("content", {})
    if content:
        media_type, media = next(iter(content.items()))
        out["schema"] = _schema(media["schema"])
        example = media.get("example")
        if example is None and media.get("examples"):
            example = _resolve(spec, next(iter(media["examples"].values())))["value"]
        if example is not None:
            out["examples"] = {media_type: copy.deepcopy(example)}
    if response.get("headers"):
        out["headers"] = {name: _header(spec, header) for name, header in response["headers"].items()}
    return out


def _header(spec: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    header = _resolve(spec, header)  # 2.0 has no reusable headers: inline them
    out = {"description": header["description"]} if "description" in header else {}
    out.update(_simple(spec, header["schema"]))
    if "example" in header:
        out["x-example"] = header["example"]
    return out


def _simple(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A (resolved) schema as the inline keywords of a 2.0 parameter or header."""
    schema = _resolve(spec, schema)
    unsupported = set(schema) - set(_SIMPLE_KEYWORDS) - {"description", "example", "nullable"}
    if unsupported or schema.get("type") in (None, "object"):
        raise ValueError(f"not expressible as a 2.0 parameter: {schema}")
    return {key: copy.deepcopy(schema[key]) for key in _SIMPLE_KEYWORDS if key in schema}


def _schema(node: Any) -> Any:
    """A 3.0 schema as a 2.0 one: refs renamed, `nullable` as `x-nullable`, titles for connectors."""
    if isinstance(node, list):
        return [_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = _rename(value)
        elif key == "nullable":
            out["x-nullable"] = value
        elif key == "properties":
            out[key] = {name: _summarised(name, _schema(sub)) for name, sub in value.items()}
        elif key in ("example", "enum", "default"):
            out[key] = copy.deepcopy(value)  # values, not schemas
        else:
            out[key] = _schema(value)
    return out


def _summarised(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    # Power Automate shows `x-ms-summary` as a field's label; a `$ref` must stand alone.
    return schema if "$ref" in schema else {"x-ms-summary": _title(name), **schema}


def _title(name: str) -> str:
    return " ".join(re.split(r"[_\-\s]+", name)).capitalize()  # start_count -> "Start count"


def _ref(node: dict[str, Any]) -> dict[str, Any]:
    return {"$ref": _rename(node["$ref"])}


def _rename(ref: str) -> str:
    for old, new in _REFS.items():
        if ref.startswith(old):
            return new + ref[len(old):]
    raise ValueError(f"no 2.0 place for {ref}")


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node

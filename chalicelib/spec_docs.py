"""The API description as served: the build's documents, pointed at this deployment.

`scripts/build_spec.py` prepares the three documents at build time; here they are
read on the first request for one (not at import, so cold starts do not pay) and
given the base URL the request came in on, so an importing tool calls the same
deployment, stage prefix included, that it read the document from.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any, Mapping

HERE = Path(__file__).resolve().parent
# The servers block of openapi.yaml as written (scripts/build_spec.py checks it is there).
LOCAL_SERVERS = "\nservers:\n  - url: http://127.0.0.1:8000\n"
# A Host header is echoed into the documents only when it looks like one.
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


def base_url(headers: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """`scheme://host/prefix` of this request, or just `/prefix` if the host is unusable.

    Deployed, the host is API Gateway's `requestContext.domainName` (the name the
    client reached, a custom domain included) and the scheme https: `Host` and
    `X-Forwarded-*` are whatever the client sent, and a document naming another host
    would send the tools that import it, caller keys and all, there. `chalice local`
    sets no domainName or stage; there the Host header is the only name there is.

    API Gateway puts the stage (or a custom domain's base path) before the route in
    `requestContext.path` but not in `resourcePath`:  path /api/openapi.json,
    resourcePath /openapi.json → prefix /api. `chalice local` has no prefix.
    """
    path, route = str(context.get("path") or ""), str(context.get("resourcePath") or "")
    prefix = path[:-len(route)] if route and path.endswith(route) else ""
    if not _PREFIX.match(prefix):
        prefix = ""
    if context.get("domainName") or context.get("stage"):
        host, scheme = str(context.get("domainName") or ""), "https"
    else:
        host, scheme = headers.get("host") or "", "http"
    if not _HOST.match(host):
        return prefix or "/"
    return f"{scheme}://{host}{prefix}"


def openapi_json(url: str) -> dict[str, Any]:
    document = copy.copy(_load("openapi.json"))  # shallow: only `servers` changes
    document["servers"] = [{"url": url}]
    return document


def openapi_yaml(url: str) -> str:
    # JSON's string quoting is valid YAML, so any URL stays one scalar.
    return _text("openapi.yaml").replace(LOCAL_SERVERS, f"\nservers:\n  - url: {json.dumps(url)}\n", 1)


def yaml_media_type(accept: str | None) -> str:
    """`text/plain` if `Accept` prefers it (or `text/*`) to `application/yaml`, else `application/yaml`.

    `application/yaml` is the registered type (RFC 9512); some tools, generated
    clients among them, read only `text/*` answers as text."""
    weights = {"application/yaml": 0.0, "text/plain": 0.0}
    for part in (accept or "").split(","):
        media, *parameters = [piece.strip(" \t").lower() for piece in part.split(";")]
        quality = next((_quality(p[2:]) for p in parameters if p.startswith("q=")), 1.0)
        for name in weights:
            if media in (name, name.split("/")[0] + "/*"):
                weights[name] = max(weights[name], quality)
    return "text/plain" if weights["text/plain"] > weights["application/yaml"] else "application/yaml"


def _quality(text: str) -> float:
    try:
        return min(max(float(text), 0.0), 1.0)
    except ValueError:
        return 0.0


def swagger_json(url: str) -> dict[str, Any]:
    document = copy.copy(_load("swagger.json"))
    if url.startswith(("http://", "https://")):
        scheme, rest = url.split("://", 1)
        host, _, path = rest.partition("/")
        document.update(host=host, basePath="/" + path, schemes=[scheme])
    else:  # no usable host: 2.0 then means "the host that served this document"
        document.pop("host", None)
        document["basePath"] = url
    return document


@functools.cache
def _load(name: str) -> dict[str, Any]:
    return json.loads(_text(name))


@functools.cache
def _text(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")

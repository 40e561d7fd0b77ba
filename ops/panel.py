"""`ops secret set|show`: which panel the gateway talks to, and with which key.

A running container keeps the secret for SECRET_MAX_AGE_SECONDS (60 s by default),
so a change reaches every container within that time, without a redeploy.
"""

from __future__ import annotations

from typing import Any, Callable

from ops.secret_doc import OpsError, SecretDocument, fingerprint


def set_panel(doc: SecretDocument, api_url: str | None, api_key: str | None, *,
              check: Callable[[str, str], Any] | None = None) -> dict[str, Any]:
    """Change the panel URL, the panel key or both; the callers are kept.

    `check(url, key)` runs on the final pair before anything is written (`--verify`)."""
    if api_url is None and api_key is None:
        raise OpsError("nothing to change: give --api-url and/or --api-key-stdin")
    if api_url is not None and not api_url.startswith(("https://", "http://")):
        raise OpsError("--api-url must be an http(s) URL, e.g. https://panel.example/api/v2")
    if api_key is not None and not api_key.strip():
        raise OpsError("the panel key is empty")

    def change(data: dict[str, Any]) -> dict[str, Any]:
        if api_url is None and "api_url" not in data:
            raise OpsError("the secret has no panel URL yet: give --api-url too")
        if api_key is None and "api_key" not in data:
            raise OpsError("the secret has no panel key yet: give the key too")
        if api_url is not None:
            data["api_url"] = api_url
        if api_key is not None:
            data["api_key"] = api_key.strip()
        if check is not None:
            check(data["api_url"], data["api_key"])
        data.setdefault("callers", [])
        return describe(data)

    return doc.update(change)


def show(doc: SecretDocument) -> dict[str, Any]:
    snapshot = doc.read()
    return {"secret_id": doc.secret_id, "version": snapshot.version, **describe(snapshot.data)}


def describe(data: dict[str, Any]) -> dict[str, Any]:
    """The document as it may be printed: the panel key only as a fingerprint, no caller hashes."""
    key = data.get("api_key")
    return {
        "api_url": data.get("api_url"),
        "api_key": fingerprint(key) if isinstance(key, str) and key else None,
        "callers": sorted({c.get("name") for c in data.get("callers", []) if isinstance(c, dict)} - {None}),
    }

"""`ops callers create|list|revoke`: the gateway's own API keys.

A new key is printed once and stored only as a salted hash (chalicelib/callers.py).
The caller's name is their identity in the table (ledger, idempotency records,
spending), so rotating a key keeps the name: `create NAME --additional` adds a
second key, the client switches, `revoke NAME --key-id OLD` retires the first.
Revocation reaches running containers within SECRET_MAX_AGE_SECONDS (60 s).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from chalicelib.callers import new_key, record_for
from ops.secret_doc import OpsError, SecretDocument

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # no '#': it separates the table's key parts


def create(doc: SecretDocument, name: str, *, additional: bool = False,
           now: datetime | None = None) -> tuple[str, dict[str, str]]:
    """A new key for `name`: (the key, to show once; its listing entry)."""
    if not NAME.fullmatch(name):
        raise OpsError("a caller name is 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
    key = new_key()
    record: dict[str, Any] = dict(record_for(name, key))
    record["created_at"] = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")

    def change(data: dict[str, Any]) -> None:
        callers = data.setdefault("callers", [])
        if not additional and any(c.get("name") == name for c in callers):
            raise OpsError(f"caller {name!r} already has a key; --additional adds a second one (rotation)")
        callers.append(record)

    doc.update(change)
    return key, entry(record)


def listing(doc: SecretDocument) -> list[dict[str, str]]:
    return [entry(c) for c in doc.read().data.get("callers", []) if isinstance(c, dict)]


def revoke(doc: SecretDocument, name: str, key_id: str | None = None) -> list[dict[str, str]]:
    """Remove every key of `name`, or only the one with `key_id`; returns what was removed."""

    def change(data: dict[str, Any]) -> list[dict[str, str]]:
        callers = data.get("callers", [])
        gone = [c for c in callers if c.get("name") == name and (key_id is None or entry(c)["key_id"] == key_id)]
        if not gone:
            raise OpsError(f"no key of caller {name!r}" + (f" with key id {key_id}" if key_id else ""))
        data["callers"] = [c for c in callers if c not in gone]
        return [entry(c) for c in gone]

    return doc.update(change)


def entry(record: dict[str, Any]) -> dict[str, str]:
    """What may be shown of a stored key: never its hash. The key id is the salt's start,
    which is random and says nothing about the key."""
    return {"name": str(record.get("name")), "key_id": str(record.get("salt", ""))[:8],
            "created_at": str(record.get("created_at") or "-")}

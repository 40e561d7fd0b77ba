"""Caller keys: the gateway's own API keys, stored only as salted hashes.

Keys are issued as 256 random bits, so a fast salted hash is enough (a slow KDF
protects guessable passwords, not random tokens) and keeps every request cheap.
Every stored record is checked in constant time, so timing says nothing about
which record, if any, was close.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TypedDict

KEY_PREFIX = "sgw_"


class CallerRecord(TypedDict):
    name: str
    salt: str
    hash: str


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def record_for(name: str, key: str) -> CallerRecord:
    salt = secrets.token_hex(16)
    return {"name": name, "salt": salt, "hash": _digest(salt, key)}


def identify(presented: str | None, records: list[CallerRecord]) -> str | None:
    """The name of the caller whose key this is, or None."""
    if not presented:
        return None
    found = None
    for record in records:
        if hmac.compare_digest(_digest(record["salt"], presented), record["hash"]):
            found = record["name"]
    return found


def _digest(salt: str, key: str) -> str:
    return hmac.new(salt.encode(), key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

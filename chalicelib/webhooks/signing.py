"""Standard Webhooks 1.0 signatures: what a receiver checks to know a delivery is ours.

    webhook-id         the event id, the same on every attempt (receivers de-duplicate on it)
    webhook-timestamp  Unix seconds of this attempt (receivers refuse old ones: replays)
    webhook-signature  "v1," + base64(HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}"))

The secret is `whsec_` + base64 of random bytes; the key is those bytes, as every
Standard Webhooks library (`standardwebhooks` on PyPI and npm, Svix) reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt, beside `Content-Type: application/json`."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body)}

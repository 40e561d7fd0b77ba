"""The gateway's one secret: panel URL and key, and the caller-key hashes.

Read from Secrets Manager once per container and kept for `max_age` seconds, so a
rotation is picked up without a redeploy. If a refresh fails, the last good value
keeps serving (a Secrets Manager hiccup should not take the gateway down) and the
failure is logged. Nothing else in the gateway holds the panel key.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from chalicelib import errors
from chalicelib.callers import CallerRecord, caller_of
from chalicelib.upstream import PanelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewaySecret:
    panel: PanelConfig
    callers: list[CallerRecord]

    def __repr__(self) -> str:  # never print the panel key
        return f"GatewaySecret(url={self.panel.url!r}, callers={len(self.callers)})"


def parse_secret(text: str) -> GatewaySecret:
    """Secret JSON: {"api_url": str, "api_key": str, "callers": [{"name", "salt", "hash", ...}]}.

    A caller record whose restrictions cannot be read is left out: its key is refused
    rather than served with more than it was given."""
    data = json.loads(text)
    url, key = data.get("api_url"), data.get("api_key")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not isinstance(key, str):
        raise ValueError("the secret needs api_url (http/https) and api_key strings")
    callers = [c for c in data.get("callers", []) if _is_caller(c)]
    return GatewaySecret(PanelConfig(url, key), callers)


def _is_caller(value: Any) -> bool:
    if not isinstance(value, dict) or not all(isinstance(value.get(f), str) for f in ("name", "salt", "hash")):
        return False
    try:
        caller_of(value)  # type: ignore[arg-type]
    except ValueError:
        log.warning("caller record %r has unreadable restrictions; its key is refused", value["name"])
        return False
    return True


class SecretSource:
    """Cached reader of the secret; `get()` is cheap after the first call."""

    def __init__(self, client: Any, secret_id: str, *, max_age: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._secret_id = secret_id
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._value: GatewaySecret | None = None
        self._read_at = 0.0

    def get(self) -> GatewaySecret:
        value = self._value
        if value is not None and self._clock() - self._read_at < self._max_age:
            return value
        with self._lock:
            if self._value is not None and self._clock() - self._read_at < self._max_age:
                return self._value
            try:
                text = self._client.get_secret_value(SecretId=self._secret_id)["SecretString"]
                self._value = parse_secret(text)
            except Exception as exc:  # boto errors, bad JSON, bad shape: all mean "no config"
                if self._value is None:
                    raise errors.ConfigurationUnavailable(
                        "The gateway's configuration could not be read.") from exc
                log.warning("secret refresh failed, keeping the last value: %s", type(exc).__name__)
            self._read_at = self._clock()
            return self._value

    def panel(self) -> PanelConfig:
        return self.get().panel

    def loaded_panel_key(self) -> str | None:
        """The panel key if already read (for log redaction); never does I/O."""
        return self._value.panel.key if self._value is not None else None

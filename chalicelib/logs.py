"""One JSON line per log record, so CloudWatch Insights can query every field.

The access line per request carries route, status, latency, upstream latency and
the caller's name; an unexpected exception gets one error line with its traceback.
Nothing logs request headers, bodies or the secret; the redaction below is a second
line of defence should a panel key (or the caller key of a crashed request) ever
reach a message or a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Callable, Iterable

ACCESS = logging.getLogger("chalicelib.access")
CRASH = logging.getLogger("chalicelib.crash")
_EXTRA = "fields"
_REDACT = "redact"


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Callable[[], list[str]] = list) -> None:
        super().__init__()
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, _EXTRA, {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = json.dumps(line, default=str)
        for secret in [*self._secrets(), *getattr(record, _REDACT, ())]:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def configure(secrets: Callable[[], list[str]] = list, stream: Any = None) -> None:
    """Send the gateway's loggers to one stream as JSON lines (idempotent)."""
    root = logging.getLogger("chalicelib")
    if any(getattr(h, "_smm_gateway", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(secrets))
    handler._smm_gateway = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def access(**fields: Any) -> None:
    ACCESS.info("request", extra={_EXTRA: fields})


def crash(*, redact: Iterable[str] = (), **fields: Any) -> None:
    """One error line for the exception being handled, with its traceback (call in `except`).

    `redact`: texts of this request (its caller key) to blank out of the line."""
    CRASH.error("unexpected exception", exc_info=True, extra={_EXTRA: fields, _REDACT: list(redact)})


class Relay(logging.Handler):
    """Hands each record of another library's logger to `call` (inside its `except`)."""

    def __init__(self, call: Callable[[], None]) -> None:
        super().__init__()
        self._call = call

    def emit(self, record: logging.LogRecord) -> None:
        self._call()


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, message, extra={_EXTRA: fields})

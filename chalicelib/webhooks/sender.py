"""One HTTP attempt of a delivery: a signed POST to a checked target, bounded in time and size.

No redirects (a 3xx is an answer, and following it would skip the target check), no
proxies from the environment, 10 s for the whole call (connect to last byte, held by
the deadline watchdog, as the panel client's calls are), at most READ_LIMIT bytes of
the answer read and KEEP_LIMIT kept for the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from chalicelib.deadline import WATCHDOG
from chalicelib.webhooks import signing
from chalicelib.webhooks.targets import PinnedAdapter, Target

TIMEOUT_SECONDS = 10.0
READ_LIMIT = 1024
KEEP_LIMIT = 256
USER_AGENT = "smm-gateway-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (timeout, connection error)
    error: str | None
    body: str | None  # the first KEEP_LIMIT bytes of the answer, as text
    duration_ms: float


class Sender:
    def __init__(self, timeout: float = TIMEOUT_SECONDS, clock: Callable[[], float] = time.time,
                 verify: bool | str = True) -> None:
        self.timeout = timeout
        self._clock = clock
        self._verify = verify  # a CA bundle path in tests; the system's trust deployed

    def post(self, target: Target, secret: str, message_id: str, body: bytes) -> Answer:
        session = requests.Session()
        session.trust_env = False  # no proxy or .netrc from the environment: the target goes as checked
        adapter = PinnedAdapter(target)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **signing.headers(secret, message_id, int(self._clock()), body)}
        started = time.perf_counter()
        try:
            with WATCHDOG.guard(self.timeout) as deadline:
                try:
                    response = session.post(target.url, data=body, headers=headers, allow_redirects=False,
                                            stream=True, timeout=self.timeout, verify=self._verify)
                    try:
                        head = response.raw.read(READ_LIMIT, decode_content=False) or b""
                    finally:
                        response.close()
                except (requests.RequestException, OSError) as exc:
                    late = deadline.expired or isinstance(exc, requests.Timeout)
                    error = f"no answer within {self.timeout:g} s" if late else _short(exc)
                    return Answer(None, error, None, _ms(started))
            if deadline.expired:
                return Answer(None, f"no answer within {self.timeout:g} s", None, _ms(started))
        finally:
            session.close()
        kept = head[:KEEP_LIMIT].decode("utf-8", errors="replace")
        return Answer(response.status_code, _refusal(response.status_code), kept, _ms(started))


def _refusal(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    return f"answered {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _short(exc: Any) -> str:
    """What went wrong, without the URL: requests' messages repeat it, and a URL may carry a
    token of the receiver's (Power Automate's `sig=`), which has no place in a log line."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (certificate or handshake)"
    if isinstance(exc, requests.ConnectionError):
        if "refused" in text.lower():
            return "connection refused"
        if "reset" in text.lower() or "aborted" in text.lower():
            return "connection reset"
        return "connection failed"
    return type(exc).__name__

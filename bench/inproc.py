"""The gateway inside a benchmark process: `app.app` called as Lambda calls it.

The panel is the canned adapter mounted on the gateway's own session; AWS is the
moto server the parent process runs. A botocore hook on each AWS client counts
requests and measures the time each spends on the wire (from `before-send` to
`before-parse`), which is taken out of the gateway's own time: signing, encoding
and parsing stay in, the emulator's work does not.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

from bench.canned import PANEL_URL, CannedPanel
from bench.events import LambdaContext, fresh


class AwsTally:
    """Requests per AWS service and the wall time spent waiting for answers."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()
        self.wait_ns = 0
        self.client_ns = 0
        self._lock = threading.Lock()
        self._sent_at = threading.local()

    def watch(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        events = client.meta.events
        # Handlers return None: a value from before-call or before-send would replace the request.
        events.register(f"before-parameter-build.{service}", lambda **kw: self._start())
        events.register(f"before-call.{service}", lambda **kw: self._count(self.calls, service))
        events.register(f"before-send.{service}", lambda **kw: self._send(service))
        events.register(f"before-parse.{service}", lambda **kw: self._received())
        events.register(f"after-call.{service}", lambda **kw: self._done())

    def _start(self) -> None:
        self._sent_at.started = time.perf_counter_ns()

    def _done(self) -> None:
        spent = time.perf_counter_ns() - self._sent_at.started
        with self._lock:
            self.client_ns += spent  # wire time included; `botocore_ns` takes it out

    @property
    def botocore_ns(self) -> int:
        """botocore's own work so far: validating, serialising, signing, parsing."""
        return self.client_ns - self.wait_ns

    def _count(self, counter: Counter[str], service: str) -> None:
        with self._lock:
            counter[service] += 1

    def _send(self, service: str) -> None:
        self._count(self.sends, service)
        self._sent_at.value = time.perf_counter_ns()

    def _received(self) -> None:
        waited = time.perf_counter_ns() - self._sent_at.value
        with self._lock:
            self.wait_ns += waited


class Gateway:
    """`app` with the canned panel mounted and AWS tallied."""

    def __init__(self, services: bytes) -> None:
        import app  # the Lambda entry point, imported the way the runtime imports it

        self.app = app
        self.panel = CannedPanel(services)
        # Seam: the client keeps its session private; mounting an adapter changes only the socket.
        app.panel()._session.mount(PANEL_URL, self.panel)
        self.aws = AwsTally()
        self.aws.watch(app.boto_client("secretsmanager"))  # built by panel() already
        self.context = LambdaContext()

    def watch_dynamodb(self) -> None:
        """Tally the DynamoDB client too (building it, if no request has yet)."""
        self.aws.watch(self.app.boto_client("dynamodb"))

    def call(self, ev: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The handler's answer and the gateway's own time in ns (AWS wire time taken out)."""
        ev = fresh(ev)
        waited = self.aws.wait_ns
        started = time.perf_counter_ns()
        answer = self.app.app(ev, self.context)
        spent = time.perf_counter_ns() - started
        return answer, spent - (self.aws.wait_ns - waited)

    def expect(self, ev: dict[str, Any], status: int) -> Any:
        answer, _ = self.call(ev)
        if answer["statusCode"] != status:
            raise RuntimeError(f"{ev['httpMethod']} {ev['path']}: expected {status}, got "
                               f"{answer['statusCode']} {answer['body'][:300]}")
        return json.loads(answer["body"])

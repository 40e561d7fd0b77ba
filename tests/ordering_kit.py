"""Building blocks for the order-creation tests: a desk on the sandbox and moto,
a clock the test moves, and DynamoDB faults injected through botocore's own hooks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import requests
from botocore.awsrequest import AWSResponse

from chalicelib.catalogue import Catalogue
from chalicelib.account import AccountCurrency
from chalicelib.orders.desk import OrderDesk, Policy
from chalicelib.schemas import Schemas, load_spec
from chalicelib.orders.store import DynamoStore
from chalicelib.upstream import PanelClient, PanelConfig
from local.aws import TABLE
from sandbox import DEFAULT_KEY
from tests.conftest import DEFAULT_TIMEOUT

START = 1_800_000_000.0
_SCHEMAS: list[Schemas] = []


class Clock:
    """Wall-clock seconds that only move when the test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Upstream:
    """The panel URL the desk's client uses; tests can point it at a closed port."""

    url: str
    key: str = DEFAULT_KEY

    def __call__(self) -> PanelConfig:
        return PanelConfig(self.url, self.key)


@dataclass
class Rig:
    desk: OrderDesk
    clock: Clock
    upstream: Upstream
    dynamodb: Any
    policy: Policy
    catalogue: Catalogue
    faults: list["DynamoFault"] = field(default_factory=list)

    def place(self, body: dict[str, Any], key: str | None = "key-1", caller: str = "alice",
              form: bool = False) -> Any:
        return self.desk.place(caller, key, body, form=form)

    def items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=TABLE)["Items"]


def schemas() -> Schemas:
    if not _SCHEMAS:
        _SCHEMAS.append(Schemas(load_spec()))
    return _SCHEMAS[0]


def make_rig(aws: Any, panel_url: str, *, timeout: float = DEFAULT_TIMEOUT,
             session: requests.Session | None = None, **policy: Any) -> Rig:
    """A desk whose panel calls time out after `timeout`; its catalogue is read with
    the default timeout, so a short one applies only to the calls a test stalls."""
    clock, upstream = Clock(), Upstream(panel_url)
    client = PanelClient(session or requests.Session(), upstream, timeout=timeout, sleep=lambda _: None)
    services = PanelClient(requests.Session(), upstream, timeout=DEFAULT_TIMEOUT, sleep=lambda _: None).services
    dynamodb = aws.new_client("dynamodb")  # its own: faults are hooked into it
    settings = Policy(**{"lease_seconds": 60.0, **policy})
    catalogue = Catalogue(services)
    desk = OrderDesk(client, catalogue, DynamoStore(dynamodb, TABLE), schemas(), settings,
                     clock=clock, currency=AccountCurrency(client.balance, clock=clock))
    return Rig(desk, clock, upstream, dynamodb, settings, catalogue)


class DynamoFault:
    """Fail chosen calls of one DynamoDB operation before they leave botocore.

    `before-call` handlers that return a response short-circuit the HTTP call, so
    this is botocore's own error path (a ClientError), with no retries applied.
    """

    def __init__(self, client: Any, operation: str, *, calls: set[int], code: str = "ThrottlingException",
                 exception: Callable[[], Exception] | None = None) -> None:
        self.seen = 0
        self._calls, self._code, self._exception = calls, code, exception
        self._lock = threading.Lock()
        client.meta.events.register(f"before-call.dynamodb.{operation}", self._handle)

    def _handle(self, **_: Any) -> Any:
        with self._lock:
            self.seen += 1
            hit = self.seen in self._calls
        if not hit:
            return None
        if self._exception is not None:
            raise self._exception()
        parsed = {"Error": {"Code": self._code, "Message": "Rate of requests exceeds the allowed throughput."},
                  "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://dynamodb.invalid", 400, {}, None), parsed


def default_order(link: str = "https://www.instagram.com/p/one/", quantity: int = 100) -> dict[str, Any]:
    return {"service": 1, "link": link, "quantity": quantity}


def money(text: str) -> Decimal:
    return Decimal(text)

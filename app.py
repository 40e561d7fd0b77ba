"""smm-gateway: a REST facade over an SMM panel's action-style API v2.

This module wires and routes. Collaborators are built on first use, once per
Lambda container, from the environment; each route reads the request, calls one
function from `chalicelib` and returns what it gives back.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import time
from typing import Any, Callable

from chalice import Chalice, Rate, Response
from chalice.app import handle_extra_types

from chalicelib import errors, http, logs, timing

app = Chalice(app_name="smm-gateway")
# Chalice logs to app.log only the exceptions it catches itself (and answers 500 for).
# A view's are caught in `route` first; what is left, such as an answer Chalice
# refuses, gets the same crash line instead of Chalice's plain text.
app.log.handlers[:] = [logs.Relay(lambda: log_crash())]

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)
# The presented key's caller and what the key may do (chalicelib.callers.Caller).
_key: contextvars.ContextVar[Any] = contextvars.ContextVar("key", default=None)
# Chalice keeps `app.current_request` on the shared app object, which concurrent
# requests overwrite under `chalice local`'s threaded server; the envelope keeps
# each request in its own context instead, and views read it from there.
_request: contextvars.ContextVar[Any] = contextvars.ContextVar("request")
_query: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("query")
# The Lambda context of the invocation this code runs for (None outside Lambda). Chalice
# keeps only the last HTTP request's, on the shared app object, and none for a schedule:
# read there, the status sync would inherit a finished request's deadline (`time_left`).
_invocation: contextvars.ContextVar[Any] = contextvars.ContextVar("invocation", default=None)


def current_request() -> Any:
    return _request.get()


# -- collaborators, built lazily (cold starts import nothing heavy) ------------------


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@functools.cache
def boto_client(service: str) -> Any:
    import boto3  # lazy: boto3 is the largest import of the function
    from botocore.config import Config

    # Bounded: botocore's defaults (60 s timeouts, up to 10 DynamoDB retries) could
    # outlast the function's 28 s; three tries of a few seconds cannot.
    return boto3.session.Session().client(service, config=Config(
        connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 3}))


@functools.cache
def secret() -> Any:
    from chalicelib.secret import SecretSource

    return SecretSource(boto_client("secretsmanager"), env("GATEWAY_SECRET_ID", "smm-gateway/dev"),
                        max_age=float(env("SECRET_MAX_AGE_SECONDS", "60")))


@functools.cache
def panel() -> Any:
    import requests

    from chalicelib.upstream import PanelClient

    return PanelClient(requests.Session(), secret().panel,
                       timeout=float(env("SMM_TIMEOUT_SECONDS", "10")), remaining=time_left)


def time_left() -> float | None:
    """Seconds before Lambda stops this invocation; None when not run by Lambda."""
    context = _invocation.get()
    return context.get_remaining_time_in_millis() / 1000 if context is not None else None


@functools.cache
def catalogue() -> Any:
    from chalicelib.catalogue import Catalogue

    return Catalogue(panel().services, ttl=float(env("CATALOGUE_TTL_SECONDS", "300")))


@functools.cache
def pool() -> Any:
    """The threads that run batch panel calls concurrently (reads and the status sync)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=10, thread_name_prefix="panel")


@functools.cache
def orders() -> Any:
    from chalicelib.orders.existing import Orders

    return Orders(panel(), pool(), refills(), observed=status_sync().observed)


@functools.cache
def refills() -> Any:
    from chalicelib.orders.refills import DynamoRefills

    return DynamoRefills(boto_client("dynamodb"), table(), published=outbox().dispatch)


@functools.cache
def status_sync() -> Any:
    from chalicelib.orders.sync import StatusSync

    return StatusSync(panel(), store(), refills(), pool())


@functools.cache
def event_log() -> Any:
    from chalicelib.events.log import DynamoEventLog

    return DynamoEventLog(boto_client("dynamodb"), table())


def keys_orders() -> Any:
    """`orders()` as this request's key sees them: a key limited to its own orders
    gets only those (one DynamoDB read per request); any other key, all of them."""
    key = _key.get()
    if not key.own_orders_only:
        return orders()
    from chalicelib.orders.own import OwnOrders

    return OwnOrders(orders(), key.name, store(), refills())


@functools.cache
def schemas() -> Any:
    from chalicelib.schemas import Schemas, load_spec

    return Schemas(load_spec())


def table() -> str:
    return env("GATEWAY_TABLE", "smm-gateway-dev")


@functools.cache
def store() -> Any:
    from chalicelib.orders.store import DynamoStore

    return DynamoStore(boto_client("dynamodb"), table(), published=outbox().dispatch)


@functools.cache
def placing_store() -> Any:
    """The desk's store: its events (order.created, order.outcome_unknown, a status the
    ledger read learned) are written with their change and published by the outbox's
    sweep, not in-line, so `POST /orders` costs two DynamoDB requests and waits on
    nothing else (webhooks and the bus get them within a schedule interval)."""
    from chalicelib.orders.store import DynamoStore

    return DynamoStore(boto_client("dynamodb"), table())


@functools.cache
def desk() -> Any:
    from decimal import Decimal

    from chalicelib.orders.desk import OrderDesk, Policy

    def amount(name: str) -> Decimal | None:
        return Decimal(os.environ[name]) if os.environ.get(name) else None

    policy = Policy(
        key_required=env("IDEMPOTENCY_KEY_REQUIRED", "true").lower() != "false",
        retention_seconds=float(env("IDEMPOTENCY_RETENTION_DAYS", "7")) * 86400,
        lease_seconds=float(env("SMM_TIMEOUT_SECONDS", "10")) * 2 + 30,
        max_order_charge=amount("MAX_ORDER_CHARGE"),
        daily_spend_limit=amount("DAILY_SPEND_LIMIT"),
    )
    return OrderDesk(panel(), catalogue(), placing_store(), schemas(), policy, currency=currency())


@functools.cache
def account() -> Any:
    from chalicelib.account import Account, threshold
    from chalicelib.events.balance import BalanceLowEvents

    low = threshold(os.environ.get("BALANCE_LOW_THRESHOLD"))
    if low is None:
        return Account(panel().balance, None)
    # balance.low goes to every caller of the deployment: the balance is the deployment's
    watch = BalanceLowEvents(boto_client("dynamodb"), table(), callers=lambda: [
        c["name"] for c in secret().get().callers], published=outbox().dispatch)
    return Account(panel().balance, low, watch)


@functools.cache
def outbox() -> Any:
    """Where every event goes once written: to webhook subscriptions, and EventBridge if EVENT_BUS_NAME is set."""
    from chalicelib.events.outbox import Outbox

    sinks: list[Any] = [webhook_sink()]
    bus = os.environ.get("EVENT_BUS_NAME")
    if bus:
        from chalicelib.events.eventbridge import EventBridgeSink

        sinks.append(EventBridgeSink(boto_client("events"), bus))
    return Outbox(boto_client("dynamodb"), table(), sinks)


def publish_pending() -> int:
    """The outbox's sweep, run by the scheduled function after the status sync: events
    whose in-line publishing failed or never ran. Returns how many it read."""
    return int(outbox().sweep())


@functools.cache
def currency() -> Any:
    from chalicelib.account import AccountCurrency

    return AccountCurrency(account().balance)


@functools.cache
def webhook_targets() -> Any:
    from chalicelib.webhooks.targets import Targets

    return Targets(allow_private=env("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false").lower() == "true")


@functools.cache
def webhook_queue() -> Any:
    from chalicelib.webhooks.queue import SqsQueue

    return SqsQueue(boto_client("sqs"), env("WEBHOOK_QUEUE_URL", ""))


@functools.cache
def subscription_store() -> Any:
    from chalicelib.webhooks.subscriptions import DynamoSubscriptions

    return DynamoSubscriptions(boto_client("dynamodb"), table())


@functools.cache
def delivery_store() -> Any:
    from chalicelib.webhooks.deliveries import DynamoDeliveries

    return DynamoDeliveries(boto_client("dynamodb"), table())


@functools.cache
def webhook_sink() -> Any:
    """The outbox's "webhooks" sink (events/outbox.py gives it every event)."""
    from chalicelib.webhooks.sink import WebhookSink

    return WebhookSink(subscription_store(), delivery_store(), webhook_queue())


@functools.cache
def webhooks() -> Any:
    from chalicelib.webhooks.subscriptions import Subscriptions

    return Subscriptions(subscription_store(), webhook_targets(), published=outbox().dispatch)


@functools.cache
def delivery_log() -> Any:
    from chalicelib.webhooks.deliveries import DeliveryLog

    return DeliveryLog(delivery_store(), webhook_queue())


@functools.cache
def webhook_worker() -> Any:
    from chalicelib.webhooks.sender import Sender
    from chalicelib.webhooks.worker import Worker, retry_seconds

    return Worker(subscription_store(), delivery_store(), webhook_queue(), webhook_targets(),
                  Sender(), delays=retry_seconds(os.environ.get("WEBHOOK_RETRY_SECONDS")))


def _loaded_panel_key() -> list[str]:
    """The panel key, for log redaction, only if the secret was already read."""
    key = secret().loaded_panel_key() if secret.cache_info().currsize else None
    return [key] if key else []


logs.configure(secrets=_loaded_panel_key)


# -- the envelope: request id, caller key, one error shape, one log line ------------------


@app.middleware("http")
def envelope(event: Any, get_response: Callable[[Any], Response]) -> Response:
    request_id = (event.context or {}).get("requestId") or os.urandom(16).hex()
    _request_id.set(request_id)
    _request.set(event)
    # Chalice set it for this request; it ends with the request, so code run later in this
    # thread (a test's direct call, the next invocation) never counts down a finished one.
    invocation = _invocation.set(getattr(app, "lambda_context", None))
    _caller.set(None)
    _key.set(None)
    spent = timing.start_request()
    started = time.perf_counter()
    try:
        response = http.framework_error(get_response(event), request_id, content_type=event.headers.get(
            "content-type"), accepted=body_types(event.context.get("resourcePath"), event.method))
    except Exception:  # outside any view (a view's own are caught in `route`)
        response = crashed()
    finally:
        _invocation.reset(invocation)
    response.headers["X-Request-Id"] = request_id
    logs.access(request_id=request_id, method=event.method, route=event.context.get("resourcePath"),
                status=response.status_code, error=error_code(response),
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                upstream_ms=round(sum(spent) * 1000, 2), upstream_calls=len(spent), caller=_caller.get())
    return response


def body_types(path: str | None, method: str) -> tuple[str, ...]:
    """The Content-Types the route at `path` takes for `method` (what a 415 lists)."""
    entry = app.routes.get(path or "", {}).get(method)
    return tuple(entry.content_types) if entry is not None else ()


def error_code(response: Response) -> str | None:
    """The `code` of an answer in the one error shape (what the log alarms count), else None."""
    body = response.body
    if response.status_code < 400:
        return None
    if isinstance(body, (str, bytes)):  # `route` answers are serialised already (see `serialised`)
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


# Each route's scope (None: public), as its `route(..., scope=)` names it: the one table
# of who may call what. tests/test_scopes.py checks it against openapi.yaml.
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {}


def route(path: str, methods: tuple[str, ...] = ("GET",), *, scope: str | None = None, public: bool = False,
          status: int = 200, content_types: list[str] | None = None
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.route` plus caller authentication, the key's scope and the translation of domain errors.

    Every route names its `scope`, or is `public`: a route with neither is a bug caught
    at import, before it can serve anyone."""
    from chalicelib.callers import SCOPES

    if public == (scope is not None) or (scope is not None and scope not in SCOPES):
        raise TypeError(f"route {path}: give it one scope= of {SCOPES}, or public=True")
    for method in methods:
        ROUTE_SCOPES[(method, path)] = scope

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handle(**params: Any) -> Response:
            try:
                try:
                    request = current_request()
                    if scope is not None:
                        authorize(authenticate(header("X-API-Key", errors.Unauthorized)), scope)
                    http.require_event_unicode(request.to_original_event())
                    _query.set(checked_query(request))
                    result = view(**params)
                    response = result if isinstance(result, Response) else Response(body=result,
                                                                                     status_code=status)
                except errors.GatewayError as err:
                    code, body, headers = http.error_answer(err, _request_id.get())
                    response = Response(body=body, status_code=code, headers=headers)
                return serialised(response)
            except Exception:  # a bug: answered here, in the one shape, with the request's id
                return crashed()

        return app.route(path, methods=list(methods), content_types=content_types or list(BODY_TYPES))(handle)

    return register


def serialised(response: Response) -> Response:
    """The answer with its JSON body written out now, as Chalice would write it later,
    out of reach of `route`'s crash handling: a value json refuses (a number of 5000
    digits) must be a logged 500, not a 200 in the access line and no answer at all."""
    if not isinstance(response.body, (str, bytes)):
        response.body = json.dumps(response.body, separators=(",", ":"), default=handle_extra_types)
    return response


def crashed() -> Response:
    """The exception being handled, a bug: one error line with its traceback, and a 500."""
    log_crash()
    error = errors.InternalError("An internal error occurred; it has been logged.")
    code, body, headers = http.error_answer(error, _request_id.get())
    return Response(body=body, status_code=code, headers=headers)


def log_crash() -> None:
    request = _request.get(None)
    presented = (request.headers.get("x-api-key") or "").strip() if request is not None else ""
    logs.crash(request_id=_request_id.get(), method=getattr(request, "method", None),
               route=(getattr(request, "context", None) or {}).get("resourcePath"), caller=_caller.get(),
               redact=[presented] if len(presented) >= 8 else [])


# Bodyless POSTs (refill, cancel) also come from webhook steps that send a form type.
BODY_TYPES = ("application/json", "application/x-www-form-urlencoded")


def authenticate(presented: str | None) -> Any:
    from chalicelib.callers import identify

    caller = identify(presented, secret().get().callers)
    if caller is None:
        raise errors.Unauthorized("A valid X-API-Key header is required.")
    _caller.set(caller.name)
    _key.set(caller)
    return caller


def authorize(caller: Any, scope: str) -> None:
    if not caller.allows(scope):
        raise errors.Forbidden(f"This key does not have the scope {scope}, which this route needs.",
                               details={"required_scope": scope})


def checked_query(request: Any) -> dict[str, str]:
    """The query string, checked against the route's parameters in openapi.yaml.

    Every route checks it, so `/balance?curency=EUR` is a 400, not a silent 200."""
    raw = request.query_params  # a Chalice MultiDict, or None without a query string
    repeated = sorted(name for name in raw if len(raw.getlist(name)) > 1) if raw else []
    if repeated:
        raise errors.ValidationError(f"{repeated[0]}: the query parameter is given more than once; send it "
                                     "once.", details={"field": repeated[0]})
    return schemas().query(request.method, request.context["resourcePath"], raw)


def query(**readers: Callable[[str], Any]) -> dict[str, Any]:
    """This request's checked query parameters, read into values."""
    return {name: readers.get(name, str)(value) for name, value in _query.get().items()}


def header(name: str, refused: type[errors.GatewayError] = errors.ValidationError) -> str | None:
    """This request's header `name`, judged by its lines: API Gateway (and the local run)
    list every line in multiValueHeaders, while `headers` keeps only the last."""
    request = current_request()
    return http.field_value(request.headers, request.to_original_event().get("multiValueHeaders"), name, refused)


def body(form: bool = False) -> Any:
    request = current_request()
    return http.read_body(request.raw_body, request.headers.get("content-type"), form=form)


# -- routes -----------------------------------------------------------------------


@route("/health", public=True)
def health() -> dict[str, str]:
    return {"status": "ok"}


@route("/balance", scope="balance:read")
def balance() -> dict[str, Any]:
    return account().balance()


@route("/services", scope="services:read")
def list_services() -> Response:
    filters = query(refill=lambda v: http.parse_flag(v, "refill"), cancel=lambda v: http.parse_flag(v, "cancel"))
    text = catalogue().snapshot().answer(**filters)
    return Response(body=text, headers={"Content-Type": "application/json"})


@route("/services/{service_id}", scope="services:read")
def get_service(service_id: str) -> Any:
    return catalogue().get(http.parse_id(service_id))  # the spec's name for it: `id`


@route("/orders", methods=("POST",), scope="orders:write", status=201)
def create_order() -> Response:
    sent, key = body(form=True), _key.get()
    # Sent twice, it is refused as X-API-Key is: read as one joined value it would be a key of its own.
    answer = desk().place(key.name, header("Idempotency-Key"), sent, form=isinstance(sent, http.FormFields),
                          max_order_charge=key.max_order_charge, daily_spend_limit=key.daily_spend_limit)
    return Response(body=answer.body, status_code=answer.status, headers=answer.headers)


@route("/orders", scope="orders:read")
def list_orders() -> dict[str, Any]:
    params = query(ids=http.parse_ids, limit=http.parse_limit, cursor=str, state=str)
    if "ids" in params:
        if set(params) != {"ids"}:
            raise errors.ValidationError("ids cannot be combined with limit, cursor or state.")
        return {"orders": keys_orders().statuses(params["ids"])}
    return desk().ledger(_caller.get(), **params)


@route("/orders/{order_id}", scope="orders:read")
def get_order(order_id: str) -> dict[str, Any]:
    return keys_orders().status(http.parse_id(order_id))


@route("/orders/{order_id}/refill", methods=("POST",), scope="orders:write", status=201)
def refill_order(order_id: str) -> dict[str, Any]:
    return keys_orders().refill(_caller.get(), http.parse_id(order_id))


@route("/orders/{order_id}/cancel", methods=("POST",), scope="orders:write")
def cancel_order(order_id: str) -> dict[str, Any]:
    return keys_orders().cancel(http.parse_id(order_id))


@route("/orders/cancel", methods=("POST",), scope="orders:write", content_types=["application/json"])
def cancel_orders() -> dict[str, Any]:
    request = schemas().checked("CancelBatchRequest", body())
    return {"orders": keys_orders().cancels(request["orders"])}


@route("/refills", methods=("POST",), scope="orders:write", content_types=["application/json"])
def create_refills() -> dict[str, Any]:
    request = schemas().checked("RefillBatchRequest", body())
    return {"refills": keys_orders().refills(_caller.get(), request["orders"])}


@route("/refills", scope="orders:read")
def list_refills() -> dict[str, Any]:
    return {"refills": keys_orders().refill_statuses(query(ids=http.parse_ids)["ids"])}


@route("/refills/{refill_id}", scope="orders:read")
def get_refill(refill_id: str) -> dict[str, Any]:
    return keys_orders().refill_status(http.parse_id(refill_id))


@route("/events", scope="events:read")
def list_events() -> dict[str, Any]:
    return event_log().page(_caller.get(), **query(limit=http.parse_limit))


@route("/events/{event_id}", scope="events:read")
def get_event(event_id: str) -> dict[str, Any]:
    return event_log().get(_caller.get(), event_id)


# -- the schedule -----------------------------------------------------------------------


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sync_statuses(event: Any) -> dict[str, int]:
    """Every minute deployed (local/run.py: every STATUS_SYNC_SECONDS): the status sync,
    then the outbox's sweep (events whose in-line publishing failed or never ran), which
    runs even when the sync failed."""
    invocation = _invocation.set(event.context)
    try:
        return status_sync().run()
    finally:
        try:
            publish_pending()
        finally:
            _invocation.reset(invocation)


# -- webhooks ----------------------------------------------------------------------


@route("/webhooks", methods=("POST",), scope="webhooks:write", status=201, content_types=["application/json"])
def create_webhook() -> Response:
    from chalicelib import spec_docs

    webhook = webhooks().create(_caller.get(), schemas().checked("WebhookRequest", body()))
    request = current_request()
    location = f"{spec_docs.base_url(request.headers, request.context)}/webhooks/{webhook.id}"
    return Response(body=webhook.public(with_secret=True), status_code=201, headers={"Location": location})


@route("/webhooks", scope="webhooks:write")
def list_webhooks() -> dict[str, Any]:
    found = webhooks().list(_caller.get(), query().get("url"))
    return {"webhooks": [webhook.public() for webhook in found]}


@route("/webhooks/{webhook_id}", scope="webhooks:write")
def get_webhook(webhook_id: str) -> dict[str, Any]:
    return webhooks().get(_caller.get(), webhook_id).public(with_secret=True)


@route("/webhooks/{webhook_id}", methods=("DELETE",), scope="webhooks:write")
def delete_webhook(webhook_id: str) -> Response:
    webhooks().delete(_caller.get(), webhook_id)
    return Response(body="", status_code=204)


@route("/webhooks/{webhook_id}/test", methods=("POST",), scope="webhooks:write", status=202)
def test_webhook(webhook_id: str) -> dict[str, Any]:
    return webhooks().test(_caller.get(), webhook_id).public()


@route("/webhooks/{webhook_id}/deliveries", scope="webhooks:write")
def list_deliveries(webhook_id: str) -> dict[str, Any]:
    params = query(limit=http.parse_limit)
    webhook = webhooks().get(_caller.get(), webhook_id)
    return delivery_log().page(webhook, params.get("limit", 20), params.get("cursor"))


@route("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", methods=("POST",), scope="webhooks:write",
       status=202)
def redeliver(webhook_id: str, delivery_id: str) -> dict[str, Any]:
    webhook = webhooks().get(_caller.get(), webhook_id)
    delivery = delivery_log().redeliver(webhook, delivery_id, time.time())
    return {"id": delivery.id, "event_id": delivery.event_id, "status": "pending"}


# Packaged, infra/resources.json points this event source at the stage's own queue
# (WebhookQueue); the ARN here only stands in for it, as Chalice wants one at import.
# make run's worker thread (local/run.py) calls this same function.
@app.on_sqs_message(queue_arn="arn:aws:sqs:us-east-1:000000000000:smm-gateway-webhooks", batch_size=1,
                    name="webhook_worker")
def deliver_webhooks(event: Any) -> None:
    from chalicelib.webhooks.queue import Message

    for record in event:
        try:
            webhook_worker().handle(Message.read(record.body))
        except Exception:  # the message comes back (its dead-letter queue after 5 tries): say why, once
            logs.crash(route="webhook worker", message_id=record.to_dict().get("messageId"))
            raise


# -- the API description (public, so no-code tools can import it by URL) ----------------


@route("/openapi.json", public=True)
def openapi_json() -> Response:
    from chalicelib import spec_docs

    request = current_request()
    document = spec_docs.openapi_json(spec_docs.base_url(request.headers, request.context))
    return Response(body=document, headers={"Content-Type": "application/json"})


@route("/openapi.yaml", public=True)
def openapi_yaml() -> Response:
    from chalicelib import spec_docs

    request = current_request()
    text = spec_docs.openapi_yaml(spec_docs.base_url(request.headers, request.context))
    media = spec_docs.yaml_media_type(request.headers.get("accept"))
    return Response(body=text, headers={"Content-Type": f"{media}; charset=utf-8"})


@route("/swagger.json", public=True)
def swagger_json() -> Response:
    from chalicelib import spec_docs

    request = current_request()
    document = spec_docs.swagger_json(spec_docs.base_url(request.headers, request.context))
    return Response(body=document, headers={"Content-Type": "application/json"})

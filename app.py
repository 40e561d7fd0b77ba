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

from chalice import Chalice, Response
from chalice.app import handle_extra_types

from chalicelib import errors, http, logs, timing

app = Chalice(app_name="smm-gateway")
# Chalice logs to app.log only the exceptions it catches itself (and answers 500 for).
# A view's are caught in `route` first; what is left, such as an answer Chalice
# refuses, gets the same crash line instead of Chalice's plain text.
app.log.handlers[:] = [logs.Relay(lambda: log_crash())]

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)
# Chalice keeps `app.current_request` on the shared app object, which concurrent
# requests overwrite under `chalice local`'s threaded server; the envelope keeps
# each request in its own context instead, and views read it from there.
_request: contextvars.ContextVar[Any] = contextvars.ContextVar("request")
_query: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("query")


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
    context = getattr(app, "lambda_context", None)  # set by Chalice on each invocation
    return context.get_remaining_time_in_millis() / 1000 if context is not None else None


@functools.cache
def catalogue() -> Any:
    from chalicelib.catalogue import Catalogue

    return Catalogue(panel().services, ttl=float(env("CATALOGUE_TTL_SECONDS", "300")))


@functools.cache
def orders() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.orders.existing import Orders

    return Orders(panel(), ThreadPoolExecutor(max_workers=10, thread_name_prefix="panel"))


@functools.cache
def schemas() -> Any:
    from chalicelib.schemas import Schemas, load_spec

    return Schemas(load_spec())


@functools.cache
def store() -> Any:
    from chalicelib.orders.store import DynamoStore

    return DynamoStore(boto_client("dynamodb"), env("GATEWAY_TABLE", "smm-gateway-dev"))


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
    return OrderDesk(panel(), catalogue(), store(), schemas(), policy, currency=currency())


@functools.cache
def account() -> Any:
    from chalicelib.account import Account, threshold

    return Account(panel().balance, threshold(os.environ.get("BALANCE_LOW_THRESHOLD")))


@functools.cache
def currency() -> Any:
    from chalicelib.account import AccountCurrency

    return AccountCurrency(account().balance)


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
    _caller.set(None)
    spent = timing.start_request()
    started = time.perf_counter()
    try:
        response = http.framework_error(get_response(event), request_id, content_type=event.headers.get(
            "content-type"), accepted=body_types(event.context.get("resourcePath"), event.method))
    except Exception:  # outside any view (a view's own are caught in `route`)
        response = crashed()
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


def route(path: str, methods: tuple[str, ...] = ("GET",), *, public: bool = False, status: int = 200,
          content_types: list[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.route` plus caller authentication and the translation of domain errors."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handle(**params: Any) -> Response:
            try:
                try:
                    request = current_request()
                    if not public:
                        _caller.set(authenticate(header("X-API-Key", errors.Unauthorized)))
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


def authenticate(presented: str | None) -> str:
    from chalicelib.callers import identify

    name = identify(presented, secret().get().callers)
    if name is None:
        raise errors.Unauthorized("A valid X-API-Key header is required.")
    return name


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


@route("/balance")
def balance() -> dict[str, Any]:
    return account().balance()


@route("/services")
def list_services() -> Response:
    filters = query(refill=lambda v: http.parse_flag(v, "refill"), cancel=lambda v: http.parse_flag(v, "cancel"))
    text = catalogue().snapshot().answer(**filters)
    return Response(body=text, headers={"Content-Type": "application/json"})


@route("/services/{service_id}")
def get_service(service_id: str) -> Any:
    return catalogue().get(http.parse_id(service_id))  # the spec's name for it: `id`


@route("/orders", methods=("POST",), status=201)
def create_order() -> Response:
    sent = body(form=True)
    # Sent twice, it is refused as X-API-Key is: read as one joined value it would be a key of its own.
    answer = desk().place(_caller.get(), header("Idempotency-Key"), sent, form=isinstance(sent, http.FormFields))
    return Response(body=answer.body, status_code=answer.status, headers=answer.headers)


@route("/orders")
def list_orders() -> dict[str, Any]:
    params = query(ids=http.parse_ids, limit=http.parse_limit, cursor=str, state=str)
    if "ids" in params:
        if set(params) != {"ids"}:
            raise errors.ValidationError("ids cannot be combined with limit, cursor or state.")
        return {"orders": orders().statuses(params["ids"])}
    return desk().ledger(_caller.get(), **params)


@route("/orders/{order_id}")
def get_order(order_id: str) -> dict[str, Any]:
    return orders().status(http.parse_id(order_id))


@route("/orders/{order_id}/refill", methods=("POST",), status=201)
def refill_order(order_id: str) -> dict[str, Any]:
    return orders().refill(http.parse_id(order_id))


@route("/orders/{order_id}/cancel", methods=("POST",))
def cancel_order(order_id: str) -> dict[str, Any]:
    return orders().cancel(http.parse_id(order_id))


@route("/orders/cancel", methods=("POST",), content_types=["application/json"])
def cancel_orders() -> dict[str, Any]:
    request = schemas().checked("CancelBatchRequest", body())
    return {"orders": orders().cancels(request["orders"])}


@route("/refills", methods=("POST",), content_types=["application/json"])
def create_refills() -> dict[str, Any]:
    request = schemas().checked("RefillBatchRequest", body())
    return {"refills": orders().refills(request["orders"])}


@route("/refills")
def list_refills() -> dict[str, Any]:
    return {"refills": orders().refill_statuses(query(ids=http.parse_ids)["ids"])}


@route("/refills/{refill_id}")
def get_refill(refill_id: str) -> dict[str, Any]:
    return orders().refill_status(http.parse_id(refill_id))


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

"""Every way a gateway call can fail, as one flat family of exceptions.

Each leaf carries the HTTP status and the stable `code` that callers see; the web
layer (`chalicelib.http`) turns any of them into the one error shape. Raise them
`from` their cause so logs keep the chain.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of all domain errors: a message, a stable code, an HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        upstream: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        """The inner error object callers see, alone or inside a batch item."""
        return {"code": self.code, "message": self.message, "upstream": self.upstream}


# -- the caller's request -------------------------------------------------------


class ValidationError(GatewayError):
    """The request is malformed: bad JSON, wrong types, unknown fields, bad ids."""

    status = 400
    code = "validation_error"


class IdempotencyKeyRequired(GatewayError):
    """POST /orders came without a usable Idempotency-Key header."""

    status = 400
    code = "idempotency_key_required"


class Unauthorized(GatewayError):
    """Missing or unknown caller key."""

    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    """The caller key is valid but lacks the scope the route needs (`details.required_scope`)."""

    status = 403
    code = "forbidden"

    def body(self) -> dict[str, Any]:
        # Unlike other errors' details (kept for logs and tests), the scope is part of
        # the answer: it tells the operator which scope to grant.
        return {**super().body(), "details": dict(self.details)}


class NotFound(GatewayError):
    """No such order, refill, service or route."""

    status = 404
    code = "not_found"


class MethodNotAllowed(GatewayError):
    """No route serves this method (Chalice answers a known route's; the local server the rest)."""

    status = 405
    code = "method_not_allowed"


class UriTooLong(GatewayError):
    """The request line is longer than the server reads."""

    status = 414
    code = "uri_too_long"


class HeadersTooLarge(GatewayError):
    """A header line is longer, or the headers more, than the server reads."""

    status = 431
    code = "headers_too_large"


class RequestTimeout(GatewayError):
    """The rest of the request did not come in time (the local run's server)."""

    status = 408
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    """The request body is over the gateway's limit."""

    status = 413
    code = "payload_too_large"


class Refused(GatewayError):
    """Well-formed, but refused by the catalogue, a setting or the panel."""

    status = 422
    code = "upstream_rejected"


class InsufficientFunds(GatewayError):
    """The panel account's balance does not cover the order."""

    status = 402
    code = "insufficient_funds"


# -- webhooks -------------------------------------------------------------------


class WebhookNotFound(NotFound):
    """No such webhook subscription (or delivery) for this caller."""

    code = "webhook_not_found"


class InvalidWebhookUrl(Refused):
    """A webhook target the gateway will not call: scheme, form, or a non-public address."""

    code = "invalid_webhook_url"


class WebhookLimitReached(Refused):
    """The caller already holds the most subscriptions a caller may hold."""

    code = "webhook_limit_reached"


# -- idempotency ----------------------------------------------------------------


class IdempotencyConflict(GatewayError):
    """The same Idempotency-Key is in flight, or was used with another body."""

    status = 409
    code = "idempotency_in_progress"


class OutcomeUnknown(GatewayError):
    """An `add` may or may not have been placed; it is never sent again automatically."""

    status = 409
    code = "outcome_unknown"


# -- the panel and our own infrastructure ----------------------------------------


class UpstreamBadResponse(GatewayError):
    """The panel answered something that is not the JSON its API promises."""

    status = 502
    code = "upstream_bad_response"


class UpstreamConnectionLost(UpstreamBadResponse):
    """The connection broke (a reset, a TLS error) after the request may have been sent."""


class UpstreamAuthFailed(GatewayError):
    """The panel refused the gateway's own key or request form."""

    status = 502
    code = "upstream_auth_failed"


class UpstreamUnavailable(GatewayError):
    """The panel could not be reached (name, refused, connect timeout); nothing was sent."""

    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    """The panel did not answer in time; the request may have been processed."""

    status = 504
    code = "upstream_timeout"


class StorageUnavailable(GatewayError):
    """DynamoDB failed; for POST /orders this happens before anything is sent."""

    status = 503
    code = "storage_unavailable"


class QueueUnavailable(GatewayError):
    """SQS did not take a webhook delivery message."""

    status = 503
    code = "queue_unavailable"


class PublishFailed(GatewayError):
    """A publisher (EventBridge, webhooks) did not take some events: the outbox gives them
    again. `failed` names them (event ids); empty means the whole batch. Never answered
    to a caller: publishing happens after the change is written."""

    def __init__(self, message: str, failed: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.failed = failed


class ConfigurationUnavailable(GatewayError):
    """The secret holding the panel URL/key and caller keys could not be read."""

    status = 503
    code = "configuration_unavailable"


class InternalError(GatewayError):
    """An exception nothing expected (a bug): answered 500, logged once with its traceback."""

    status = 500
    code = "internal_error"

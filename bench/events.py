"""API Gateway REST proxy events, as Lambda hands them to the Chalice handler.

The benchmark calls `app.app(event, context)` itself, exactly as the Lambda runtime
does, so nothing of a local server or test client is timed.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

_request_ids = itertools.count(1)


def event(method: str, resource: str, path: str, *, key: str | None = None,
          path_params: dict[str, str] | None = None, query: dict[str, str] | None = None,
          headers: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    """One REST proxy event; `body` is JSON-encoded unless it is already text."""
    sent = {"accept": "*/*", "content-type": "application/json", "host": "bench.execute-api.local",
            "user-agent": "smm-gateway-bench", **({"x-api-key": key} if key else {}), **(headers or {})}
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": sent, "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params, "stageVariables": None, "body": text, "isBase64Encoded": False,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": f"/api{path}",
                           "stage": "api", "requestId": "bench-0", "identity": {"sourceIp": "127.0.0.1"}},
    }


def fresh(ev: dict[str, Any]) -> dict[str, Any]:
    """The same event with a new request id, as every real invocation has."""
    return {**ev, "requestContext": {**ev["requestContext"], "requestId": f"bench-{next(_request_ids)}"}}


class LambdaContext:
    """The few attributes of the Lambda context object that handlers commonly read."""

    function_name = "smm-gateway-dev"
    memory_limit_in_mb = 128
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 28_000

"""Embedded AWS for `make run` and the tests: moto's server on 127.0.0.1.

moto evaluates a DynamoDB condition and then writes, without a lock, so two racing
threads can both pass a compare-and-set that real DynamoDB would let only one
win. `serialize_dynamodb_writes` puts one lock around moto's write paths so the
emulation is as atomic as the real service; every race test relies on it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
from typing import Any, Mapping

TABLE = "smm-gateway-dev"
SECRET_ID = "smm-gateway/dev"
QUEUE = "smm-gateway-dev-webhooks"
VISIBILITY_SECONDS = 120  # over the worker's lease on an attempt (chalicelib/webhooks/deliveries.py)
MAX_RECEIVES = 5
REGION = "us-east-1"
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_lock = threading.RLock()


def serialize_dynamodb_writes() -> None:
    """Make moto's DynamoDB writes atomic with respect to each other (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_serialized", False):
            continue

        def locked(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _lock:
                return __method(self, *args, **kwargs)

        functools.update_wrapper(locked, method)
        locked._serialized = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, locked)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedAws:
    """moto's threaded server on loopback; `environ()` points boto3 at it."""

    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        serialize_dynamodb_writes()
        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedAws":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        server = getattr(self._server, "_server", None)
        if server is not None:  # moto's stop() shuts down but leaves the socket listening
            server.server_close()

    def reset(self) -> None:
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def environ(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    @functools.lru_cache(maxsize=None)
    def client(self, service: str) -> Any:
        """One shared client per service (boto3 clients are thread-safe and slow to build)."""
        return self.new_client(service)

    def new_client(self, service: str) -> Any:
        """A client of its own, e.g. for a test that hooks faults into it."""
        import boto3

        env = self.environ()
        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def create_table(dynamodb: Any, table: str = TABLE) -> None:
    """The table as infra/resources.json creates it: (pk, sk), on demand, TTL on expires_at,
    the sparse index of unsettled orders (chalicelib/orders/store.py) and the one of work
    to do (chalicelib/dynamo.py)."""
    from chalicelib.dynamo import WORK_INDEX
    from chalicelib.orders.store import UNSETTLED_INDEX

    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              {"AttributeName": "unsettled", "AttributeType": "S"},
                              {"AttributeName": "work", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": UNSETTLED_INDEX,
            "KeySchema": [{"AttributeName": "unsettled", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }, {
            "IndexName": WORK_INDEX,
            "KeySchema": [{"AttributeName": "work", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at"})


def create_queue(sqs: Any, name: str = QUEUE) -> str:
    """The webhook delivery queue as infra/resources.json creates it (a dead-letter queue
    taking what the worker failed MAX_RECEIVES times); returns the queue's URL."""
    dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(VISIBILITY_SECONDS),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": MAX_RECEIVES}),
    })["QueueUrl"])


def write_secret(secretsmanager: Any, api_url: str, api_key: str, callers: list[Mapping[str, str]],
                 secret_id: str = SECRET_ID) -> None:
    value = json.dumps({"api_url": api_url, "api_key": api_key, "callers": callers})
    try:
        secretsmanager.put_secret_value(SecretId=secret_id, SecretString=value)
    except secretsmanager.exceptions.ResourceNotFoundException:
        secretsmanager.create_secret(Name=secret_id, SecretString=value)


def apply_environ(values: dict[str, str]) -> None:
    os.environ.update(values)

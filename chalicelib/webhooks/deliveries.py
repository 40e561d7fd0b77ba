"""Deliveries: one per (event, subscription), with every attempt in its log.

    DELIVERIES#<caller>#<wh id> / dlv_<event ULID>   event_id, event_type, body (the JSON sent),
        status, attempts, retry_from, next_attempt_at, last_attempt_at, response_status,
        error, response_body, history (one entry per attempt), expires_at (TTL, 30 days),
        inflight + inflight_until while an attempt is being sent

The id follows from the event, so publishing an event twice finds the delivery the
first time made (a conditional put). Its sort key orders a subscription's deliveries
by event time: newest first is one Query.

An attempt n goes through two conditional writes, both on `attempts = n - 1`:

    claim   SET inflight = n, inflight_until = now + LEASE   (and the subscription is enabled:
            one transaction, so nothing starts after a DELETE)
    record  SET attempts = n, status, the answer, history += entry  REMOVE inflight

A second copy of the message finds the claim held (and waits for its lease) or the
attempt recorded (and stops); a worker that dies between sending and recording
leaves a claim whose lease runs out, and the message's next copy sends again: at
least once, and the log counts each attempt once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from chalicelib import dynamo, errors
from chalicelib.dynamo import Cancelled, Table
from chalicelib.events.model import RETENTION_SECONDS, Event, rfc3339
from chalicelib.webhooks.queue import Message, Queue
from chalicelib.webhooks.subscriptions import ENABLED, Webhook, disabled

PENDING, DELIVERED, RETRYING, FAILED = "pending", "delivered", "retrying", "failed"
OPEN = (PENDING, RETRYING)
LEASE_SECONDS = 60.0  # an attempt (10 s) and its writes, with room; SQS's visibility timeout is longer
MAX_ATTEMPTS = 100  # per delivery, redeliveries included: its log stays far under DynamoDB's 400 KB an item
_ID = re.compile(r"dlv_[0-9A-HJKMNP-TV-Z]{26}")


@dataclass(frozen=True)
class Delivery:
    id: str
    caller: str
    webhook_id: str
    event_id: str
    event_type: str
    body: str
    status: str = PENDING
    attempts: int = 0
    retry_from: int = 1  # the first attempt of this run of retries (a redelivery starts a new run)
    next_attempt_at: float | None = None
    last_attempt_at: float | None = None
    response_status: int | None = None
    error: str | None = None
    response_body: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    inflight_until: float | None = None

    @classmethod
    def of(cls, event: Event, webhook: Webhook, now: float) -> "Delivery":
        body = json.dumps(event.public(), separators=(",", ":"), sort_keys=True)
        return cls(id="dlv_" + event.id[4:], caller=webhook.caller, webhook_id=webhook.id, event_id=event.id,
                   event_type=event.type, body=body, next_attempt_at=now)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "webhook_id": self.webhook_id, "event_id": self.event_id,
                "event_type": self.event_type, "attempts": self.attempts, "status": self.status,
                "response_status": self.response_status, "error": self.error,
                "response_body": self.response_body, "last_attempt_at": _time(self.last_attempt_at),
                "next_attempt_at": _time(self.next_attempt_at) if self.status in OPEN else None,
                "history": [{**entry, "at": _time(entry["at"])} for entry in self.history]}


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status: str  # DELIVERED, RETRYING or FAILED
    response_status: int | None
    error: str | None
    response_body: str | None
    at: float
    duration_ms: float
    next_attempt_at: float | None = None


class DeliveryStore(Protocol):
    def create(self, delivery: Delivery) -> Delivery | None:
        """Keep a new delivery: None when written, else the one already there."""

    def get(self, caller: str, webhook_id: str, delivery_id: str) -> Delivery | None: ...

    def page(self, caller: str, webhook_id: str, limit: int, cursor: str | None) -> tuple[list[Delivery], str | None]:
        """Newest first."""

    def claim(self, delivery: Delivery, attempt: int, now: float) -> str:
        """CLAIMED, or GONE (the subscription is deleted or disabled), or TAKEN (another copy holds
        the attempt, or it is recorded, or the delivery is closed)."""

    def record(self, delivery: Delivery, attempt: int, outcome: Outcome) -> bool:
        """Log attempt `attempt`; False if it was logged already."""

    def stop(self, delivery: Delivery, reason: str, now: float) -> None:
        """Close an open delivery as failed without an attempt (its subscription is gone)."""

    def reopen(self, delivery: Delivery, now: float) -> int:
        """Open the delivery for one more run of attempts now; returns the next attempt's number."""


CLAIMED, GONE, TAKEN = "claimed", "gone", "taken"


class DynamoDeliveries:
    def __init__(self, client: Any, table: str) -> None:
        self._db = Table(client, table)
        self._table = table

    def create(self, delivery: Delivery) -> Delivery | None:
        item: dict[str, Any] = {**_key(delivery.caller, delivery.webhook_id, delivery.id), "delivery_id": delivery.id,
                "caller": delivery.caller, "webhook_id": delivery.webhook_id, "event_id": delivery.event_id,
                "event_type": delivery.event_type, "body": delivery.body, "status": delivery.status,
                "attempts": 0, "retry_from": 1, "next_attempt_at": _num(delivery.next_attempt_at),
                "history": [], "expires_at": int((delivery.next_attempt_at or 0) + RETENTION_SECONDS)}
        written = self._db.conditional("put_item", TableName=self._table, Item=self._db.item(item),
                                       ConditionExpression="attribute_not_exists(pk)")
        return None if written else self.get(delivery.caller, delivery.webhook_id, delivery.id)

    def get(self, caller: str, webhook_id: str, delivery_id: str) -> Delivery | None:
        found = self._db.call("get_item", TableName=self._table, ConsistentRead=True,
                              Key=self._db.item(_key(caller, webhook_id, delivery_id))).get("Item")
        return _delivery(self._db.plain(found)) if found else None

    def page(self, caller: str, webhook_id: str, limit: int, cursor: str | None) -> tuple[list[Delivery], str | None]:
        params: dict[str, Any] = {
            "TableName": self._table, "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": self._db.values({":pk": _pk(caller, webhook_id)}),
            "ScanIndexForward": False, "Limit": limit}
        if cursor:
            sk = dynamo.read_cursor(cursor, _ID.fullmatch)
            params["ExclusiveStartKey"] = self._db.item(_key(caller, webhook_id, sk))
        page = self._db.call("query", **params)
        last = page.get("LastEvaluatedKey")
        return ([_delivery(self._db.plain(item)) for item in page.get("Items", [])],
                dynamo.cursor(self._db.plain(last)["sk"]) if last else None)

    def claim(self, delivery: Delivery, attempt: int, now: float) -> str:
        try:
            self._db.transact([
                {"ConditionCheck": {
                    "TableName": self._table,
                    "Key": self._db.item({"pk": f"WEBHOOKS#{delivery.caller}", "sk": delivery.webhook_id}),
                    "ConditionExpression": "#status = :enabled",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": self._db.values({":enabled": ENABLED})}},
                {"Update": {
                    "TableName": self._table, "Key": self._db.item(_key(delivery.caller, delivery.webhook_id,
                                                                        delivery.id)),
                    "UpdateExpression": "SET inflight = :n, inflight_until = :until",
                    "ConditionExpression": "attempts = :done AND #status IN (:pending, :retrying) AND "
                                           "(attribute_not_exists(inflight_until) OR inflight_until < :now)",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": self._db.values({
                        ":n": attempt, ":until": _num(now + LEASE_SECONDS), ":done": attempt - 1,
                        ":pending": PENDING, ":retrying": RETRYING, ":now": _num(now)})}},
            ])
        except Cancelled as cancelled:
            subscription, _ = cancelled.reasons[:2]
            return GONE if subscription.get("Code") == "ConditionalCheckFailed" else TAKEN
        return CLAIMED

    def record(self, delivery: Delivery, attempt: int, outcome: Outcome) -> bool:
        entry = {"attempt": attempt, "at": _num(outcome.at), "response_status": outcome.response_status,
                 "error": outcome.error, "response_body": outcome.response_body,
                 "duration_ms": _num(outcome.duration_ms)}
        return self._db.conditional(
            "update_item", TableName=self._table,
            Key=self._db.item(_key(delivery.caller, delivery.webhook_id, delivery.id)),
            UpdateExpression="SET attempts = :n, #status = :status, response_status = :code, #error = :error, "
                             "response_body = :body, last_attempt_at = :at, next_attempt_at = :next, "
                             "history = list_append(history, :entry) REMOVE inflight, inflight_until",
            ConditionExpression="attempts = :done",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues=self._db.values({
                ":n": attempt, ":done": attempt - 1, ":status": outcome.status, ":code": outcome.response_status,
                ":error": outcome.error, ":body": outcome.response_body, ":at": _num(outcome.at),
                ":next": _num(outcome.next_attempt_at), ":entry": [entry]}))

    def stop(self, delivery: Delivery, reason: str, now: float) -> None:
        self._db.conditional(
            "update_item", TableName=self._table,
            Key=self._db.item(_key(delivery.caller, delivery.webhook_id, delivery.id)),
            UpdateExpression="SET #status = :failed, #error = :reason, next_attempt_at = :none",
            ConditionExpression="#status IN (:pending, :retrying)",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues=self._db.values({":failed": FAILED, ":reason": reason, ":none": None,
                                                       ":pending": PENDING, ":retrying": RETRYING}))

    def reopen(self, delivery: Delivery, now: float) -> int:
        """Conditional on the attempts seen, so two redelivers at once open one run, not two."""
        written = self._db.conditional(
            "update_item", TableName=self._table,
            Key=self._db.item(_key(delivery.caller, delivery.webhook_id, delivery.id)),
            UpdateExpression="SET #status = :pending, retry_from = :next, next_attempt_at = :now",
            ConditionExpression="attempts = :done AND (attribute_not_exists(inflight_until) OR inflight_until < :now)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=self._db.values({":pending": PENDING, ":next": delivery.attempts + 1,
                                                       ":now": _num(now), ":done": delivery.attempts}))
        if not written:
            raise errors.IdempotencyConflict("The delivery is being attempted right now; try again shortly.",
                                             code="delivery_in_progress", headers={"Retry-After": "10"})
        return delivery.attempts + 1


class DeliveryLog:
    """What the deliveries routes do: read a subscription's log, send a delivery again."""

    def __init__(self, store: DeliveryStore, queue: Queue) -> None:
        self._store = store
        self._queue = queue

    def page(self, webhook: Webhook, limit: int, cursor: str | None) -> dict[str, Any]:
        found, next_cursor = self._store.page(webhook.caller, webhook.id, limit, cursor)
        return {"deliveries": [d.public() for d in found], "next_cursor": next_cursor}

    def redeliver(self, webhook: Webhook, delivery_id: str, now: float) -> Delivery:
        """The same event (same body, same webhook-id) sent again, as a new attempt."""
        found = self._store.get(webhook.caller, webhook.id, delivery_id) if _ID.fullmatch(delivery_id) else None
        if found is None:
            raise errors.WebhookNotFound(f"No delivery {delivery_id[:40]!r} for this webhook.")
        if webhook.status != ENABLED:
            raise disabled()
        if found.attempts >= MAX_ATTEMPTS:
            raise errors.Refused(f"This delivery was attempted {found.attempts} times, the most a delivery is; "
                                 "send a new test event instead.", code="delivery_attempts_exhausted")
        attempt = self._store.reopen(found, now)
        self._queue.send(Message(webhook.caller, webhook.id, found.id, attempt))
        return found


def _pk(caller: str, webhook_id: str) -> str:
    return f"DELIVERIES#{caller}#{webhook_id}"


def _key(caller: str, webhook_id: str, delivery_id: str) -> dict[str, str]:
    return {"pk": _pk(caller, webhook_id), "sk": delivery_id}


def _num(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(round(value, 3)))


def _time(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(float(epoch))


def _delivery(item: dict[str, Any]) -> Delivery:
    def number(name: str) -> float | None:
        return float(item[name]) if item.get(name) is not None else None

    return Delivery(
        id=item["delivery_id"], caller=item["caller"], webhook_id=item["webhook_id"], event_id=item["event_id"],
        event_type=item["event_type"], body=item["body"], status=item["status"], attempts=int(item["attempts"]),
        retry_from=int(item.get("retry_from", 1)), next_attempt_at=number("next_attempt_at"),
        last_attempt_at=number("last_attempt_at"),
        response_status=int(item["response_status"]) if item.get("response_status") is not None else None,
        error=item.get("error"), response_body=item.get("response_body"),
        history=[{"attempt": int(e["attempt"]), "at": float(e["at"]),
                  "response_status": int(e["response_status"]) if e.get("response_status") is not None else None,
                  "error": e.get("error"), "response_body": e.get("response_body"),
                  "duration_ms": float(e.get("duration_ms", 0))} for e in item.get("history", [])],
        inflight_until=number("inflight_until"))

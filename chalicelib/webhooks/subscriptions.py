"""Webhook subscriptions: a caller's targets for its events, at most MAX_PER_CALLER of them.

    WEBHOOKS#<caller> / <wh id>   url, events (filters), description, status, created_at, secret
    WEBHOOKS#<caller> / #count    how many the caller holds: the cap is one conditional write

A subscription and the count change in one transaction, so two racing subscribes
cannot pass the cap. The secret is generated here, returned to the caller, kept in
the table (encrypted at rest, as every DynamoDB table is) and never logged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from chalicelib import errors
from chalicelib.dynamo import Cancelled, Table
from chalicelib.events import model
from chalicelib.events.model import Event
from chalicelib.webhooks import signing
from chalicelib.webhooks.targets import Targets

MAX_PER_CALLER = 25
ENABLED, DISABLED = "enabled", "disabled"
ANY = "*"
_COUNT = "#count"


@dataclass(frozen=True)
class Webhook:
    id: str
    caller: str
    url: str
    events: tuple[str, ...]
    description: str
    status: str
    created_at: str
    secret: str = field(repr=False)  # never in a repr, so never in a log line or a traceback's locals

    def public(self, with_secret: bool = False) -> dict[str, Any]:
        shown = {"id": self.id, "url": self.url, "events": list(self.events), "description": self.description,
                 "status": self.status, "created_at": self.created_at}
        return shown | ({"secret": self.secret} if with_secret else {})

    def wants(self, event: Event) -> bool:
        """Whether this subscription receives `event`: a test event goes to the one it names only."""
        if self.status != ENABLED:
            return False
        if event.type == "webhook.test":
            return event.data.get("webhook_id") == self.id
        return any(f == ANY or f == event.type or (f in model.FAMILIES and event.type.startswith(f[:-1]))
                   for f in self.events)


class SubscriptionStore(Protocol):
    def add(self, webhook: Webhook, limit: int) -> bool:
        """Keep `webhook`; False (nothing written) when the caller already holds `limit`."""

    def all(self, caller: str) -> list[Webhook]:
        """The caller's subscriptions, oldest first."""

    def get(self, caller: str, webhook_id: str) -> Webhook | None: ...

    def remove(self, caller: str, webhook_id: str) -> bool:
        """False when there was no such subscription."""

    def disable(self, caller: str, webhook_id: str) -> None: ...

    def record_event(self, event: Event) -> None:
        """Put an event the webhooks make themselves (webhook.test) in the caller's event log."""


class DynamoSubscriptions:
    def __init__(self, client: Any, table: str) -> None:
        self._db = Table(client, table)
        self._table = table

    def add(self, webhook: Webhook, limit: int) -> bool:
        item = {**_key(webhook.caller, webhook.id), "webhook_id": webhook.id, "caller": webhook.caller,
                "url": webhook.url, "events": list(webhook.events), "description": webhook.description,
                "status": webhook.status, "created_at": webhook.created_at, "secret": webhook.secret}
        try:
            self._db.transact([
                {"Update": {"TableName": self._table, "Key": self._db.item(_key(webhook.caller, _COUNT)),
                            "UpdateExpression": "ADD #n :one",
                            "ConditionExpression": "attribute_not_exists(#n) OR #n < :limit",
                            "ExpressionAttributeNames": {"#n": "count"},
                            "ExpressionAttributeValues": self._db.values({":one": 1, ":limit": limit})}},
                {"Put": {"TableName": self._table, "Item": self._db.item(item),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except Cancelled as cancelled:
            if cancelled.reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def all(self, caller: str) -> list[Webhook]:
        params: dict[str, Any] = {
            "TableName": self._table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :wh)",
            "ExpressionAttributeValues": self._db.values({":pk": _pk(caller), ":wh": "wh_"})}
        found = [_webhook(item) for item in self._db.query_all(**params)]
        return sorted(found, key=lambda w: (w.created_at, w.id))

    def get(self, caller: str, webhook_id: str) -> Webhook | None:
        found = self._db.call("get_item", TableName=self._table, Key=self._db.item(_key(caller, webhook_id)),
                              ConsistentRead=True).get("Item")
        return _webhook(self._db.plain(found)) if found else None

    def remove(self, caller: str, webhook_id: str) -> bool:
        try:
            self._db.transact([
                {"Delete": {"TableName": self._table, "Key": self._db.item(_key(caller, webhook_id)),
                            "ConditionExpression": "attribute_exists(pk)"}},
                {"Update": {"TableName": self._table, "Key": self._db.item(_key(caller, _COUNT)),
                            "UpdateExpression": "ADD #n :minus", "ExpressionAttributeNames": {"#n": "count"},
                            "ExpressionAttributeValues": self._db.values({":minus": -1})}},
            ])
        except Cancelled as cancelled:
            if cancelled.reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def disable(self, caller: str, webhook_id: str) -> None:
        self._db.conditional("update_item", TableName=self._table, Key=self._db.item(_key(caller, webhook_id)),
                             UpdateExpression="SET #status = :disabled", ConditionExpression="attribute_exists(pk)",
                             ExpressionAttributeNames={"#status": "status"},
                             ExpressionAttributeValues=self._db.values({":disabled": DISABLED}))

    def record_event(self, event: Event) -> None:
        self._db.call("put_item", TableName=self._table, Item=self._db.item(model.to_item(event)),
                      ConditionExpression="attribute_not_exists(pk)")


class Subscriptions:
    """What the /webhooks routes do: subscribe, list, read, unsubscribe, send a test event."""

    def __init__(self, store: SubscriptionStore, targets: Targets, published: Callable[[Sequence[Event]], None],
                 clock: Callable[[], float] = time.time, limit: int = MAX_PER_CALLER) -> None:
        self._store = store
        self._targets = targets
        self._published = published
        self._clock = clock
        self._limit = limit

    def create(self, caller: str, request: dict[str, Any]) -> Webhook:
        """`request` is already checked against the WebhookRequest schema (url, events, description)."""
        self._targets.check(request["url"])
        webhook = Webhook(id="wh_" + os.urandom(12).hex(), caller=caller, url=request["url"],
                          events=tuple(dict.fromkeys(request["events"])),
                          description=request.get("description") or "", status=ENABLED,
                          created_at=model.rfc3339(self._clock()), secret=signing.new_secret())
        if not self._store.add(webhook, self._limit):
            raise errors.WebhookLimitReached(
                f"A caller may hold at most {self._limit} webhook subscriptions; delete one first.",
                details={"limit": self._limit})
        return webhook

    def list(self, caller: str, url: str | None = None) -> list[Webhook]:
        return [w for w in self._store.all(caller) if url is None or w.url == url]

    def get(self, caller: str, webhook_id: str) -> Webhook:
        found = self._store.get(caller, webhook_id) if _plausible(webhook_id) else None
        if found is None:
            raise errors.WebhookNotFound(f"No webhook {webhook_id[:40]!r} for this key.")
        return found

    def delete(self, caller: str, webhook_id: str) -> None:
        if not _plausible(webhook_id) or not self._store.remove(caller, webhook_id):
            raise errors.WebhookNotFound(f"No webhook {webhook_id[:40]!r} for this key.")

    def test(self, caller: str, webhook_id: str) -> Event:
        """A webhook.test event, for this subscription only (its data names it)."""
        webhook = self.get(caller, webhook_id)
        if webhook.status != ENABLED:
            raise disabled()
        event = model.new(caller, "webhook.test", {"webhook_id": webhook.id, "url": webhook.url},
                          now=self._clock())
        self._store.record_event(event)
        self._published([event])
        return event


def disabled() -> errors.Refused:
    return errors.Refused("This subscription is disabled (its URL answered 410 Gone); subscribe the URL again "
                          "to receive events.", code="webhook_disabled")


def _plausible(webhook_id: str) -> bool:
    return len(webhook_id) == 27 and webhook_id.startswith("wh_") and all(
        c in "0123456789abcdef" for c in webhook_id[3:])


def _pk(caller: str) -> str:
    return f"WEBHOOKS#{caller}"


def _key(caller: str, sk: str) -> dict[str, str]:
    return {"pk": _pk(caller), "sk": sk}


def _webhook(item: dict[str, Any]) -> Webhook:
    return Webhook(id=item["webhook_id"], caller=item["caller"], url=item["url"], events=tuple(item["events"]),
                   description=item.get("description", ""), status=item["status"], created_at=item["created_at"],
                   secret=item["secret"])

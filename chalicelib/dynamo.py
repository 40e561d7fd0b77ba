"""The one DynamoDB table, as every store uses it: typed items, one error translation.

Each store (`orders.store`, and the event log and webhook stores beside it) builds
its own items and conditions; this module turns them into calls and turns botocore's
failures into domain errors, once: a transaction whose condition failed is
`Cancelled` (with the reasons, for the store that reads them), anything else the
table refuses or cannot answer is `StorageUnavailable`.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Iterator

from chalicelib import errors

# The table's sparse index of work still to do, keyed (work, sk): an item is in it only
# while it carries `work`, whose value says what kind: "order" and "refill" (open on the
# panel: the status sync reads them), "outbox" (an event not yet published). One index
# for all, as DynamoDB adds one index per table update.
WORK_INDEX = "work"
WORK_PAGE = 250  # items per Query of it: small answers that no client timeout cuts, even from an emulator


class Cancelled(errors.StorageUnavailable):
    """A transaction whose condition failed: the write did not happen.

    Stores that care read `reasons` (one per item, in order); everywhere else it is
    simply a failed write."""

    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("A conditional write to DynamoDB was refused.")
        self.reasons = list(reasons) + [{}] * 3


class Table:
    """A low-level DynamoDB client bound to one table, typed through boto3's serializer."""

    def __init__(self, client: Any, name: str) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self.client = client
        self.name = name
        self._to = TypeSerializer().serialize
        self._from = TypeDeserializer().deserialize

    def transact(self, items: list[dict[str, Any]], token: str | None = None) -> None:
        """One transaction. With a token, an SDK retry of a write that did happen is a no-op."""
        from botocore.exceptions import ClientError

        try:
            extra = {"ClientRequestToken": token} if token else {}
            self.client.transact_write_items(TransactItems=items, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise Cancelled(exc.response.get("CancellationReasons", [])) from exc
            raise errors.StorageUnavailable("DynamoDB refused the write.") from exc
        except Exception as exc:  # endpoint or credential trouble: botocore's own errors
            raise errors.StorageUnavailable("DynamoDB could not be reached.") from exc

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(**params)
        except Exception as exc:
            raise errors.StorageUnavailable("DynamoDB did not answer.") from exc

    def conditional(self, operation: str, **params: Any) -> bool:
        """A conditional write: False when its condition failed, True when it was written."""
        from botocore.exceptions import ClientError

        try:
            getattr(self.client, operation)(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise errors.StorageUnavailable("DynamoDB refused the write.") from exc
            return False
        except Exception as exc:
            raise errors.StorageUnavailable("DynamoDB could not be reached.") from exc
        return True

    def batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items of these keys that exist (plain), one BatchGetItem per 100 keys."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self.name: {
                "Keys": [self.item(key) for key in keys[start:start + 100]], "ConsistentRead": True}}
            for _ in range(5):  # throttled keys come back unprocessed: ask again for those only
                page = self.call("batch_get_item", RequestItems=request)
                found += [self.plain(item) for item in page.get("Responses", {}).get(self.name, [])]
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise errors.StorageUnavailable("DynamoDB left keys unread after five tries.")
        return found

    def work(self, kind: str) -> list[dict[str, Any]]:
        """Every item (plain) in WORK_INDEX under `kind`: one Query per page, never a Scan."""
        return list(self.query_all(
            TableName=self.name, IndexName=WORK_INDEX, KeyConditionExpression="#work = :kind",
            ExpressionAttributeNames={"#work": "work"}, ExpressionAttributeValues=self.values({":kind": kind}),
            Limit=WORK_PAGE))

    def query_all(self, **params: Any) -> Iterator[dict[str, Any]]:
        """The items (plain) of every page of one Query, read a page at a time."""
        while True:
            page = self.call("query", **params)
            yield from (self.plain(item) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def changed(self, update: dict[str, Any], event: dict[str, Any] | None, token: str | None) -> bool:
        """A status change (`update`, conditional on the status it was read with) and the
        event it makes (a plain item, or None), in one transaction. False when the condition
        failed: someone else recorded this change meanwhile, with its event."""
        try:
            self.transact([update] + ([self.put_new(event)] if event else []), token=token)
        except Cancelled as cancelled:
            if cancelled.reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def put_new(self, plain: dict[str, Any]) -> dict[str, Any]:
        """A transaction's Put of `plain` where no item is yet (an event, say: written once)."""
        return {"Put": {"TableName": self.name, "Item": self.item(plain),
                        "ConditionExpression": "attribute_not_exists(pk)"}}

    def item(self, plain: dict[str, Any]) -> dict[str, Any]:
        """DynamoDB's typed form of `plain`; None values are left out (no attribute)."""
        return {k: self._to(v) for k, v in plain.items() if v is not None}

    def values(self, plain: dict[str, Any]) -> dict[str, Any]:
        return {k: self._to(v) for k, v in plain.items()}

    def plain(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: self._from(v) for k, v in item.items()}


def cursor(sk: str) -> str:
    """The opaque `next_cursor` of a page that ended at sort key `sk`."""
    return base64.urlsafe_b64encode(json.dumps({"sk": sk}).encode()).decode().rstrip("=")


def read_cursor(text: str, valid: Callable[[str], object]) -> str:
    """The sort key a cursor carries, if it is one `valid` says the store could have written.

    A cursor comes back from the caller: any other key would start the page somewhere
    the gateway never wrote, and one over 1024 bytes is refused by DynamoDB itself
    (a ValidationException, which would answer 503 rather than 400)."""
    try:
        sk = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))["sk"]
        if not isinstance(sk, str) or not valid(sk):
            raise ValueError
        return sk
    except (ValueError, KeyError, TypeError):
        raise errors.ValidationError("cursor is not one this gateway gave out.",
                                     details={"field": "cursor"}) from None

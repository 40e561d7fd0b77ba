"""Idempotency records and the order ledger, in one DynamoDB table.

Three kinds of item share the table (pk, sk):

    IDEM#<caller>#<sha256(key)> / IDEM        one per Idempotency-Key; completed ones expire
    LEDGER#<caller>             / <time>#<id>  one per order attempt; never expires
    SPEND#<caller>              / <YYYY-MM-DD> the day's reserved spending (only with a cap)
    ORDER#<order id>            / ORDER        whose ledger holds a placed order: caller, ledger_sk
    EVENTS#<caller>             / <event id>   what happened to the caller's orders (events.model)

The ORDER item is written with the completion (or an operator's resolve), so
`owners` finds the caller and ledger entry of up to 100 order ids in one request:
what a status read of a ledger order, and a key limited to its own orders, need.

A ledger entry carries `unsettled` (its caller) from the claim until its outcome is
settled (completed, released or resolved), so the sparse index UNSETTLED_INDEX
(unsettled, sk) lists what an operator may have to resolve without reading the
rest of a caller's ledger. Entries claimed before the index existed get it from
`index_unsettled`, run once on upgrade (`python -m ops orders backfill-unsettled`).

Every write is conditional and carries the attempt's owner token. An attempt moves

    claim ──► in_flight ──► completed (answer stored, replayed, expires after retention)
                   │──► released  (panel refused, or nothing sent: both items deleted)
                   └──► unknown   (sent, answer lost; kept until an operator resolves it)

A claim is one transaction (record + ledger entry [+ spending]) and so is each
transition, so a new order costs two DynamoDB requests and a replay costs one:
the failed claim returns the existing record.

A transition that makes an event writes it in its own transaction: the completion
`order.created`, `mark_unknown` `order.outcome_unknown`, and `record_status` (the
one write of a new panel status, whoever learned it) `order.<state>`. Each is
conditional on the state it moves from, so one change makes one event however
often it is retried or raced. While an order is open its ledger entry carries
`work = "order"` (the table's sparse WORK_INDEX), which the status sync reads.
Entries completed before that get it from `index_orders`
(`python -m ops orders backfill-index`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Protocol, Sequence

from chalicelib import dynamo, errors
from chalicelib.dynamo import Cancelled, Table
from chalicelib.events import model
from chalicelib.events.model import Event

IN_FLIGHT, COMPLETED, UNKNOWN = "in_flight", "completed", "unknown"
UNSETTLED_INDEX = "unsettled"
OPEN_STATES = frozenset({"pending", "in_progress", "processing"})  # may still change on the panel
FINAL_STATES = frozenset({"completed", "partial", "canceled"})  # will not: the sync lets go of them
ORDER_WORK = "order"  # the WORK_INDEX value of an order the status sync still follows
# What an operator may resolve: an unknown outcome, or a claim whose lease ran out
# (its request crashed mid-order). A running lease may still complete on its own.
_SETTLEABLE = "#owner = :owner AND (#state = :unknown OR (#state = :in_flight AND lease_until < :now))"


@dataclass(frozen=True)
class Attempt:
    """One try at placing an order under an idempotency key."""

    caller: str
    key: str
    key_hash: str
    owner: str
    fingerprint: str
    created_at: float
    lease_until: float
    request: dict[str, Any]
    estimated_charge: str
    quantity: int | None = None
    spend_day: str | None = None
    spend_room: Decimal | None = None  # the daily cap minus this order's charge

    @property
    def ledger_sk(self) -> str:
        return f"{iso(self.created_at)}#{self.owner}"


@dataclass(frozen=True)
class Record:
    """An idempotency record as stored."""

    state: str
    owner: str
    fingerprint: str
    lease_until: float
    ledger_sk: str
    answer: dict[str, Any] | None = None
    expires_at: float | None = None
    spend_day: str | None = None  # the day whose spending this claim reserved, if a cap applied
    estimated_charge: str | None = None


@dataclass(frozen=True)
class Owner:
    """The caller whose ledger holds an order, and its entry there."""

    caller: str
    ledger_sk: str


class Store(Protocol):
    def claim(self, attempt: Attempt, now: float) -> Record | None:
        """Take the key: None when taken, else the record that holds it.

        Raises `Refused(spending_limit_exceeded)` when the daily cap would be passed."""

    def complete(self, attempt: Attempt, order_id: int, answer: dict[str, Any], expires_at: float) -> None: ...

    def release(self, attempt: Attempt) -> None: ...

    def mark_unknown(self, caller: str, key_hash: str, owner: str, ledger_sk: str,
                     order: dict[str, Any] | None = None) -> None:
        """The attempt's outcome is unknown (once: only an attempt in flight moves), with its
        `order.outcome_unknown` event; `order` holds what is known of it (order_facts)."""

    def record_status(self, caller: str, entry: dict[str, Any], current: dict[str, Any]) -> Event | None:
        """The one write of a new panel status of a ledger order; see DynamoStore."""

    def open_orders(self) -> list[dict[str, Any]]:
        """Every ledger entry, of any caller, whose order is open (the WORK_INDEX)."""

    def entries(self, owners: dict[int, Owner]) -> dict[int, dict[str, Any]]:
        """The ledger entries of these orders, by order id."""

    def ledger(self, caller: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...

    def find(self, caller: str, key_hash: str) -> Record | None: ...

    def owners(self, order_ids: list[int]) -> dict[int, Owner]:
        """Where each order placed through the gateway is in a ledger; others are left out."""

    def unsettled(self, caller: str) -> list[dict[str, Any]]:
        """The caller's ledger entries not yet settled (submitting or unknown), newest first."""

    def resolve(self, caller: str, key_hash: str, order_id: int | None, answer: dict[str, Any] | None,
                expires_at: float, now: float) -> None:
        """Record the real order, or with None free the key (and its spending).

        Refused with `IdempotencyConflict` unless the outcome is unknown or the lease ran out."""

    def index_unsettled(self, caller: str) -> list[dict[str, Any]]:
        """Upgrade: put the caller's unsettled entries written before the index into it.

        Returns the entries it marked; a second run marks none."""

    def index_orders(self, caller: str) -> dict[str, int]:
        """Upgrade: the ORDER# items and the `work` mark of the caller's entries written before them.

        Returns how many of each it wrote; a second run writes none."""


class DynamoStore:
    """`Store` on DynamoDB (low-level client, typed through boto3's serializer).

    `published` is given the events of each write once it has committed (the outbox
    sends them on; what it misses, its sweep finds in the table)."""

    def __init__(self, client: Any, table: str,
                 published: Callable[[Sequence[Event]], None] = lambda _events: None) -> None:
        self._db = Table(client, table)
        self._table = table
        self._published = published

    # -- transitions -------------------------------------------------------------

    def claim(self, attempt: Attempt, now: float) -> Record | None:
        items = [
            {"Put": {
                "TableName": self._table,
                "Item": self._db.item(_idem_key(attempt.caller, attempt.key_hash) | {
                    "state": IN_FLIGHT, "owner": attempt.owner, "fingerprint": attempt.fingerprint,
                    "lease_until": _num(attempt.lease_until), "ledger_sk": attempt.ledger_sk,
                    "caller": attempt.caller, "created_at": iso(attempt.created_at),
                    "spend_day": attempt.spend_day, "estimated_charge": attempt.estimated_charge,
                }),
                # Free, or completed and past retention (TTL deletes lazily, so check here too).
                "ConditionExpression": "attribute_not_exists(pk) OR (#state = :completed AND expires_at < :now)",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": self._db.values({":completed": COMPLETED, ":now": _num(now)}),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }},
            {"Put": {
                "TableName": self._table,
                "Item": self._db.item(_ledger_key(attempt.caller, attempt.ledger_sk) | {
                    "state": "submitting", "lease_until": _num(attempt.lease_until),
                    "idempotency_key": attempt.key, "key_hash": attempt.key_hash,
                    "request": json.dumps(attempt.request, sort_keys=True),
                    "estimated_charge": attempt.estimated_charge, "created_at": iso(attempt.created_at),
                    "quantity": attempt.quantity, "unsettled": attempt.caller,
                }),
                "ConditionExpression": "attribute_not_exists(pk)",
            }},
        ]
        if attempt.spend_day is not None:
            items.append({"Update": {
                "TableName": self._table,
                "Key": self._db.item({"pk": f"SPEND#{attempt.caller}", "sk": attempt.spend_day}),
                "UpdateExpression": "ADD #total :charge",
                "ConditionExpression": "attribute_not_exists(#total) OR #total <= :room",
                "ExpressionAttributeNames": {"#total": "total"},
                "ExpressionAttributeValues": self._db.values({
                    ":charge": Decimal(attempt.estimated_charge), ":room": attempt.spend_room}),
            }})
        try:
            self._db.transact(items, token=attempt.owner + "c")
        except Cancelled as cancelled:
            held, _ledger, *spend = cancelled.reasons
            if held.get("Code") == "ConditionalCheckFailed" and held.get("Item"):
                record = self._record(self._db.plain(held["Item"]))
                # Our own claim, applied before its answer was lost and the SDK retried.
                return None if record.owner == attempt.owner else record
            if held.get("Code") in {"TransactionConflict", "ConditionalCheckFailed"}:
                # Another claim on this key is being written right now.
                return Record(IN_FLIGHT, "", attempt.fingerprint, attempt.lease_until, "")
            if spend and spend[0].get("Code") == "ConditionalCheckFailed":
                raise errors.Refused("This order would pass the caller's daily spending limit.",
                                     code="spending_limit_exceeded") from None
            raise errors.StorageUnavailable("The idempotency record could not be written.") from None
        return None

    def complete(self, attempt: Attempt, order_id: int, answer: dict[str, Any], expires_at: float) -> None:
        """Store the answer. Conditional on ownership only: a late completion also
        corrects a record that a retry marked unknown in the meantime. An order an
        operator recorded meanwhile (resolve) is not recorded, nor announced, twice."""
        created = self._created(attempt.caller, order_facts(attempt.request, attempt.quantity, attempt.key),
                                order_id)
        try:
            self._db.transact(self._completion(attempt.caller, attempt.key_hash, attempt.owner, attempt.ledger_sk,
                                               order_id, answer, expires_at, created), token=attempt.owner + "d")
        except Cancelled as cancelled:
            held, ledger, *_ = cancelled.reasons
            recorded = self._db.plain(ledger["Item"]).get("order_id") if ledger.get("Item") else None
            if held.get("Code") in (None, "None") and recorded == order_id:
                return  # an operator resolved the key with this very order meanwhile: recorded once
            raise  # (resolved with another order: the desk logs this one, for an operator to look at)
        self._published([created])

    def release(self, attempt: Attempt) -> None:
        items: list[dict[str, Any]] = [
            {"Delete": {
                "TableName": self._table,
                "Key": self._db.item(_idem_key(attempt.caller, attempt.key_hash)),
                "ConditionExpression": "#owner = :owner",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": self._db.values({":owner": attempt.owner}),
            }},
            {"Delete": {"TableName": self._table,
                        "Key": self._db.item(_ledger_key(attempt.caller, attempt.ledger_sk))}},
        ]
        self._db.transact(items + self._refund(attempt.caller, attempt.spend_day, attempt.estimated_charge))

    def mark_unknown(self, caller: str, key_hash: str, owner: str, ledger_sk: str,
                     order: dict[str, Any] | None = None) -> None:
        """Only an attempt in flight becomes unknown, so a retried or raced call writes
        nothing (its transaction is refused) and the event is written once."""
        event = model.new(caller, "order.outcome_unknown", _order_data(
            {"id": None, **(order or {})}, {"state": UNKNOWN, "status": None}, None))
        self._db.transact([
            self._owned_update(caller, key_hash, owner, "SET #state = :unknown REMOVE lease_until",
                               {":unknown": UNKNOWN}, only_in_flight=True),
            self._ledger_update(caller, ledger_sk, "SET #state = :unknown REMOVE lease_until",
                                {":unknown": UNKNOWN}),
            self._event_put(event),
        ])
        self._published([event])

    def record_status(self, caller: str, entry: dict[str, Any], current: dict[str, Any]) -> Event | None:
        """The panel's status `current` of the order of ledger entry `entry` (as read),
        written as the ledger's last known one: every path that learns a status (the
        sync, the ledger read, a read of one order) writes it here.

        One transaction: the entry's status, state, charge and remains (and its `work`
        mark: kept while the order is open, removed when it is final), conditional on
        the status it was read with, plus the `order.<state>` event when the state
        changed. A refused condition means another writer recorded this change first:
        nothing is written and nothing is raised. Returns the event written, if any."""
        previous = entry.get("status")
        if current["status"] == previous:
            return None  # nothing changed: nothing is written
        state = current["state"]
        type_ = model.state_type("order", state) if state != entry.get("state") else None
        data = _order_data(_order_facts_of(entry), current, entry)
        event = model.new(caller, type_, data) if type_ else None
        expression = "SET #state = :state, #status = :status, charge = :charge, remains = :remains"
        values: dict[str, Any] = {":state": state, ":status": current["status"], ":charge": data["charge"],
                                  ":remains": data["remains"]}
        if state in FINAL_STATES:
            expression += " REMOVE #work"
        else:
            expression += ", #work = :work"
            values[":work"] = ORDER_WORK
        update = self._ledger_update(caller, entry["sk"], expression, values)
        condition = "attribute_exists(order_id) AND "
        if previous is None:
            update["Update"]["ConditionExpression"] = condition + "attribute_not_exists(#status)"
        else:
            update["Update"]["ConditionExpression"] = condition + "#status = :previous"
            update["Update"]["ExpressionAttributeValues"] |= self._db.values({":previous": previous})
        return write_change(self._db, update, event, self._published)

    def open_orders(self) -> list[dict[str, Any]]:
        """Reads only the sparse WORK_INDEX (a Query, every page): closed orders cost nothing."""
        return self._db.work(ORDER_WORK)

    def entries(self, owners: dict[int, Owner]) -> dict[int, dict[str, Any]]:
        """One BatchGetItem per 100 orders."""
        items = self._db.batch_get([_ledger_key(owner.caller, owner.ledger_sk) for owner in owners.values()])
        return {int(item["order_id"]): item for item in items if item.get("order_id") is not None}

    def resolve(self, caller: str, key_hash: str, order_id: int | None, answer: dict[str, Any] | None,
                expires_at: float, now: float) -> None:
        """Operator's decision on an unknown outcome: record the real order, or free the key.

        The write itself checks that the outcome is still unsettled, so a request whose
        lease is running (it may yet complete) or a late completion is never overridden."""
        record = self.find(caller, key_hash)
        if record is None:
            raise errors.NotFound("No idempotency record for this caller and key.")
        settleable = {":owner": record.owner, ":unknown": UNKNOWN, ":in_flight": IN_FLIGHT, ":now": _num(now)}
        if order_id is None:
            items = [
                {"Delete": {"TableName": self._table, "Key": self._db.item(_idem_key(caller, key_hash)),
                            "ConditionExpression": _SETTLEABLE,
                            "ExpressionAttributeNames": {"#owner": "owner", "#state": "state"},
                            "ExpressionAttributeValues": self._db.values(settleable),
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
                {"Delete": {"TableName": self._table, "Key": self._db.item(_ledger_key(caller, record.ledger_sk))}},
                *self._refund(caller, record.spend_day, record.estimated_charge),
            ]
        else:
            entry = self._entry(caller, record.ledger_sk) or {}
            created = self._created(caller, _order_facts_of(entry), order_id)
            items = self._completion(caller, key_hash, record.owner, record.ledger_sk, order_id,
                                     answer or {}, expires_at, created)
            update = items[0]["Update"]
            update["ConditionExpression"] = _SETTLEABLE
            update["ExpressionAttributeValues"] |= self._db.values(settleable)
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            self._db.transact(items)
        except Cancelled as cancelled:
            raise errors.IdempotencyConflict(self._unresolvable(cancelled.reasons[0])) from None
        if order_id is not None:
            self._published([created])

    def index_unsettled(self, caller: str) -> list[dict[str, Any]]:
        """Entries claimed before `unsettled` existed lack it, so `unsettled()` misses them.

        Pages through the caller's ledger (a Query, once per upgrade); each mark is
        conditional on the entry being unsettled and unmarked still, so an entry that
        completed (its `unsettled` removed) or was released meanwhile is not listed again."""
        unsettled = {":submitting": "submitting", ":unknown": UNKNOWN}
        still = "#state IN (:submitting, :unknown) AND attribute_not_exists(unsettled)"
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": still,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": self._db.values({":pk": f"LEDGER#{caller}", **unsettled}),
        }
        marked: list[dict[str, Any]] = []
        for item in self._db.query_all(**params):
            if not self._db.conditional(
                    "update_item", TableName=self._table, Key=self._db.item(_ledger_key(caller, item["sk"])),
                    UpdateExpression="SET unsettled = :caller", ConditionExpression=still,
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=self._db.values({":caller": caller, **unsettled})):
                continue  # settled (or marked) since the page was read
            marked.append(item)
        return marked

    def index_orders(self, caller: str) -> dict[str, int]:
        """Entries completed before ORDER# items and `work` existed lack them, so `owners`
        and the status sync miss them. Pages through the caller's ledger (a Query, once
        per upgrade). Each write is conditional: an ORDER# item is put only where none
        is, and `work` set only on an entry still open and unmarked (the sync, or a
        status read, may be moving it at the same time), so a rerun writes nothing."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "attribute_exists(order_id)",
            "ExpressionAttributeValues": self._db.values({":pk": f"LEDGER#{caller}"}),
        }
        opened = {":p": "pending", ":i": "in_progress", ":r": "processing"}
        written = {"order_items": 0, "work": 0}
        for item in self._db.query_all(**params):
            order_id = int(item["order_id"])
            # An UpdateItem that creates: the operators' policy grants UpdateItem, not PutItem.
            if self._db.conditional(
                    "update_item", TableName=self._table, Key=self._db.item(_order_key(order_id)),
                    UpdateExpression="SET order_id = :order, #caller = :caller, ledger_sk = :sk",
                    ConditionExpression="attribute_not_exists(pk)", ExpressionAttributeNames={"#caller": "caller"},
                    ExpressionAttributeValues=self._db.values({":order": order_id, ":caller": caller,
                                                               ":sk": item["sk"]})):
                written["order_items"] += 1
            if item.get("state") in OPEN_STATES and "work" not in item and self._db.conditional(
                    "update_item", TableName=self._table, Key=self._db.item(_ledger_key(caller, item["sk"])),
                    UpdateExpression="SET #work = :work",
                    ConditionExpression="attribute_not_exists(#work) AND #state IN (:p, :i, :r)",
                    ExpressionAttributeNames={"#work": "work", "#state": "state"},
                    ExpressionAttributeValues=self._db.values({":work": ORDER_WORK, **opened})):
                written["work"] += 1
        return written

    # -- reads ---------------------------------------------------------------------

    def find(self, caller: str, key_hash: str) -> Record | None:
        found = self._db.call("get_item", TableName=self._table, Key=self._db.item(_idem_key(caller, key_hash)),
                           ConsistentRead=True)
        item = found.get("Item")
        return self._record(self._db.plain(item)) if item else None

    def owners(self, order_ids: list[int]) -> dict[int, Owner]:
        """One BatchGetItem per 100 ids (the gateway's batches hold at most 100)."""
        items = self._db.batch_get([_order_key(i) for i in dict.fromkeys(order_ids)])
        return {int(item["order_id"]): Owner(item["caller"], item["ledger_sk"]) for item in items}

    def unsettled(self, caller: str) -> list[dict[str, Any]]:
        """Reads only the sparse index: a caller's settled orders cost nothing here."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": UNSETTLED_INDEX,
            "KeyConditionExpression": "unsettled = :caller",
            "ExpressionAttributeValues": self._db.values({":caller": caller}),
            "ScanIndexForward": False,
        }
        return list(self._db.query_all(**params))

    def ledger(self, caller: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the caller's ledger, newest first."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": self._db.values({":pk": f"LEDGER#{caller}"}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            sk = dynamo.read_cursor(cursor, _LEDGER_SK.fullmatch)
            params["ExclusiveStartKey"] = self._db.item(_ledger_key(caller, sk))
        page = self._db.call("query", **params)
        last = page.get("LastEvaluatedKey")
        return ([self._db.plain(item) for item in page.get("Items", [])],
                dynamo.cursor(self._db.plain(last)["sk"]) if last else None)

    # -- plumbing ------------------------------------------------------------------

    def _completion(self, caller: str, key_hash: str, owner: str, ledger_sk: str, order_id: int,
                    answer: dict[str, Any], expires_at: float, created: Event) -> list[dict[str, Any]]:
        """Record, ledger entry (now open: in the WORK_INDEX), ORDER# item and `order.created`.

        The entry takes an order id once: a second completion of it (a late one after an
        operator's resolve) is refused whole, so the order is announced once."""
        ledger = self._ledger_update(caller, ledger_sk, "SET #state = :pending, order_id = :order, "
                                     "#status = :status, #work = :work REMOVE lease_until, unsettled",
                                     {":pending": "pending", ":order": order_id, ":status": "Pending",
                                      ":work": ORDER_WORK})
        ledger["Update"]["ConditionExpression"] = "attribute_exists(pk) AND attribute_not_exists(order_id)"
        ledger["Update"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return [
            self._owned_update(caller, key_hash, owner,
                               "SET #state = :completed, answer = :answer, order_id = :order, "
                               "expires_at = :expires REMOVE lease_until",
                               {":completed": COMPLETED, ":answer": json.dumps(answer),
                                ":order": order_id, ":expires": _num(expires_at)}),
            ledger,
            {"Put": {"TableName": self._table,
                     "Item": self._db.item(_order_key(order_id) | {"order_id": order_id, "caller": caller,
                                                                   "ledger_sk": ledger_sk})}},
            self._event_put(created),
        ]

    @staticmethod
    def _created(caller: str, facts: dict[str, Any], order_id: int) -> Event:
        return model.new(caller, "order.created", _order_data(
            {**facts, "id": order_id}, {"state": "pending", "status": "Pending"}, None))

    def _event_put(self, event: Event) -> dict[str, Any]:
        return self._db.put_new(model.to_item(event))

    def _entry(self, caller: str, ledger_sk: str) -> dict[str, Any] | None:
        found = self._db.call("get_item", TableName=self._table, Key=self._db.item(_ledger_key(caller, ledger_sk)),
                              ConsistentRead=True)
        return self._db.plain(found["Item"]) if found.get("Item") else None

    def _unresolvable(self, reason: dict[str, Any]) -> str:
        """Why the table refused a resolve, from the record as it was at that moment."""
        if reason.get("Code") != "ConditionalCheckFailed":
            return "The key's record changed while it was being resolved; nothing was changed. Look again."
        if not reason.get("Item"):
            return "The key was released meanwhile; nothing was changed."
        held = self._record(self._db.plain(reason["Item"]))
        if held.state == COMPLETED:
            return "The key completed meanwhile (its order was recorded); nothing was changed."
        return (f"The key's request is still in flight (its lease runs until {iso(held.lease_until)}) and may yet "
                "complete; nothing was changed. Resolve it after the lease, if it is still unknown then.")

    def _refund(self, caller: str, spend_day: str | None, charge: str | None) -> list[dict[str, Any]]:
        """Give back a claim's reservation of the day's spending (none without a cap)."""
        if spend_day is None or charge is None:
            return []
        return [{"Update": {
            "TableName": self._table,
            "Key": self._db.item({"pk": f"SPEND#{caller}", "sk": spend_day}),
            "UpdateExpression": "ADD #total :refund",
            "ExpressionAttributeNames": {"#total": "total"},
            "ExpressionAttributeValues": self._db.values({":refund": -Decimal(charge)}),
        }}]

    def _owned_update(self, caller: str, key_hash: str, owner: str, expression: str,
                      values: dict[str, Any], only_in_flight: bool = False) -> dict[str, Any]:
        condition = "#owner = :owner" + (" AND #state = :in_flight" if only_in_flight else "")
        extra = {":in_flight": IN_FLIGHT} if only_in_flight else {}
        return {"Update": {
            "TableName": self._table,
            "Key": self._db.item(_idem_key(caller, key_hash)),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#owner": "owner", "#state": "state"},
            "ExpressionAttributeValues": self._db.values({":owner": owner, **values, **extra}),
        }}

    def _ledger_update(self, caller: str, ledger_sk: str, expression: str, values: dict[str, Any]) -> dict[str, Any]:
        names = {"#state": "state"} | {name: name[1:] for name in ("#status", "#work") if name in expression}
        return {"Update": {
            "TableName": self._table,
            "Key": self._db.item(_ledger_key(caller, ledger_sk)),
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": self._db.values(values),
        }}

    @staticmethod
    def _record(item: dict[str, Any]) -> Record:
        return Record(
            state=item.get("state", IN_FLIGHT),
            owner=item.get("owner", ""),
            fingerprint=item.get("fingerprint", ""),
            lease_until=float(item.get("lease_until", 0)),
            ledger_sk=item.get("ledger_sk", ""),
            answer=json.loads(item["answer"]) if item.get("answer") else None,
            expires_at=float(item["expires_at"]) if "expires_at" in item else None,
            spend_day=item.get("spend_day"),
            estimated_charge=item.get("estimated_charge"),
        )


def order_facts(request: dict[str, Any], quantity: int | None, key: str | None) -> dict[str, Any]:
    """What the ledger knows of an order from its request, for its events."""
    return {"service": request.get("service"), "link": request.get("link"), "quantity": quantity,
            "idempotency_key": key}


def _order_facts_of(entry: dict[str, Any]) -> dict[str, Any]:
    quantity = entry.get("quantity")
    order_id = entry.get("order_id")
    return {**order_facts(json.loads(entry.get("request") or "{}"), int(quantity) if quantity is not None else None,
                          entry.get("idempotency_key")),
            "id": int(order_id) if order_id is not None else None}


def _order_data(facts: dict[str, Any], current: dict[str, Any], entry: dict[str, Any] | None) -> dict[str, Any]:
    """An order event's `data`: the ledger's order as it is now, and its state before
    (`entry`, the ledger entry as read; None for an order new to the panel)."""
    return {**facts, "state": current["state"], "status": current["status"],
            "charge": current.get("charge"), "remains": current.get("remains"),
            "previous_state": entry.get("state") if entry else None,
            "previous_status": entry.get("status") if entry else None}


def _idem_key(caller: str, key_hash: str) -> dict[str, str]:
    return {"pk": f"IDEM#{caller}#{key_hash}", "sk": "IDEM"}


# iso(created_at) "#" owner token (the desk's are uuid4 hex): at most 89 ASCII bytes.
_LEDGER_SK = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z#[0-9A-Za-z_-]{1,64}")


def write_change(db: Table, update: dict[str, Any], event: Event | None,
                 published: Callable[[Sequence[Event]], None]) -> Event | None:
    """A status change (`update`, conditional on the status it replaces) with its event,
    then the event published. None when another writer recorded this change first."""
    # the token makes an SDK retry of a write that did happen a success, not a refusal
    if not db.changed(update, model.to_item(event) if event else None,
                      token=event.id.removeprefix("evt_") if event else None):
        return None
    if event is not None:
        published([event])
    return event


def _order_key(order_id: int) -> dict[str, Any]:
    return {"pk": f"ORDER#{order_id}", "sk": "ORDER"}


def _ledger_key(caller: str, ledger_sk: str) -> dict[str, str]:
    return {"pk": f"LEDGER#{caller}", "sk": ledger_sk}


def _num(value: float) -> Decimal:
    return Decimal(str(round(value, 3)))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

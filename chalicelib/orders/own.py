"""What a key limited to its own orders sees of orders and refills: only its caller's.

Any other id, whether it belongs to another caller or does not exist, is answered
`order_not_found` / `refill_not_found` by the gateway itself, with one message and
without asking the panel, so neither the answer, its timing nor the panel's text
can tell the two apart. Whose an id is comes from the table in one BatchGetItem per
request (per 100 ids): orders from their ORDER# item (written when an order placed
through the gateway completes), refills from their REFILL# item (written when one is
made through the gateway). Orders placed before ORDER# items existed have none until
`python -m ops` backfills them, so until then they are not found for such a key.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from chalicelib import errors
from chalicelib.orders.existing import Item, Orders
from chalicelib.orders.store import Owner


class OrderOwners(Protocol):
    def owners(self, order_ids: list[int]) -> dict[int, Owner]: ...


class RefillOwners(Protocol):
    def owners(self, refill_ids: list[int]) -> dict[int, str]: ...


def no_order() -> errors.NotFound:
    return errors.NotFound("No such order.", code="order_not_found")


def no_refill() -> errors.NotFound:
    return errors.NotFound("No such refill.", code="refill_not_found")


class OwnOrders:
    """`Orders` for one caller's key: the same methods, on the caller's ids only."""

    def __init__(self, orders: Orders, caller: str, order_owners: OrderOwners, refill_owners: RefillOwners) -> None:
        self._orders = orders
        self._caller = caller
        self._order_owners = order_owners
        self._refill_owners = refill_owners

    def status(self, order_id: int) -> Item:
        self._require(self._own_orders([order_id]), order_id, no_order)
        return self._orders.status(order_id)

    def statuses(self, ids: list[int]) -> list[Item]:
        return _only(ids, self._own_orders(ids), self._orders.statuses, lambda i: {"id": i, "error": no_order().body()})

    def refill(self, caller: str, order_id: int) -> Item:
        self._require(self._own_orders([order_id]), order_id, no_order)
        return self._orders.refill(caller, order_id)

    def refills(self, caller: str, order_ids: list[int]) -> list[Item]:
        return _only(order_ids, self._own_orders(order_ids), lambda ids: self._orders.refills(caller, ids),
                     lambda i: {"order": i, "error": no_order().body()})

    def cancel(self, order_id: int) -> Item:
        self._require(self._own_orders([order_id]), order_id, no_order)
        return self._orders.cancel(order_id)

    def cancels(self, order_ids: list[int]) -> list[Item]:
        return _only(order_ids, self._own_orders(order_ids), self._orders.cancels,
                     lambda i: {"id": i, "error": no_order().body()})

    def refill_status(self, refill_id: int) -> Item:
        self._require(self._own_refills([refill_id]), refill_id, no_refill)
        return self._orders.refill_status(refill_id)

    def refill_statuses(self, ids: list[int]) -> list[Item]:
        return _only(ids, self._own_refills(ids), self._orders.refill_statuses,
                     lambda i: {"id": i, "error": no_refill().body()})

    def _own_orders(self, ids: list[int]) -> set[int]:
        return {i for i, owner in self._order_owners.owners(ids).items() if owner.caller == self._caller}

    def _own_refills(self, ids: list[int]) -> set[int]:
        return {i for i, caller in self._refill_owners.owners(ids).items() if caller == self._caller}

    @staticmethod
    def _require(own: set[int], wanted: int, missing: Callable[[], errors.NotFound]) -> None:
        if wanted not in own:
            raise missing()


def _only(ids: list[int], own: set[int], answer: Callable[[list[int]], list[Item]],
          missing: Callable[[int], Item]) -> list[Item]:
    """`answer` for the own ids (never called without one), `missing` for the rest, in input order."""
    asked = [i for i in ids if i in own]
    answers: Any = iter(answer(asked) if asked else [])
    return [next(answers) if i in own else missing(i) for i in ids]

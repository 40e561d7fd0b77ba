"""Figure 7: the status sync. What one cycle costs for N open orders, and how soon a
status change on the panel can be read on `GET /events`.

Runs in a child process (`bench.worker sync`) that imports the app as Lambda does and
calls the scheduled function, `app.sync_statuses`, itself. The panel is a sandbox in
this process (manual clock, over loopback HTTP); DynamoDB is the parent's moto.
Open orders are written into the ledger in batches, as completions leave them
(`pending`, `work = "order"`, an ORDER# item): placing 1000 through `POST /orders`
would measure moto, not the sync. For the same reason the "changed" cycle moves a
tenth of them: each change is one TransactWriteItems, and moto copies every table
on each transaction, so its time, not the gateway's, would grow with the table. Counts come from botocore's `before-call` hook on
the app's DynamoDB client and from the sandbox's own call log.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from bench.events import LambdaContext, event, fresh
from bench.stats import median


def measure(key: str, orders: int, repeats: int, port: int) -> dict[str, Any]:
    import app
    from local.run import scheduled_event
    from sandbox import DEFAULT_KEY, SandboxPanel

    panel = SandboxPanel(DEFAULT_KEY, services=100, clock=None, balance=Decimal(10**9), one_order_per_link=False)
    panel.start(port=port)
    try:
        dynamodb = app.boto_client("dynamodb")
        seen: list[str] = []
        dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: seen.append(model.name))
        context = LambdaContext()

        def cycle() -> dict[str, Any]:
            """One run of the scheduled function: its counts, requests, panel calls and wall time."""
            seen.clear()
            calls = len(panel.calls)
            started = time.perf_counter()
            counts = app.sync_statuses(scheduled_event(), None)
            wall = (time.perf_counter() - started) * 1000
            return {"ms": round(wall, 1), "panel_calls": len(panel.calls) - calls, "dynamodb": len(seen),
                    "writes": seen.count("TransactWriteItems"), "queries": seen.count("Query"),
                    "changed": counts["changed"], "events": counts["events"], "failed": counts["failed"]}

        def call(ev: dict[str, Any], status: int = 200) -> Any:
            answer = app.app(fresh(ev), context)
            if answer["statusCode"] != status:
                raise RuntimeError(f"{ev['path']}: {answer['statusCode']} {answer['body'][:300]}")
            return json.loads(answer["body"])

        cycle()  # warm-up: imports, clients, the secret, the pool's threads
        # Change to readable, first, on a small table (moto copies every table on each
        # transaction, so on a large one its own time would swamp the gateway's): an order
        # placed through POST /orders, then moved on the panel; the sync runs, then a read.
        latencies = []
        for n in range(repeats + 1):
            placed = call(event("POST", "/orders", "/orders", key=key, headers={"idempotency-key": f"sync-{n}"},
                                body={"service": 1, "link": f"https://www.instagram.com/p/sync{n}/",
                                      "quantity": 100}), 201)
            panel.advance(6)  # Pending -> In progress
            started = time.perf_counter()
            app.sync_statuses(scheduled_event(), None)
            page = call(event("GET", "/events", "/events", key=key, query={"type": "order.in_progress", "limit": "1"}))
            spent = (time.perf_counter() - started) * 1000
            if page["events"][0]["data"]["id"] != placed["id"]:
                raise RuntimeError(f"the event of order {placed['id']} is not the newest: {page}")
            if n:  # the first one warms up
                latencies.append(spent)
            panel.advance(30)  # Completed: the sync closes it
            app.sync_statuses(scheduled_event(), None)
        # N open orders: a tenth placed 3 s before the rest, so that 2.5 s later those have
        # moved on (In progress) and the rest have not (Pending).
        early = max(1, orders // 10)
        _seed(app, panel, range(early))
        panel.advance(3)
        _seed(app, panel, range(early, orders))
        unchanged = cycle()
        panel.advance(2.5)
        changed = cycle()
    finally:
        panel.stop()
    return {"orders": orders, "unchanged": unchanged, "changed": changed, "changed_orders": early,
            "change_to_event_ms": round(median(latencies), 1), "repeats": repeats}


def _seed(app: Any, panel: Any, numbers: range) -> None:
    from chalicelib.dynamo import Table
    from sandbox import DEFAULT_KEY

    table = Table(app.boto_client("dynamodb"), app.table())
    items = []
    for n in numbers:
        answer = panel.handle({"key": DEFAULT_KEY, "action": "add", "service": "1", "quantity": "100",
                               "link": f"https://www.instagram.com/p/seed{n}/"})
        order_id = json.loads(answer.body)["order"]
        sk = f"2026-01-01T00:{n // 60000:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z#seed{n}"
        items.append({"pk": "LEDGER#bench", "sk": sk, "order_id": order_id, "state": "pending", "status": "Pending",
                      "work": "order", "idempotency_key": f"seed-{n}", "quantity": 100,
                      "request": json.dumps({"service": 1, "link": f"https://www.instagram.com/p/seed{n}/",
                                             "quantity": 100})})
        items.append({"pk": f"ORDER#{order_id}", "sk": "ORDER", "order_id": order_id, "caller": "bench",
                      "ledger_sk": sk})
    client = app.boto_client("dynamodb")
    for start in range(0, len(items), 25):
        client.batch_write_item(RequestItems={app.table(): [{"PutRequest": {"Item": table.item(item)}}
                                                            for item in items[start:start + 25]]})

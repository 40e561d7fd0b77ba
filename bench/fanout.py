"""Figure 3: a 1000-id batch read against a panel that takes 200 ms per call.

Runs in a child process (`bench.worker fanout`); the panel is the sandbox in the
parent, over real loopback HTTP, with a delay injected into every `status` call.
The gateway splits 1000 ids into 10 calls of 100 and runs them concurrently, so the
batch should take about one call's time, not ten.
"""

from __future__ import annotations

import time
from typing import Any

from bench.events import LambdaContext, event, fresh
from bench.stats import median


def measure(key: str, ids: int, repeats: int) -> dict[str, Any]:
    import app

    context = LambdaContext()

    def wall(ev: dict[str, Any]) -> float:
        started = time.perf_counter()
        answer = app.app(fresh(ev), context)
        spent = time.perf_counter() - started
        if answer["statusCode"] != 200:
            raise RuntimeError(f"{ev['path']}: {answer['statusCode']} {answer['body'][:300]}")
        return spent * 1000

    single = event("GET", "/orders/{order_id}", "/orders/23501", key=key, path_params={"order_id": "23501"})
    batch = event("GET", "/orders", "/orders", key=key,
                  query={"ids": ",".join(str(23501 + i) for i in range(ids))})
    wall(single)  # warm-up: secret, clients, the pool's threads and connections
    wall(batch)
    singles, batches = [], []
    for _ in range(repeats):
        singles.append(wall(single))
        batches.append(wall(batch))
    one, many = median(singles), median(batches)
    # The parent counts the panel's calls: `singles` single reads and `batches` batch reads were sent.
    return {"single_ms": round(one, 1), "batch_ms": round(many, 1), "ids": ids, "ratio": round(many / one, 2),
            "repeats": repeats, "singles": repeats + 1, "batches": repeats + 1}

"""Figure 4: peak memory of one warm container serving a realistic mix.

Runs in a child process (`bench.worker memory`) that imports the app, caches the
5000-service catalogue and serves `requests` mixed requests. Peak RSS is read from
/proc's VmHWM: `ru_maxrss` would be wrong here, because Linux carries it over from
the parent across exec, and the parent holds moto.
"""

from __future__ import annotations

import itertools
import resource
from pathlib import Path
from typing import Any, Callable

from bench.events import event


def peak_mb() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mix(key: str) -> list[tuple[int, Callable[[int], dict[str, Any]]]]:
    """(weight, n-th request) for what a busy account sends: reads, and one in 32 an order.

    Orders use 50 keys in turn, so after the first 50 every order is a replay: moto copies a
    whole table on each transaction, and a table that kept growing would time moto, not us."""
    types = ("Default", "Poll", "Package", "Custom Comments", "Web Traffic", "Subscriptions")
    order = {"service": 1, "quantity": 100}

    def read_order(n: int) -> dict[str, Any]:
        return event("GET", "/orders/{order_id}", f"/orders/{23501 + n}", key=key,
                     path_params={"order_id": str(23501 + n)})

    def batch(n: int) -> dict[str, Any]:
        ids = ",".join(str(23501 + (n + i) % 5000) for i in range(100))
        return event("GET", "/orders", "/orders", key=key, query={"ids": ids})

    def place(n: int) -> dict[str, Any]:
        return event("POST", "/orders", "/orders", key=key, headers={"idempotency-key": f"mem-{n % 50}"},
                     body={**order, "link": f"https://www.instagram.com/p/mem{n % 50}/"})

    return [
        (12, read_order),
        (6, lambda n: event("GET", "/services", "/services", key=key, query={"type": types[n % len(types)]})),
        (4, lambda n: event("GET", "/services/{service_id}", f"/services/{1 + n % 5000}", key=key,
                            path_params={"service_id": str(1 + n % 5000)})),
        (4, batch),
        (4, lambda n: event("GET", "/balance", "/balance", key=key)),
        (1, place),
        (1, lambda n: event("GET", "/orders", "/orders", key=key, query={"limit": "25"})),
    ]


def measure(services_file: str, key: str, requests: int) -> dict[str, Any]:
    services = Path(services_file).read_bytes()
    steps = {"interpreter_mb": round(peak_mb(), 1)}
    import app  # noqa: F401  (the cold start)

    steps["import_app_mb"] = round(peak_mb(), 1)
    from bench.inproc import Gateway

    gateway = Gateway(services)  # requests, boto3 and the Secrets Manager client: the first request's
    gateway.watch_dynamodb()
    steps["clients_mb"] = round(peak_mb(), 1)
    gateway.expect(event("GET", "/services", "/services", key=key, query={"type": "Poll"}), 200)
    steps["catalogue_cached_mb"] = round(peak_mb(), 1)
    plan = [maker for weight, maker in mix(key) for _ in range(weight)]
    statuses: dict[int, int] = {}
    counters = [itertools.count() for _ in plan]
    for n in range(requests):
        slot = n % len(plan)
        answer, _ = gateway.call(plan[slot](next(counters[slot])))
        statuses[answer["statusCode"]] = statuses.get(answer["statusCode"], 0) + 1
    bad = {code: count for code, count in statuses.items() if code >= 400}
    if bad:
        raise RuntimeError(f"the mix met errors: {bad}")
    steps["peak_mb"] = round(peak_mb(), 1)
    return {"steps": steps, "requests": requests, "statuses": statuses, "catalogue_bytes": len(services)}

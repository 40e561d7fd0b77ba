"""Figure 2: the gateway's own time per request, against a handler returning a constant.

Runs in a child process (`bench.worker gateway`). Each repeat serves every scenario
in turn (so a slow moment of the machine touches them all alike) and yields a p50
and a p99 per scenario; the figures are the medians of those over the repeats. The
floor is `GET /health` through the same handler, envelope and log line: what any
route costs before it does its own work.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

from bench.events import event
from bench.inproc import Gateway
from bench.stats import median, percentile

MS = 1e6  # ns per ms
REPLAY_KEYS = 5  # keys placed once in the warm-up, then replayed in turn


@dataclass
class Scenario:
    name: str
    make: Callable[[int], dict[str, Any]]  # the n-th request of this scenario
    status: int
    target_ms: float | None = None  # p50 target, where the issue sets one
    heavy: bool = False  # tens of ms a request: a tenth as many samples

    def count(self, requests: int, post_requests: int) -> int:
        if self.name.startswith("POST"):
            return post_requests
        return max(2, requests // 10) if self.heavy else requests


def scenarios(key: str, ids: int) -> list[Scenario]:
    batch = ",".join(str(23501 + i) for i in range(ids))
    order = {"service": 1, "quantity": 100}
    replay_keys = [f"bench-replay-{n}" for n in range(REPLAY_KEYS)]
    new_keys = itertools.count()

    def new_order(n: int) -> dict[str, Any]:
        k = next(new_keys)
        return event("POST", "/orders", "/orders", key=key, headers={"idempotency-key": f"bench-new-{k}"},
                     body={**order, "link": f"https://www.instagram.com/p/new{k}/"})

    def replay(n: int) -> dict[str, Any]:
        k = replay_keys[n % len(replay_keys)]
        return event("POST", "/orders", "/orders", key=key, headers={"idempotency-key": k},
                     body={**order, "link": f"https://www.instagram.com/p/{k}/"})

    return [
        Scenario("floor: GET /health (constant)", lambda n: event("GET", "/health", "/health"), 200),
        Scenario("GET /orders/{id}", lambda n: event(
            "GET", "/orders/{order_id}", f"/orders/{23501 + n % 1000}", key=key,
            path_params={"order_id": str(23501 + n % 1000)}), 200, 1.0),
        Scenario("GET /services/{id}", lambda n: event(
            "GET", "/services/{service_id}", f"/services/{1 + n % 5000}", key=key,
            path_params={"service_id": str(1 + n % 5000)}), 200, 1.0),
        Scenario("GET /services?type=Poll", lambda n: event(
            "GET", "/services", "/services", key=key, query={"type": "Poll"}), 200, 1.0),
        Scenario("GET /services?type=Default (large answer)", lambda n: event(
            "GET", "/services", "/services", key=key, query={"type": "Default"}), 200, heavy=True),
        Scenario(f"GET /orders?ids= ({ids} ids)", lambda n: event(
            "GET", "/orders", "/orders", key=key, query={"ids": batch}), 200, heavy=True),
        Scenario("POST /orders (new; DynamoDB wire time out)", new_order, 201),
        Scenario("POST /orders (replay; DynamoDB wire time out)", replay, 201),
    ]


def measure(gateway: Gateway, key: str, *, requests: int, repeats: int, ids: int,
            post_requests: int) -> dict[str, Any]:
    plan = scenarios(key, ids)
    gateway.panel.prepare_statuses(range(23501, 23501 + ids))
    # Warm-up: catalogue fetch and parse, validators, the replay keys' first placement. The
    # first call of each kind is kept (wall time): what a fresh container pays once.
    first: dict[str, float] = {}
    for s in plan:
        for n in range(REPLAY_KEYS if s.name.startswith("POST /orders (replay") else 1):
            started = time.perf_counter_ns()
            answer, _ = gateway.call(s.make(n))
            first.setdefault(s.name, round((time.perf_counter_ns() - started) / MS, 2))
            if answer["statusCode"] != s.status:
                raise RuntimeError(f"{s.name}: {answer['statusCode']} {answer['body'][:300]}")
    dynamo = _dynamo_per_request(gateway, plan, min(10, post_requests))
    samples: dict[str, list[tuple[float, float]]] = {s.name: [] for s in plan}
    # Means per request: botocore's share of the own time, and the process's CPU time, which
    # a busy machine disturbs less than wall time (moto runs in the parent, so it is not in it).
    aws_client: dict[str, list[float]] = {s.name: [] for s in plan}
    cpu_time: dict[str, list[float]] = {s.name: [] for s in plan}
    for _ in range(repeats):
        for s in plan:
            count = s.count(requests, post_requests)
            times, events = [], [s.make(n) for n in range(count)]
            botocore, cpu = gateway.aws.botocore_ns, time.process_time_ns()
            for ev in events:
                answer, own = gateway.call(ev)
                if answer["statusCode"] != s.status:
                    raise RuntimeError(f"{s.name}: {answer['statusCode']} {answer['body'][:300]}")
                times.append(own / MS)
            samples[s.name].append((percentile(times, 50), percentile(times, 99)))
            aws_client[s.name].append((gateway.aws.botocore_ns - botocore) / count / MS)
            cpu_time[s.name].append((time.process_time_ns() - cpu) / count / MS)
    floor = median([p50 for p50, _ in samples[plan[0].name]])
    rows = []
    for s in plan:
        p50 = median([p for p, _ in samples[s.name]])
        p99 = median([p for _, p in samples[s.name]])
        rows.append({"name": s.name, "p50_ms": round(p50, 4), "p99_ms": round(p99, 4),
                     "cpu_ms": round(median(cpu_time[s.name]), 4),
                     "botocore_ms": round(median(aws_client[s.name]), 4),
                     "floor_p50_ms": round(floor, 4), "ratio": round(p50 / floor, 2),
                     "target_ms": s.target_ms, "met": None if s.target_ms is None else p50 <= s.target_ms,
                     "requests": s.count(requests, post_requests) * repeats})
    return {"rows": rows, "dynamodb": dynamo, "first_call_ms": first, "panel_calls": dict(gateway.panel.calls)}


def _dynamo_per_request(gateway: Gateway, plan: list[Scenario], runs: int) -> dict[str, Any]:
    """DynamoDB requests of one new order and of one replay (issue 3's targets: <= 3 and 1)."""
    found: dict[str, Any] = {}
    for label, name in (("per_new_order", "POST /orders (new"), ("per_replay", "POST /orders (replay")):
        scenario = next(s for s in plan if s.name.startswith(name))
        before = gateway.aws.calls["dynamodb"]
        for n in range(runs):
            gateway.expect(scenario.make(n), scenario.status)
        found[label] = (gateway.aws.calls["dynamodb"] - before) / runs
    found["target_new_order"] = "<= 3 (ideally 2)"
    found["target_replay"] = "1"
    return found

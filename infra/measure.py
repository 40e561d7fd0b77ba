"""Measure what the Lambda function needs: peak memory and CPU of a cold container.

The Lambda memory size is chosen from these numbers (docs/deploy.md), so they are
reproducible: `python -m infra.measure`. It starts the embedded AWS and a sandbox
panel with a large catalogue, then runs the handler in a fresh interpreter the way
Lambda does (`app.app(event, context)` with API Gateway proxy events) and reports,
step by step, wall time, CPU time and the process's peak resident memory.

CPU time matters as much as memory: Lambda gives a function CPU in proportion to its
memory (one full vCPU at 1769 MB), so a cold start's CPU seconds stretch by
1769 / memory on a small function.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FULL_VCPU_MB = 1769
LAMBDA_SIZES = (128, 256, 384, 512, 768, 1024)
CALLER_KEY = "sgw_measure_caller_key"


def event(method: str, resource_path: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
          path_params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway (REST, proxy) event as Lambda hands it to Chalice."""
    sent = {"content-type": "application/json", "x-api-key": CALLER_KEY, **(headers or {})}
    return {
        "resource": resource_path, "path": path, "httpMethod": method, "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": query, "multiValueQueryStringParameters":
            {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params, "stageVariables": None,
        "requestContext": {"resourcePath": resource_path, "httpMethod": method, "path": path,
                           "requestId": f"measure-{time.monotonic_ns()}", "stage": "api"},
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec,
    # which here holds moto and the sandbox.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(orders: int) -> None:
    """Runs in a fresh interpreter: the cold container."""
    steps: list[dict[str, Any]] = []

    def step(name: str, action: Any) -> Any:
        wall, cpu = time.perf_counter(), _cpu()
        result = action()
        steps.append({"step": name, "wall_ms": round((time.perf_counter() - wall) * 1000, 1),
                      "cpu_ms": round((_cpu() - cpu) * 1000, 1), "peak_mb": round(_peak_mb(), 1)})
        return result

    steps.append({"step": "interpreter", "wall_ms": 0, "cpu_ms": round(_cpu() * 1000, 1),
                  "peak_mb": round(_peak_mb(), 1)})
    sys.path.insert(0, str(ROOT))
    gateway = step("import app (cold init)", lambda: __import__("app"))

    def call(ev: dict[str, Any]) -> dict[str, Any]:
        answer = gateway.app(ev, None)
        if answer["statusCode"] >= 400:
            raise RuntimeError(f"{ev['path']}: {answer['statusCode']} {answer['body'][:300]}")
        return json.loads(answer["body"])

    step("GET /balance (first: secret, boto3, requests)", lambda: call(event("GET", "/balance", "/balance")))
    step("GET /services (catalogue fetch and parse)", lambda: call(event("GET", "/services", "/services")))
    ids: list[int] = []

    def place() -> None:
        for n in range(orders):
            answer = call(event("POST", "/orders", "/orders", headers={"idempotency-key": f"m-{n}"},
                                body={"service": 1, "link": f"https://www.instagram.com/p/m{n}/", "quantity": 100}))
            ids.append(answer["id"])

    step(f"POST /orders x{orders} (validation, DynamoDB transactions)", place)
    step("GET /orders?ids=<100> (batch status)",
         lambda: call(event("GET", "/orders", "/orders", query={"ids": ",".join(map(str, ids[:100]))})))
    step("GET /orders (ledger page)", lambda: call(event("GET", "/orders", "/orders", query={"limit": "100"})))
    print(json.dumps(steps))


def measure(services: int, orders: int) -> list[dict[str, Any]]:
    from chalicelib.callers import record_for
    from local.aws import SECRET_ID, TABLE, EmbeddedAws, create_table, write_secret
    from sandbox import DEFAULT_KEY, SandboxPanel

    aws = EmbeddedAws().start()
    panel = SandboxPanel(services=services, balance=__import__("decimal").Decimal("1000000"),
                         one_order_per_link=False)
    try:
        url = panel.start()
        create_table(aws.client("dynamodb"))
        caller: list[Any] = [record_for("measure", CALLER_KEY)]
        write_secret(aws.client("secretsmanager"), url, DEFAULT_KEY, caller)
        env = {**os.environ, **aws.environ(), "GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": SECRET_ID,
               "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run([sys.executable, "-m", "infra.measure", "--child", "--orders", str(orders)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        panel.stop()
        aws.stop()


def report(steps: list[dict[str, Any]], services: int) -> str:
    lines = [f"catalogue: {services} services", f"{'step':58} {'wall ms':>8} {'cpu ms':>8} {'peak MB':>8}"]
    lines += [f"{s['step']:58} {s['wall_ms']:>8} {s['cpu_ms']:>8} {s['peak_mb']:>8}" for s in steps]
    cold_cpu = sum(s["cpu_ms"] for s in steps[:4])
    lines += ["", "cold start to first answers (interpreter + import + /balance + /services), "
              f"CPU {cold_cpu:.0f} ms; at Lambda memory sizes that CPU takes about:"]
    lines += [f"  {mb:5} MB: {cold_cpu * max(1.0, FULL_VCPU_MB / mb) / 1000:5.2f} s" for mb in LAMBDA_SIZES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10000, help="catalogue size of the sandbox panel")
    parser.add_argument("--orders", type=int, default=100, help="orders placed (and batch-read)")
    parser.add_argument("--json", action="store_true", help="print the raw steps as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.orders)
        return 0
    steps = measure(args.services, args.orders)
    print(json.dumps(steps, indent=1) if args.json else report(steps, args.services))
    return 0


if __name__ == "__main__":
    sys.exit(main())

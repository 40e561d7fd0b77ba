"""Child-process entry: `python -m bench.worker TASK CONFIG.json OUT.json`.

Each measure that imports the app runs in a fresh interpreter, as a fresh Lambda
container would, with its stdout (the gateway's JSON log lines) sent to /dev/null.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def gateway(config: dict[str, Any]) -> dict[str, Any]:
    from bench.events import event
    from bench.gateway_time import measure
    from bench.inproc import Gateway

    services = Path(config["services_file"]).read_bytes()
    started = time.perf_counter()
    import app  # noqa: F401  (what the runtime does at a cold start)

    imported = time.perf_counter()
    # The first request of a container pays the lazy imports, the panel session, the
    # Secrets Manager client and the secret read (from loopback moto).
    gw = Gateway(services)
    gw.call(event("GET", "/orders/{order_id}", "/orders/23501", key=config["key"],
                  path_params={"order_id": "23501"}))
    first = time.perf_counter()
    gw.watch_dynamodb()
    result = measure(gw, config["key"], requests=config["requests"], repeats=config["repeats"],
                     ids=config["ids"], post_requests=config["post_requests"])
    result["import_ms"] = round((imported - started) * 1000, 1)
    result["first_request_ms"] = round((first - imported) * 1000, 1)
    return result


def memory(config: dict[str, Any]) -> dict[str, Any]:
    from bench.memory import measure

    return measure(config["services_file"], config["key"], config["requests"])


def fanout(config: dict[str, Any]) -> dict[str, Any]:
    from bench.fanout import measure

    return measure(config["key"], config["ids"], config["repeats"])


def profile(config: dict[str, Any]) -> dict[str, Any]:
    from bench.inproc import Gateway
    from bench.profile import measure

    gw = Gateway(Path(config["services_file"]).read_bytes())
    gw.watch_dynamodb()
    return measure(gw, config["key"], config["out_dir"], config["requests"], config["ids"])


def sync(config: dict[str, Any]) -> dict[str, Any]:
    from bench.sync import measure

    return measure(config["key"], config["sync_orders"], config["sync_repeats"], config["port"])


TASKS = {"gateway": gateway, "memory": memory, "fanout": fanout, "profile": profile, "sync": sync}


def main(argv: list[str]) -> int:
    task, config_path, out_path = argv
    config = json.loads(Path(config_path).read_text())
    Path(out_path).write_text(json.dumps(TASKS[task](config)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

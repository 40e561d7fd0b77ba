"""The markdown table of a run: each figure next to its floor, the ratio, the target."""

from __future__ import annotations

import os
import platform
from typing import Any

from bench.stats import ratio


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def _mark(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"Run {result['date']} on {m['nproc']} × {m['cpu']}, Python {m['python']}, {m['system']}"
             f" (`{result['command']}`).", "",
             "| # | figure | measured | floor | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    add = lines.append
    cold = result.get("cold")
    if cold:
        add(f"| 1 | cold start: fresh `python -c \"import app\"` (wall, median of {cold['runs']}) "
            f"| {cold['app_ms']} ms | {cold['floor_ms']} ms `import chalice, boto3, requests` "
            f"| {cold['ratio']}x | ≤ 1.3x | {_mark(cold['met'])} |")
    pkg = result.get("package") or {}
    shipped = pkg.get("cold_as_shipped")
    if shipped:
        raw = shipped["shipped"]
        add(f"| 1 | cold start as Lambda runs it: the unpacked zip, no .pyc (none written) "
            f"| {raw['app_ms']} ms | {raw['floor_ms']} ms the same floor from the zip "
            f"| {ratio(raw['app_ms'], raw['floor_ms'])}x | ≤ 1.3x | {_mark(raw['app_ms'] <= 1.3 * raw['floor_ms'])} |")
    gateway = result.get("gateway")
    if gateway:
        for row in gateway["rows"][1:]:
            target = f"p50 < {row['target_ms']:g} ms" if row["target_ms"] else "–"
            add(f"| 2 | gateway time {row['name']}: p50 / p99 (CPU) | {row['p50_ms']:.3f} / {row['p99_ms']:.3f} "
                f"({row['cpu_ms']:.3f}) ms "
                f"| {row['floor_p50_ms']:.3f} ms `GET /health` | {row['ratio']}x | {target} | {_mark(row['met'])} |")
        dynamo = gateway["dynamodb"]
        add(f"| 2 | DynamoDB requests per new order / per replay | {dynamo['per_new_order']:g} / "
            f"{dynamo['per_replay']:g} | – | – | ≤ 3 (ideally 2) / 1 "
            f"| {_mark(dynamo['per_new_order'] <= 3 and dynamo['per_replay'] <= 1)} |")
    fan = result.get("fanout")
    if fan:
        add(f"| 3 | fan-out: `GET /orders?ids=` {fan['ids']} ids, panel {fan['delay_ms']:g} ms a call (wall) "
            f"| {fan['batch_ms']} ms ({fan['panel_calls']:g} calls) | {fan['single_ms']} ms one call "
            f"| {fan['ratio']}x | ≤ 1.5x (sequential: {fan['panel_calls']:g}x) | {_mark(fan['ratio'] <= 1.5)} |")
    mem = result.get("memory")
    if mem:
        add(f"| 4 | peak RSS: import, {mem['catalogue_services']}-service catalogue, {mem['requests']} "
            f"mixed requests | {mem['steps']['peak_mb']} MB | {mem['floor_peak_mb']} MB "
            f"`import chalice, boto3, requests` | {mem['ratio']}x | ≤ 100 MB | {_mark(mem['met'])} |")
    hooks = result.get("webhooks")
    if hooks:
        add(f"| 6 | webhook delivery: event published → at a loopback receiver, p50 / p99 ({hooks['events']} events, "
            f"one at a time) | {hooks['p50_ms']} / {hooks['p99_ms']} ms | {hooks['floor_p50_ms']} ms the POST alone "
            f"| {ratio(hooks['p50_ms'], hooks['floor_p50_ms'])}x | – |  |")
        add(f"| 6 | webhook deliveries per second, one worker, receiver answering at once ({hooks['burst']} queued) "
            f"| {hooks['per_second']} /s | – | – | – |  |")
    if pkg and "error" not in pkg:
        top = ", ".join(f"{p['name']} {p['zip_kb']} KB" for p in pkg["largest"][:4])
        add(f"| 5 | deployment zip (`chalice package`) | {pkg['zip_mb']} MB | {pkg['deps_mb']} MB "
            f"runtime dependencies alone | {pkg['ratio']}x | ≤ 5 MB | {_mark(pkg['met'])} |")
        lines += ["", f"Largest in the zip (compressed): {top}; the gateway's own files: {pkg['own_mb']} MB."]
        if shipped:
            raw, pre = shipped["shipped"], shipped["precompiled"]
            lines.append(f"As shipped, a first `POST /orders` imports `app, boto3, requests, jsonschema` in "
                         f"{raw['first_post_ms']} ms; with the zip's modules precompiled (`compileall`, "
                         f"unchecked-hash .pyc) {pre['first_post_ms']} ms, and `import app` {pre['app_ms']} ms "
                         f"(floor {pre['floor_ms']} ms).")
    elif pkg:
        lines += ["", f"Package size not measured: {pkg['error']}"]
    if cold or gateway or mem:
        lines.append("")
    if cold:
        lines.append(f"Cold start detail: bare interpreter {cold['interpreter_ms']} ms; `import app` alone "
                     f"{cold['import_only_ms']} ms; heavy modules loaded by it: "
                     f"{', '.join(cold['heavy_modules_at_import']) or 'none'}.")
    if mem:
        st = mem["steps"]
        lines.append(f"Memory detail (peak so far): interpreter {st['interpreter_mb']} MB, after `import app` "
                     f"{st['import_app_mb']} MB, with requests, boto3 and the AWS clients {st['clients_mb']} MB, "
                     f"catalogue cached {st['catalogue_cached_mb']} MB, after the mix {st['peak_mb']} MB.")
    if gateway:
        posts = [row for row in gateway["rows"] if row["name"].startswith("POST")]
        lines.append("`POST /orders`: of the gateway's own time, botocore's work (validating, serialising, "
                     "signing, parsing) takes " + " and ".join(
                         f"{row['botocore_ms']:.2f} ms ({row['name'].split(';')[0].split('(')[1]})" for row in posts)
                     + " a request (means).")
        first = gateway["first_call_ms"]
        lines.append(f"First requests of a fresh container (wall): `GET /orders/{{id}}` "
                     f"{gateway['first_request_ms']} ms (lazy imports, panel session, AWS clients, secret read "
                     f"from loopback moto); then the first `GET /services/{{id}}` "
                     f"{first.get('GET /services/{id}')} ms (catalogue fetch and parse), the first "
                     f"`POST /orders` {first.get('POST /orders (new; DynamoDB wire time out)')} ms "
                     "(schemas, validators, two DynamoDB calls to moto).")
    return "\n".join(lines)

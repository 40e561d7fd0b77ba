"""The benchmark (`make bench`) still runs: a tiny-sized run of it, as a newcomer would start it.

Timings are not asserted here (they depend on the machine and on what runs beside
the suite); what is asserted is that every figure is produced next to its floor,
and the counts that do not depend on the machine: DynamoDB requests per order, the
panel calls of a 1000-id read, and an import of the app that loads nothing heavy.
The package size needs PyPI (chalice downloads the Lambda wheels), so it is left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Settings the shared fixtures put into this process must not reach the bench.
_NOT_INHERITED = ("AWS_", "SMM_", "GATEWAY_", "CATALOGUE_", "SECRET_MAX_AGE_")


def test_a_quick_bench_run_reports_every_figure_against_its_floor(tmp_path: Path) -> None:
    # given a shell like a newcomer's
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    out = tmp_path / "latest.json"

    # when
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "cold,gateway,fanout,memory",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)

    # then it printed the table and wrote the JSON
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| # | figure | measured | floor | ratio | target | met |" in done.stdout
    result = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().strip() in done.stdout
    # every figure has a measured value and its floor
    cold = result["cold"]
    assert cold["app_ms"] > 0 and cold["floor_ms"] > 0 and cold["ratio"] is not None
    rows = {row["name"]: row for row in result["gateway"]["rows"]}
    assert rows["floor: GET /health (constant)"]["p50_ms"] > 0
    for name in ("GET /orders/{id}", "GET /services?type=Poll", "GET /orders?ids= (1000 ids)",
                 "POST /orders (new; DynamoDB wire time out)", "POST /orders (replay; DynamoDB wire time out)"):
        assert rows[name]["p50_ms"] > 0 and rows[name]["p99_ms"] >= rows[name]["p50_ms"] and rows[name]["ratio"] > 0
    fanout, memory = result["fanout"], result["memory"]
    assert fanout["batch_ms"] > 0 and fanout["single_ms"] > 0
    assert memory["steps"]["peak_mb"] > 0 and memory["floor_peak_mb"] > 0
    # and the counts that do not depend on the machine
    assert result["gateway"]["dynamodb"]["per_new_order"] == 2
    assert result["gateway"]["dynamodb"]["per_replay"] == 1
    assert fanout["panel_calls"] == 10
    assert cold["heavy_modules_at_import"] == []


def test_importing_the_app_loads_no_aws_http_or_schema_library() -> None:
    # A cold start imports app.py: boto3, requests and jsonschema wait for the first request.
    probe = "import app, sys, json; print(json.dumps(sorted(set(sys.modules) & {%s})))" % ", ".join(
        repr(m) for m in ("boto3", "botocore", "requests", "urllib3", "jsonschema", "yaml", "concurrent.futures"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**env, "AWS_DEFAULT_REGION": "us-east-1"},
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_quick_bench_run_measures_webhook_delivery(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    out = tmp_path / "latest.json"

    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "webhooks", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr[-3000:]
    hooks = json.loads(out.read_text())["webhooks"]
    assert 0 < hooks["p50_ms"] <= hooks["p99_ms"] and hooks["floor_p50_ms"] > 0
    assert hooks["per_second"] > 0 and hooks["burst"] == 10
    assert "webhook deliveries per second" in done.stdout

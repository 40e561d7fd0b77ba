"""Figure 1: a cold start's import of the Lambda entry point, against its dependencies' own.

Each sample is the wall time of a fresh interpreter, from spawn to exit, with the
environment of a deployed function: `python -c "import app"` against
`python -c "import chalice, boto3, requests"`. The two alternate so that any drift of
the machine touches both. A third probe lists which heavy modules `import app`
loaded: none should be (boto3, requests, jsonschema and YAML wait for first use).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.harness import ROOT, lambda_environ
from bench.stats import median, ratio

APP = "import app"
FLOOR = "import chalice, boto3, requests"
HEAVY = ("boto3", "botocore", "requests", "urllib3", "jsonschema", "yaml", "concurrent.futures")
_PEAK = ("import sys\nfor l in open('/proc/self/status'):\n"
         "    l.startswith('VmHWM:') and sys.stdout.write(l.split()[1])")


def _spawn(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def _probe(code: str, env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]


def measure(runs: int) -> dict[str, Any]:
    env = lambda_environ()
    for code in (APP, FLOOR):  # compile .pyc files once, as a deployed package ships them warm
        _spawn(code, env)
    apps, floors, bare = [], [], []
    for _ in range(runs):
        apps.append(_spawn(APP, env))
        floors.append(_spawn(FLOOR, env))
        bare.append(_spawn("pass", env))
    loaded = json.loads(_probe(f"{APP}; import sys, json; print(json.dumps([m for m in {HEAVY!r} "
                               "if m in sys.modules]))", env))
    import_only = median([float(_probe("import time; t = time.perf_counter(); import app; "
                                       "print((time.perf_counter() - t) * 1000)", env)) for _ in range(runs)])
    peaks = {name: int(_probe(f"{code}\n{_PEAK}", env)) / 1024 for name, code in (("app", APP), ("floor", FLOOR))}
    app_ms, floor_ms = median(apps), median(floors)
    return {"app_ms": round(app_ms, 1), "floor_ms": round(floor_ms, 1), "ratio": ratio(app_ms, floor_ms),
            "interpreter_ms": round(median(bare), 1), "import_only_ms": round(import_only, 1),
            "heavy_modules_at_import": loaded, "runs": runs, "target_ratio": 1.3,
            "met": app_ms <= 1.3 * floor_ms,
            "peak_mb_after_import": round(peaks["app"], 1), "floor_peak_mb": round(peaks["floor"], 1)}

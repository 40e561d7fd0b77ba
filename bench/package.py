"""Figure 5: the size of the deployment zip that `chalice package` builds.

The project's files are copied to a scratch directory first, so chalice's cache of
built packages (`.chalice/deployments/`) never grows in the working tree. Building
downloads the runtime wheels with pip (its cache makes repeats fast). The floor is
the part of the zip that is the dependencies' own: what remains is the gateway.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import ROOT, lambda_environ
from bench.stats import median

TARGET_MB = 5.0
_OWN = ("app.py", "chalicelib", "chalice")  # the project's files and chalice's runtime part
MB = 1024 * 1024


def build(into: Path) -> Path:
    project = into / "project"
    (project / ".chalice").mkdir(parents=True)
    shutil.copy2(ROOT / "app.py", project)
    shutil.copy2(ROOT / "requirements.txt", project)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for item in (ROOT / ".chalice").glob("*.json"):
        shutil.copy2(item, project / ".chalice")
    out = into / "out"
    chalice = Path(sys.executable).with_name("chalice")
    done = subprocess.run([str(chalice), "--project-dir", str(project), "package", str(out)],
                          env=lambda_environ(), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chalice package failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return out / "deployment.zip"


def _owner(name: str) -> str:
    """The distribution a zip entry belongs to: its top-level folder, without dist-info."""
    top = name.split("/")[0]
    for suffix in (".dist-info", ".data"):
        if top.endswith(suffix):
            top = top[: -len(suffix)].split("-")[0]
    return top.removesuffix(".py").lower()


def measure(cold_runs: int = 0) -> dict[str, Any]:
    shipped: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="smm-bench-package-") as scratch:
        path = build(Path(scratch))
        size = path.stat().st_size
        with zipfile.ZipFile(path) as zipped:
            entries = zipped.infolist()
            if cold_runs:
                zipped.extractall(Path(scratch) / "task")
                shipped = cold_as_shipped(Path(scratch) / "task", cold_runs)
    compressed: Counter[str] = Counter()
    unpacked: Counter[str] = Counter()
    for entry in entries:
        owner = _owner(entry.filename)
        compressed[owner] += entry.compress_size
        unpacked[owner] += entry.file_size
    own = sum(v for k, v in compressed.items() if k in _OWN)
    deps = sum(compressed.values()) - own
    return {"zip_mb": round(size / MB, 2), "unpacked_mb": round(sum(unpacked.values()) / MB, 2),
            "deps_mb": round(deps / MB, 2), "own_mb": round(own / MB, 3), "target_mb": TARGET_MB,
            "ratio": round(size / deps, 2) if deps else None, "met": size / MB <= TARGET_MB,
            "largest": [{"name": k, "zip_kb": round(v / 1024), "unpacked_kb": round(unpacked[k] / 1024)}
                        for k, v in compressed.most_common(8)], "cold_as_shipped": shipped}


def cold_as_shipped(task_root: Path, runs: int) -> dict[str, Any]:
    """Figure 1 again, from the unpacked zip as Lambda runs it: no .pyc in it, none written.

    Lambda's /var/task is read-only and the zip holds only sources, so every cold start
    compiles app.py, chalicelib, chalice, requests... (boto3 comes with the runtime,
    compiled). Measured as shipped, then with the zip's modules precompiled."""
    env = lambda_environ({"PYTHONDONTWRITEBYTECODE": "1", "LAMBDA_TASK_ROOT": str(task_root)})
    probes = {"app": "import app", "floor": "import chalice, boto3, requests",
              "first_post": "import app, boto3, requests, jsonschema"}  # what a first POST /orders imports
    found: dict[str, Any] = {}
    for mode in ("shipped", "precompiled"):
        if mode == "precompiled":
            compileall.compile_dir(str(task_root), quiet=1, workers=1,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        samples: dict[str, list[float]] = {name: [] for name in probes}
        for _ in range(runs):
            for name, code in probes.items():
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], cwd=task_root, env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                samples[name].append((time.perf_counter() - started) * 1000)
        found[mode] = {f"{name}_ms": round(median(times), 1) for name, times in samples.items()}
    return found

"""The parent's side: embedded AWS, the secrets, and child processes with a Lambda-like environment.

moto and the sandbox run here; every measured gateway runs in a child, so neither
the emulator's memory nor its CPU is counted against the gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLER_KEY = "sgw_bench_caller_key_0123456789abcdef"
PANEL_KEY = "bench-panel-key"
TABLE = "smm-gateway-bench"
# Settings of the shell that must not reach a child: it gets only what a deployed function has.
_DROPPED = ("AWS_", "SMM_", "GATEWAY_", "CATALOGUE_", "IDEMPOTENCY_", "MAX_ORDER_", "DAILY_SPEND_", "BALANCE_LOW_",
            "SECRET_MAX_AGE_", "LAMBDA_", "PYTHONPATH")


def lambda_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment of a deployed function (plus PATH and friends of this shell)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    return {**base, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "smm-gateway-dev", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "LAMBDA_TASK_ROOT": str(ROOT),
            "GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": "smm-gateway/bench", **(extra or {})}


class Harness:
    """moto on loopback with the table and one secret per panel the children talk to."""

    def __init__(self, workdir: Path) -> None:
        import logging

        from local.aws import EmbeddedAws

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        self.workdir = workdir
        self.aws = EmbeddedAws().start()
        self._dynamodb = self.aws.client("dynamodb")
        self._secrets = self.aws.client("secretsmanager")

    def close(self) -> None:
        self.aws.stop()

    def environ(self, panel_url: str, name: str, panel_key: str = PANEL_KEY) -> dict[str, str]:
        """A child's environment, its secret pointing at `panel_url`."""
        from chalicelib.callers import record_for
        from local.aws import create_table, write_secret

        # Emptied for each child: moto copies a whole table on every transaction (to roll back)
        # and keeps much of each copy until a reset, so a table that grows slows moto down and
        # swells this process by hundreds of MB over a run.
        self.aws.reset()
        secret_id = f"smm-gateway/bench-{name}"
        caller = record_for("bench", CALLER_KEY)
        write_secret(self._secrets, panel_url, panel_key,
                     [{"name": caller["name"], "salt": caller["salt"], "hash": caller["hash"]}], secret_id=secret_id)
        create_table(self._dynamodb, TABLE)
        # The secret and catalogue are read once per run: their refresh is I/O, not gateway work.
        return lambda_environ({**self.aws.environ(), "GATEWAY_SECRET_ID": secret_id,
                               "SECRET_MAX_AGE_SECONDS": "3600", "CATALOGUE_TTL_SECONDS": "3600"})

    def run(self, task: str, config: dict[str, Any], environ: dict[str, str], timeout: float = 600) -> Any:
        """Run `bench.worker TASK` in a fresh interpreter and return what it wrote."""
        config_file = self.workdir / f"{task}-config.json"
        out_file = self.workdir / f"{task}-out.json"
        config_file.write_text(json.dumps({**config, "key": CALLER_KEY}))
        done = subprocess.run([sys.executable, "-m", "bench.worker", task, str(config_file), str(out_file)],
                              cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench.worker {task} failed:\n{done.stderr[-3000:]}")
        return json.loads(out_file.read_text())


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="smm-bench-")

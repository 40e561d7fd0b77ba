"""The README's curl session, run as written against a local run (`python -m local.run`).

The run's panel is a sandbox outside it, with a clock the test moves: where the
README waits for the sandbox (`sleep 30`), the test moves the clock 30 s instead of
waiting. Everything else is the README's text, run by bash and curl.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from local.run import DEV_KEY
from sandbox import SandboxPanel
from tests.test_local_run import CALLER_KEY, LocalRun, local_run, panel  # noqa: F401 (fixtures)

README = Path(__file__).resolve().parent.parent / "README.md"
SETUP = f'K="X-API-Key: {DEV_KEY}"; G=http://127.0.0.1:8000'  # what a fresh `make run` serves
STEP_WITHIN = 30.0  # seconds for bash, curl and one gateway call: only a hang should fail


def readme_session() -> list[str]:
    """The commands of the README's sh block that starts with SETUP, one a line
    (continuation lines joined; comments and blank lines left out)."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    session = [block for block in blocks if block.startswith(SETUP)]
    assert len(session) == 1, f"README.md must have one sh block starting with {SETUP!r}"
    lines = session[0].replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def readme_order_answer() -> dict[str, Any]:
    """The answer the README shows for the first order."""
    shown = re.findall(r"```json\n(.*?)```", README.read_text(), re.DOTALL)
    answers = [json.loads(text) for text in shown if '"zap-run-4711"' in text]
    assert len(answers) == 1, "README.md must show the answer to the order with key zap-run-4711"
    return answers[0]


def curl(run: LocalRun, command: str) -> tuple[int, Any]:
    """Run one README command in bash, with K and G pointing at `run`; its status and JSON."""
    setup = f"K={shlex.quote('X-API-Key: ' + CALLER_KEY)}; G={run.base}"
    done = subprocess.run(["bash", "-c", f"{setup}\n{command} -sS -w '\\n%{{http_code}}'"],
                          capture_output=True, text=True, timeout=STEP_WITHIN, check=False)
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                    reason="the README's examples are curl commands in sh")
def test_every_readme_curl_example_succeeds_top_to_bottom_on_a_fresh_run(
        local_run: Callable[..., LocalRun], panel: SandboxPanel) -> None:
    setup, *steps = readme_session()
    assert setup == SETUP
    run = local_run(SMM_API_URL=panel.url, SMM_API_KEY="other-key")
    run.wait_ready()

    for step in steps:
        if step.startswith("sleep "):
            panel.advance(float(step.split()[1]))
            continue
        assert step.startswith("curl "), step
        status, answer = curl(run, step)

        assert 200 <= status < 300, (step, status, answer)
        assert isinstance(answer, dict), (step, answer)
        for listed in ("orders", "refills"):  # batch answers: every item succeeded
            assert [item for item in answer.get(listed, []) if "error" in item] == [], (step, answer)
        if "zap-run-4711" in step:
            shown = readme_order_answer()
            # `created_at` is the time of the run; everything else, currency included, is as shown.
            ignored = {"created_at"}
            assert {k: v for k, v in answer.items() if k not in ignored} == \
                {k: v for k, v in shown.items() if k not in ignored}, step
            assert answer.keys() == shown.keys()

    assert run.interrupt() == 0

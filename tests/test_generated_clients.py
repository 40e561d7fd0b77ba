"""Clients generated from the gateway's own OpenAPI document work, as a new user's would.

The document is imported by tools no one here wrote, so these tests run two of them,
pinned, over the whole of `chalicelib/openapi.json` (routes added later are covered
without touching this file):

- `openapi-python-client` (requirements-dev.txt) generates with no warning; every
  module of the package imports; `mypy --strict` passes on all of it; and the client
  places an order as JSON, replays it, reads it, reads a batch, lists the ledger,
  refills and cancels against a local run (`python -m local.run`) over real HTTP.
- `openapi-typescript` + `openapi-fetch` (tests/ts_client/package-lock.json) give a
  client that `tsc --strict` accepts and that places and reads an order under node.

The node part skips, saying why, only where node is missing. Its packages are
installed once per lock file into .venv/ts-client/ and reused by later runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sandbox import SandboxPanel
from tests.test_local_run import CALLER_KEY, LocalRun, local_run, panel  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "chalicelib" / "openapi.json"
TS_CLIENT = Path(__file__).resolve().parent / "ts_client"
TOOL_WITHIN = 300  # seconds for one generator, mypy, npm or tsc run: only a hang should fail
PACKAGE = "smm_gateway_client"
LINK = "https://www.instagram.com/generated_client/"


def run(command: list[str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TOOL_WITHIN, **kw)


# -- openapi-python-client ------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The generated package's parent directory, and what the generator printed."""
    out = tmp_path_factory.mktemp("python-client")
    # The generator runs `ruff` (pinned beside it) from PATH to tidy what it wrote.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(SPEC),
                "--meta", "none", "--output-path", str(out / PACKAGE)], cwd=out, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    yield out, done.stdout + done.stderr
    sys.path.remove(str(out))
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


# One worker generates the package once for all of its tests (make test runs --dist loadgroup).
PYTHON_CLIENT = pytest.mark.xdist_group("python-client")


@PYTHON_CLIENT
def test_openapi_python_client_generates_without_a_warning(python_client: tuple[Path, str]) -> None:
    _, printed = python_client
    assert "warning" not in printed.lower(), printed
    assert "error" not in printed.lower(), printed


@PYTHON_CLIENT
def test_every_module_of_the_generated_python_client_imports(python_client: tuple[Path, str]) -> None:
    package = importlib.import_module(PACKAGE)
    failed = {}
    modules = list(pkgutil.walk_packages(package.__path__, PACKAGE + "."))
    for module in modules:
        try:
            importlib.import_module(module.name)
        except Exception as exc:  # each failure named, not only the first
            failed[module.name] = f"{type(exc).__name__}: {exc}"
    assert failed == {}
    assert len(modules) > 20  # the api/ and models/ of every route, not an empty shell


@PYTHON_CLIENT
def test_mypy_strict_passes_on_the_whole_generated_python_client(python_client: tuple[Path, str]) -> None:
    out, _ = python_client
    done = run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file", os.devnull,
                PACKAGE], cwd=out)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


@PYTHON_CLIENT
def test_the_generated_python_client_places_replays_reads_lists_refills_and_cancels(
        python_client: tuple[Path, str], local_run: Callable[..., LocalRun], panel: SandboxPanel) -> None:
    from smm_gateway_client import AuthenticatedClient
    from smm_gateway_client.api.orders import (
        cancel_order, create_order, get_order, list_orders)
    from smm_gateway_client.api.refills import create_refill
    from smm_gateway_client.models import (
        CancelResult, ItemError, LedgerOrder, Order, OrderRequest, OrderStatus, RefillCreated)

    gateway = local_run(SMM_API_URL=panel.url, SMM_API_KEY="other-key")
    gateway.wait_ready()
    sent: list[Any] = []  # every request the client sends, as httpx built it
    client = AuthenticatedClient(base_url=gateway.base, token=CALLER_KEY, prefix="",
                                 auth_header_name="X-API-Key", timeout=30.0,
                                 httpx_args={"event_hooks": {"request": [sent.append]}})

    # given an order placed as JSON, and the same request again
    body = OrderRequest(service=1, link=LINK, quantity=100)
    placed = create_order.sync_detailed(client=client, body=body, idempotency_key="generated-client-1")
    replayed = create_order.sync_detailed(client=client, body=body, idempotency_key="generated-client-1")
    assert placed.status_code == 201 and isinstance(placed.parsed, Order), placed.content
    assert sent[0].headers["content-type"] == "application/json"
    assert json.loads(sent[0].content) == {"service": 1, "link": LINK, "quantity": 100}
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    order_id = placed.parsed.id
    assert replayed.parsed.id == order_id

    # it reads back, alone and in a batch, and is in the ledger
    status = get_order.sync(id=order_id, client=client)
    assert isinstance(status, OrderStatus) and status.id == order_id
    batch = list_orders.sync(client=client, ids=f"{order_id},999999")
    assert [type(item) for item in batch.orders] == [OrderStatus, ItemError]
    assert batch.orders[1].error.code == "order_not_found"
    ledger = list_orders.sync(client=client, limit=10)
    assert [(type(item), item.id, item.idempotency_key) for item in ledger.orders] == \
        [(LedgerOrder, order_id, "generated-client-1")]

    # a finished order is refilled; a running one is canceled
    finished = create_order.sync(client=client, body=OrderRequest(service=1, link=LINK + "done/", quantity=100),
                                 idempotency_key="generated-client-2")
    panel.advance(3600)
    refill = create_refill.sync(id=finished.id, client=client)
    assert isinstance(refill, RefillCreated) and refill.order == finished.id
    running = create_order.sync(client=client, body=OrderRequest(service=1, link=LINK + "run/", quantity=100),
                                idempotency_key="generated-client-3")
    canceled = cancel_order.sync(id=running.id, client=client)
    assert isinstance(canceled, CancelResult) and (canceled.id, canceled.cancel_requested) == (running.id, True)

    assert gateway.interrupt() == 0


# -- openapi-typescript + openapi-fetch ----------------------------------------------------------


def node_modules() -> Path:
    """tests/ts_client's packages, installed once per lock file (`npm ci`) and kept."""
    lock = (TS_CLIENT / "package-lock.json").read_bytes()
    home = ROOT / ".venv" / "ts-client" / hashlib.sha256(lock).hexdigest()[:16]
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as guard:  # one installer at a time (pytest -n 2)
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (home / "installed").exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(TS_CLIENT / name, home / name)
            done = run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            (home / "installed").touch()
    return home / "node_modules"


@pytest.fixture(scope="module")
def typescript_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled TypeScript client: types generated from the spec, checked by `tsc --strict`."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm is not installed: the TypeScript client check needs them (CI has node 20)")
    installed = node_modules()
    work = tmp_path_factory.mktemp("ts-client")
    for name in ("package.json", "tsconfig.json", "client.ts"):
        shutil.copy2(TS_CLIENT / name, work / name)
    (work / "node_modules").symlink_to(installed, target_is_directory=True)
    generated = run([str(installed / ".bin" / "openapi-typescript"), str(SPEC), "-o", "schema.d.ts"], cwd=work)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "warn" not in (generated.stdout + generated.stderr).lower(), generated.stdout + generated.stderr
    checked = run([str(installed / ".bin" / "tsc"), "--strict", "-p", "."], cwd=work)
    assert checked.returncode == 0, checked.stdout[-5000:] + checked.stderr[-2000:]
    return work


@pytest.mark.xdist_group("typescript-client")
def test_the_typescript_client_type_checks_strictly_and_places_and_reads_an_order(
        typescript_client: Path, local_run: Callable[..., LocalRun], panel: SandboxPanel) -> None:
    gateway = local_run(SMM_API_URL=panel.url, SMM_API_KEY="other-key")
    gateway.wait_ready()

    done = run(["node", "out/client.js", gateway.base, CALLER_KEY, "ts-client-1"], cwd=typescript_client)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 201
    assert answer["read"]["id"] == answer["placed"]["id"]
    assert answer["placed"]["idempotency_key"] == "ts-client-1"
    assert answer["state"] == "pending"
    assert gateway.interrupt() == 0

"""Prepare the served API descriptions from openapi.yaml, at build time.

The function then needs no YAML parser and no conversion at run time (cold starts
stay small); it only reads these files, on the first request for one of them:

    openapi.yaml ─┬─► chalicelib/openapi.json  (the schemas requests are validated with)
                  ├─► chalicelib/openapi.yaml  (the source text, served as YAML)
                  └─► chalicelib/swagger.json  (Swagger 2.0, for Power Automate)

`make spec` runs it; `--check` exits 1 when a generated file is stale, and
tests/test_contract.py runs that check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from swagger2 import convert  # scripts/ is on the path when run as a script

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "openapi.yaml"
TARGETS = {name: ROOT / "chalicelib" / name for name in ("openapi.json", "openapi.yaml", "swagger.json")}
# chalicelib/spec_docs.py swaps this block for the deployment's URL; keep it in sync.
LOCAL_SERVERS = "\nservers:\n  - url: http://127.0.0.1:8000\n"


def render() -> dict[str, str]:
    text = SOURCE.read_text(encoding="utf-8")
    if text.count(LOCAL_SERVERS) != 1:
        raise SystemExit(f"{SOURCE.name} must hold the servers block {LOCAL_SERVERS!r} exactly once")
    spec = yaml.safe_load(text)
    return {
        "openapi.json": _json(spec),
        "openapi.yaml": text,
        "swagger.json": _json(convert(spec)),
    }


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        target = TARGETS[name]
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(str(target.relative_to(ROOT)))
        if not check:
            target.write_text(text, encoding="utf-8")
    if check and stale:
        print(f"stale: {', '.join(stale)}; run `make spec`", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

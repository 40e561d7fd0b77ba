"""Write openapi.yaml as chalicelib/openapi.json, so the function needs no YAML parser.

`make spec` runs it; tests/test_spec_build.py fails when the two disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE, TARGET = ROOT / "openapi.yaml", ROOT / "chalicelib" / "openapi.json"


def render() -> str:
    return json.dumps(yaml.safe_load(SOURCE.read_text()), separators=(",", ":"), sort_keys=False) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)

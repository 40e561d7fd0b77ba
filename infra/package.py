"""`make package`: the CloudFormation (SAM) template and code zip for one stage, linted.

`chalice package` writes the function, its role and the REST API from app.py and
.chalice/config.json; infra/resources.json is merged over it (chalice applies only
one `--merge-template`, so everything else lives in that one file): the table, the
secret, the log group, the role's policy on those three, and the function's
environment pointing at them. The SAM transform is then applied offline by AWS's own
aws-sam-translator (`cfn.json`, what CloudFormation will actually create), and
cfn-lint checks both forms; any error or warning fails the build. No AWS credentials
are needed: chalice only wants a region name, and the template refers to the real
one through `${AWS::Region}`.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MERGE_TEMPLATE = Path("infra") / "resources.json"
STAGES = ("dev", "prod")
RUNTIME = (3, 11)  # .chalice/config.json's runtime follows the Python that packages
# cfn-lint rules switched off, each with its reason. Empty: the template is clean.
LINT_IGNORES: dict[str, str] = {}


class PackageError(Exception):
    """chalice package or cfn-lint failed; the message holds their output."""


def tool(name: str) -> str:
    """A console script of the interpreter's own environment (the venv's chalice, cfn-lint)."""
    return str(Path(sys.executable).with_name(name))


def package(stage: str, out_dir: Path, project_dir: Path = ROOT, *, check: bool = True) -> Path:
    """Write `sam.json` and `deployment.zip` for `stage` into `out_dir`, then lint the
    template unless `check` is false; returns the template's path."""
    if stage not in STAGES:
        raise PackageError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    # Packaging never calls AWS: drop every AWS_* setting (credentials, profile, endpoint)
    # so that stays true, keeping only a region name for chalice.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    _run([tool("chalice"), "--project-dir", str(project_dir), "package", "--stage", stage,
          "--merge-template", str(project_dir / MERGE_TEMPLATE), str(out_dir)], env)
    template = out_dir / "sam.json"
    precompile(out_dir / "deployment.zip")
    transformed = transform(template, stage)
    if check:
        lint(template, transformed)
    return template


def transform(template: Path, stage: str) -> Path:
    """Write `cfn.json` beside `template`: the SAM template with the transform applied,
    as CloudFormation applies it on deploy (the RestApi, its Deployment and Stage, the
    function), so the lint sees what AWS will create. Returns its path."""
    document = json.loads(template.read_text())
    for resource in document["Resources"].values():  # as `aws cloudformation package` uploads it
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifact-bucket/deployment.zip"
    target = template.with_name("cfn.json")
    target.write_text(json.dumps(translate(document, {"Stage": stage}), indent=2, default=str))
    return target


def translate(document: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The SAM transform by AWS's aws-sam-translator, offline.

    What samtranslator's own `transform()` does, with a region given rather than looked
    up in the environment (packaging never reads AWS settings); the template names no
    managed policy, so there is nothing to look up in IAM either."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

    document = json.loads(json.dumps(document))
    parameters = dict(parameters)
    to_py27_compatible_template(document, parameters)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    result = translator.translate(document, parameter_values=parameters, get_managed_policy_map=lambda: {})
    return undo_mark_unicode_str_in_template(result)  # type: ignore[no-any-return]


def precompile(code: Path) -> bool:
    """Add byte code to the zip: Lambda's /var/task is read-only, so without it every
    cold start compiles requests, chalice and the gateway again (bench: a first
    POST /orders imports in ~290 ms instead of ~475 ms). Unchecked-hash .pyc files are
    used as they are, whatever the zip's timestamps. Only when this Python is the
    runtime's: another version's byte code would be ignored."""
    if sys.version_info[:2] != RUNTIME:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        with zipfile.ZipFile(code) as packed:
            packed.extractall(scratch)
        compileall.compile_dir(scratch, quiet=2, workers=1,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        files = sorted(p for p in Path(scratch).rglob("*") if p.is_file())
        with zipfile.ZipFile(code, "w", zipfile.ZIP_DEFLATED) as packed:
            for path in files:
                packed.write(path, path.relative_to(scratch).as_posix())
    return True


def lint(*templates: Path) -> str:
    """cfn-lint's report; raises PackageError on any error or warning (its exit code)."""
    ignores = [f"--ignore-checks={rule}" for rule in LINT_IGNORES]
    return _run([tool("cfn-lint"), *ignores, "--", *map(str, templates)], dict(os.environ))


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(f"{Path(command[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, default="dev")
    parser.add_argument("--out", type=Path, help="output folder (default: build/<stage>)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "build" / args.stage
    try:
        template = package(args.stage, out)
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 1
    code = out / "deployment.zip"
    print(f"{template} and its transform {template.with_name('cfn.json').name} (cfn-lint: clean)\n{code} ({code.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

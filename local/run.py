"""`make run`: the gateway on 127.0.0.1 with embedded AWS and, by default, the sandbox panel.

Everything runs in this one process (moto's server, the sandbox, `chalice local`
without autoreload), so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chalicelib.callers import record_for
from local.aws import SECRET_ID, TABLE, EmbeddedAws, apply_environ, create_table, write_secret

ROOT = Path(__file__).resolve().parent.parent
DEV_KEY = "sgw_local_dev_key_change_me"


def main() -> int:
    port = int(os.environ.get("PORT") or 8000)
    caller_key = os.environ.get("GATEWAY_API_KEY") or DEV_KEY
    aws = EmbeddedAws().start()
    sandbox = None
    try:
        apply_environ({**aws.environ(), "GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": SECRET_ID})
        if os.environ.get("SMM_API_URL"):
            api_url, api_key = os.environ["SMM_API_URL"], os.environ.get("SMM_API_KEY", "")
        else:
            from sandbox import DEFAULT_KEY, SandboxPanel

            sandbox = SandboxPanel()
            api_url, api_key = sandbox.start(), os.environ.get("SMM_API_KEY") or DEFAULT_KEY
        create_table(aws.client("dynamodb"))
        write_secret(aws.client("secretsmanager"), api_url, api_key, [record_for("local", caller_key)])
        print(banner(port, caller_key, api_url if sandbox is None else f"sandbox panel at {api_url}"),
              flush=True)
        from chalice.cli import cli

        os.chdir(ROOT)
        return cli.main(args=["local", "--host", "127.0.0.1", "--port", str(port), "--no-autoreload",
                              "--stage", "dev"], obj={}, prog_name="chalice", standalone_mode=False) or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if sandbox is not None:
            sandbox.stop()
        aws.stop()


def banner(port: int, caller_key: str, upstream: str) -> str:
    base = f"http://127.0.0.1:{port}"
    return "\n".join([
        "smm-gateway local run",
        f"  gateway:    {base}",
        f"  upstream:   {upstream}",
        "  AWS:        embedded (moto): DynamoDB and Secrets Manager, in memory",
        f"  caller key: {caller_key}",
        "",
        f'  curl -H "X-API-Key: {caller_key}" {base}/balance',
        "",
        "Ctrl-C stops everything.",
    ])


if __name__ == "__main__":
    sys.exit(main())

"""`make run`: the gateway on 127.0.0.1 with embedded AWS and, by default, the sandbox panel.

Everything runs in this one process (moto's server, the sandbox, `chalice local`
without autoreload), so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from pathlib import Path

from chalicelib.callers import record_for
from local.aws import SECRET_ID, TABLE, EmbeddedAws, apply_environ, create_table, write_secret

ROOT = Path(__file__).resolve().parent.parent
DEV_KEY = "sgw_local_dev_key_change_me"
STAGE = "dev"


def main() -> int:
    port = int(os.environ.get("PORT") or 8000)
    caller_key = os.environ.get("GATEWAY_API_KEY") or DEV_KEY
    # Checked before anything starts, so a busy port is one clear line rather than a
    # banner for a gateway that never serves, followed by a traceback.
    if not port_is_free(port):
        print(f"port {port} on 127.0.0.1 is in use; set PORT to another one", file=sys.stderr)
        return 1
    quiet_embedded_services()
    aws = EmbeddedAws().start()
    sandbox = None
    try:
        apply_environ({**aws.environ(), "GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": SECRET_ID})
        if os.environ.get("SMM_API_URL"):
            api_url, api_key = os.environ["SMM_API_URL"], os.environ.get("SMM_API_KEY", "")
        else:
            from sandbox import DEFAULT_KEY, SandboxPanel

            # The sandbox must accept the key the secret holds, or SMM_API_KEY alone
            # would turn every call into upstream_auth_failed.
            api_key = os.environ.get("SMM_API_KEY") or DEFAULT_KEY
            sandbox = SandboxPanel(api_key=api_key)
            api_url = sandbox.start()
        create_table(aws.client("dynamodb"))
        write_secret(aws.client("secretsmanager"), api_url, api_key, [record_for("local", caller_key)])
        print(banner(port, caller_key, api_url if sandbox is None else f"sandbox panel at {api_url}",
                     aws.endpoint),
              flush=True)
        return serve(port)
    except KeyboardInterrupt:
        return 0
    finally:
        if sandbox is not None:
            sandbox.stop()
        aws.stop()


def serve(port: int) -> int:
    """`chalice local` (threaded, no autoreload) in this thread until Ctrl-C."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_routes
    from chalice.local import LocalDevServer, ThreadedHTTPServer

    class Server(ThreadedHTTPServer):
        # socketserver listens with a backlog of 5: a burst of 16 requests (one
        # no-code run fanning out) then has connections reset by the kernel.
        request_queue_size = socket.SOMAXCONN

    os.chdir(ROOT)
    # `chalice local` writes .chalice/config.json's environment_variables over
    # os.environ, so a value there would silently beat SMM_TIMEOUT_SECONDS and the
    # rest of the environment this run promises to honour. Here the config only
    # fills in what the environment leaves unset: the factory gets a scratch mapping
    # to overwrite instead of os.environ.
    factory = CLIFactory(str(ROOT), environ={})
    config = factory.create_config_obj(chalice_stage_name=STAGE)
    for name, value in config.environment_variables.items():
        os.environ.setdefault(name, value)
    validate_routes(config.chalice_app.routes)  # as `chalice local`: only what would deploy
    try:
        server = LocalDevServer(config.chalice_app, config, "127.0.0.1", port, server_cls=Server)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"port {port} on 127.0.0.1 was taken meanwhile; set PORT to another one", file=sys.stderr)
        return 1
    try:
        server.serve_forever()
    finally:
        server.server.server_close()
    return 0


def port_is_free(port: int) -> bool:
    # SO_REUSEADDR as http.server binds, so connections in TIME_WAIT do not count.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def quiet_embedded_services() -> None:
    """Keep the output to the gateway's own lines.

    moto's server (werkzeug) would give itself a handler and log every AWS call the
    gateway makes. urllib3 warns when more requests than boto3's pool of 10 run at
    once, as the threaded server allows; the extra connection is simply not kept.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").addFilter(
        lambda record: not record.getMessage().startswith("Connection pool is full"))


def banner(port: int, caller_key: str, upstream: str, aws_endpoint: str) -> str:
    base = f"http://127.0.0.1:{port}"
    ops_env = (f"AWS_ENDPOINT_URL={aws_endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
               "AWS_DEFAULT_REGION=us-east-1")
    return "\n".join([
        "smm-gateway local run",
        f"  gateway:    {base}",
        f"  upstream:   {upstream}",
        f"  AWS:        embedded (moto) at {aws_endpoint}: DynamoDB and Secrets Manager, in memory",
        f"  caller key: {caller_key}",
        "",
        f'  curl -H "X-API-Key: {caller_key}" {base}/balance',
        f"  {ops_env} .venv/bin/python -m ops callers list",
        "",
        "Ctrl-C stops everything.",
    ])


if __name__ == "__main__":
    sys.exit(main())

"""`python -m sandbox`: the sandbox panel in the foreground, for `make run` and poking by hand."""

from __future__ import annotations

import argparse
import signal
import threading
from decimal import Decimal

from sandbox.panel import DEFAULT_KEY, SandboxPanel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key the panel accepts")
    parser.add_argument("--balance", type=Decimal, default=Decimal("1000"))
    parser.add_argument("--services", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    panel = SandboxPanel(api_key=args.key, balance=args.balance, services=args.services,
                         seed=args.seed)
    # SIGTERM (from `make run` or a supervisor) should stop it as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(panel.start(host=args.host, port=args.port), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        panel.stop()


if __name__ == "__main__":
    main()

"""``loglog receiver``: the command line of :mod:`stack.receiver`, kept apart so that
``loglog --help`` builds on the logger alone (the server needs the ``serve`` extra:
Starlette, uvicorn, prometheus_client)."""

from __future__ import annotations

import sys
from typing import Any

from alerts import RUNBOOKS


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "receiver", help="the Alertmanager webhook receiver (alerts to log + file)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--out", default="alerts.jsonl", help="JSON-lines file of notifications")
    parser.add_argument(
        "--runbooks", default=str(RUNBOOKS), help="directory served at /runbooks/<Alert>.md"
    )
    parser.set_defaults(run=_run, extra="serve")


def _run(args: Any) -> int:
    import loglog
    from httpkit.background import wait_for_signal

    from .receiver import AlertReceiver

    loglog.configure()
    try:
        receiver = AlertReceiver(args.host, args.port, args.out, runbooks=args.runbooks)
    except OSError as exc:
        sys.stderr.write(
            f"loglog receiver: cannot listen on {args.host}:{args.port}: {exc.strerror}\n"
        )
        return 2
    receiver.start()
    loglog.get_logger("alerts").info(
        "receiver listening", url=f"{receiver.url}/alerts", out=str(args.out)
    )
    wait_for_signal()
    receiver.stop()
    loglog.shutdown()
    return 0

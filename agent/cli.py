"""``loglog agent``: the node agent on its own port (default 9400, like DCGM exporter)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import loglog


def parse_duration(text: str) -> float:
    """ "1s", "500ms", "2m" or a plain number of seconds."""
    value = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("agent", help="node agent: GPU (NVML), host and process metrics")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--interval", default="1s", help="sampling interval (e.g. 1s, 500ms)")
    parser.add_argument(
        "--hang-timeout", default="5s", help="an NVML call stuck this long marks the GPU stale"
    )
    parser.add_argument(
        "--watch-pid", type=int, action="append", default=[], help="a process to watch (repeatable)"
    )
    parser.add_argument(
        "--watch-name",
        action="append",
        default=[],
        help="watch processes whose command line contains this",
    )
    parser.set_defaults(run=run, extra="agent")


def run(args: argparse.Namespace) -> int:
    try:
        interval = parse_duration(args.interval)
        hang_timeout = parse_duration(args.hang_timeout)
    except ValueError:
        sys.stderr.write("loglog agent: --interval and --hang-timeout take e.g. 1s, 500ms, 2m\n")
        return 2
    if not 1 <= args.port <= 65535:
        sys.stderr.write(f"loglog agent: --port {args.port} is not a TCP port: use 1–65535\n")
        return 2
    if any(pid < 1 for pid in args.watch_pid):
        sys.stderr.write("loglog agent: --watch-pid takes a process id ≥ 1\n")
        return 2
    if any(not name.strip() for name in args.watch_name):
        # Every command line contains "": the agent would export every process on the
        # host (their names and command-line matches), which nobody asks for on purpose.
        sys.stderr.write(
            "loglog agent: --watch-name '' would match every process on the host: give part "
            "of the command line to watch, e.g. --watch-name 'loglog serve'\n"
        )
        return 2
    # Written as positive ranges so that NaN (which compares False) is refused too.
    if not 0.05 <= interval <= 3600 or not interval <= hang_timeout <= 86_400:
        sys.stderr.write(
            "loglog agent: --interval must be 50ms–1h and --hang-timeout ≥ --interval\n"
        )
        return 2
    # Here, not at the top: `loglog` builds its parser without the 'agent' extra.
    from prometheus_client import CollectorRegistry, ProcessCollector

    from .collector import Agent
    from .server import MetricsServer

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    loglog.configure(
        registry=registry, **({} if _labels_set() else {"loki_labels": {"service": "agent"}})
    )
    agent = Agent(
        interval=interval,
        hang_timeout=hang_timeout,
        watch_pids=args.watch_pid,
        watch_names=args.watch_name,
    )
    try:
        server = MetricsServer(registry, args.host, args.port)
    except (OSError, OverflowError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        sys.stderr.write(
            f"loglog agent: cannot listen on {args.host}:{args.port}: {reason}; "
            "pass --host/--port\n"
        )
        return 2
    registry.register(agent)
    agent.start()
    server.start()
    log = loglog.get_logger("agent")
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL
    log.info("agent serving", url=f"http://{host}:{server.port}/metrics", gpus=len(agent.samplers))
    from httpkit.background import wait_for_signal  # the agent extra's (uvicorn)

    wait_for_signal()
    server.stop()
    agent.stop()
    loglog.shutdown()
    return 0


def _labels_set() -> bool:
    import os

    return "LOGLOG_LOKI_LABELS" in os.environ

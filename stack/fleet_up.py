"""The fleet part of ``loglog up --workers N``: a RabbitMQ node of its own (or ``--broker``),
the jobs API, N workers and demo jobs, plus the scrape configs Prometheus needs.

The broker is Debian's ``rabbitmq-server`` run as a local process (not the system
service): node name, ports, data and logs under ``--state-dir``, the ``rabbitmq_prometheus``
plugin on, ``consumer_timeout`` set explicitly to 30 min (segments last seconds). The job
store is the local Redis (``--store``), under a key prefix of this stack's own (derived
from the state directory, or ``--store-prefix``), and the segment queue is named after the
same prefix: two stacks sharing one Redis or one ``--broker`` never see each other's jobs.
Job files are read only from ``--source-dir`` (default: the directory ``loglog up`` was
started from), passed to the API as absolute paths. Workers are found by Prometheus
through the API's http_sd endpoint, so ``--workers`` can change without touching the
Prometheus config.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from .processes import Process, StackError

RABBIT_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
DEMO_JOBS = ("synthetic://320x240@10?seconds=60", "synthetic://320x240@10?seconds=30")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``loglog up`` gains for the fleet."""
    parser.add_argument("--workers", type=int, default=0,
                        help="also run a job fleet: broker, jobs API, N workers")  # fmt: skip
    parser.add_argument("--broker", help="use this AMQP URL instead of starting a RabbitMQ node")
    parser.add_argument("--store", default="redis://127.0.0.1:6379/0", help="Redis for job state")
    parser.add_argument(
        "--store-prefix", help="Redis key prefix of this stack's jobs (default: from --state-dir)"
    )
    parser.add_argument("--source-dir", action="append", dest="source_dirs", metavar="DIR",
                        help="a directory job files may be read from (repeat; default: the "
                             "directory loglog up is started from)")  # fmt: skip
    parser.add_argument("--jobs-api-port", type=int, default=8100)
    parser.add_argument("--amqp-port", type=int, default=5682)
    parser.add_argument("--rabbitmq-prometheus-port", type=int, default=15702)
    parser.add_argument("--rabbitmq-dist-port", type=int, default=25682,
                        help="Erlang distribution port of the broker node")  # fmt: skip
    parser.add_argument("--worker-metrics-port", type=int, default=9500,
                        help="worker i serves /metrics on this port + i")  # fmt: skip


def ports(args: Any) -> dict[str, int]:
    """Ports the fleet will listen on (checked free before anything starts)."""
    if not getattr(args, "workers", 0):
        return {}
    out = {"jobs api": args.jobs_api_port}
    out |= {f"worker {i} metrics": args.worker_metrics_port + i for i in range(args.workers)}
    if not args.broker:
        out |= {"amqp": args.amqp_port, "rabbitmq prometheus": args.rabbitmq_prometheus_port,
                "rabbitmq dist": args.rabbitmq_dist_port}  # fmt: skip
    return out


def preflight(args: Any) -> None:
    if args.workers < 0 or args.workers > 64:
        raise StackError(f"--workers {args.workers}: use 0–64 (one per GPU on this machine)")
    if args.workers and not args.broker and not RABBIT_SERVER.is_file():
        raise StackError(
            "missing Debian package: rabbitmq-server. Install it with "
            "`sudo apt-get install rabbitmq-server`, run `make up` (which does), or pass "
            "--broker amqp://… to use a running broker."
        )


def broker_url(args: Any, host: str) -> str:
    return args.broker or f"amqp://guest:guest@{host}:{args.amqp_port}//"


def store_prefix(args: Any, state: Path) -> str:
    """This stack's key prefix: ``--store-prefix``, else one derived from the state dir."""
    prefix = getattr(args, "store_prefix", None)
    if prefix:
        return str(prefix)
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:10]
    return f"loglog:up:{digest}"


def source_dirs(args: Any) -> list[str]:
    """The absolute directories job files may come from."""
    return [os.path.abspath(d) for d in (getattr(args, "source_dirs", None) or ["."])]


def store_line(args: Any, state: Path) -> str:
    """What ``loglog up`` prints about where jobs live and what they may read."""
    return (
        f"{args.store} under prefix {store_prefix(args, state)}; job files only from "
        f"{', '.join(source_dirs(args))} (--source-dir)"
    )


def scrape_configs(args: Any, host: str) -> list[dict[str, Any]]:
    """Prometheus jobs: the API, the workers (http_sd from the API), RabbitMQ itself."""
    if not args.workers:
        return []
    api = f"{host}:{args.jobs_api_port}"
    configs: list[dict[str, Any]] = [
        {"job_name": "fleet-api", "static_configs": [{"targets": [api]}]},
        {"job_name": "fleet-worker",
         "http_sd_configs": [{"url": f"http://{api}/v1/sd/workers", "refresh_interval": "5s"}]},
    ]  # fmt: skip
    if not args.broker:
        target = f"{host}:{args.rabbitmq_prometheus_port}"
        configs.append({"job_name": "rabbitmq", "static_configs": [{"targets": [target]}]})
    return configs


def components(args: Any, host: str, state: Path) -> list[tuple[Process, str, float]]:
    """(process, where, start-up timeout) for the broker, the API and each worker."""
    if not args.workers:
        return []
    from .components import child_env

    py, out = sys.executable, []
    if not args.broker:
        out.append(_rabbit(args, host, state))
    broker = broker_url(args, host)
    prefix = store_prefix(args, state)
    common = ["--broker", broker, "--store", args.store, "--prefix", prefix,
              "--queue", f"loglog.segments.{prefix}",
              "--results-dir", str(state / "results")]  # fmt: skip
    sources = [arg for d in source_dirs(args) for arg in ("--source-dir", d)]
    api = f"http://{host}:{args.jobs_api_port}"
    env = child_env()
    out.append((
        Process("jobs api", [py, "-m", "stack.cli", "jobs", "serve", *common, *sources,
                             "--host", host, "--port", str(args.jobs_api_port)],
                f"{api}/healthz", state / "logs" / "jobs-api.log", env, cwd=state),
        f"{api}/v1/jobs  (http_sd: {api}/v1/sd/workers)", 60.0,
    ))  # fmt: skip
    for index in range(args.workers):
        name = f"worker-{index}"
        metrics_port = args.worker_metrics_port + index
        out.append((
            Process(name, [py, "-m", "stack.cli", "worker", *common, "--name", name,
                           "--metrics-host", host, "--metrics-port", str(metrics_port)],
                    f"http://{host}:{metrics_port}/metrics", state / "logs" / f"{name}.log", env,
                    cwd=state),
            f"http://{host}:{metrics_port}/metrics", 180.0,
        ))  # fmt: skip
    return out


def submit_demo_jobs(args: Any, host: str) -> list[str]:
    """Submit the demo jobs; returns their ids."""
    from fleet.cli import auth_headers

    ids = []
    for source in DEMO_JOBS:
        body = json.dumps({"source": source}).encode()
        request = urllib.request.Request(
            f"http://{host}:{args.jobs_api_port}/v1/jobs", data=body, method="POST",
            # The API inherits LOGLOG_TOKEN_FILE from this process: send what it expects.
            headers={"content-type": "application/json", **auth_headers(None)},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            ids.append(json.load(response)["id"])
    return ids


def _rabbit(args: Any, host: str, state: Path) -> tuple[Process, str, float]:
    root = state / "rabbitmq"
    root.mkdir(parents=True, exist_ok=True)
    (root / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = {host}:{args.amqp_port}\n"
        f"prometheus.tcp.port = {args.rabbitmq_prometheus_port}\n"
        f"prometheus.tcp.ip = {host}\n"
        "consumer_timeout = 1800000\n"
    )
    (root / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
    env = {
        "RABBITMQ_NODENAME": f"loglog{args.amqp_port}@localhost",
        "RABBITMQ_NODE_PORT": str(args.amqp_port),
        "RABBITMQ_DIST_PORT": str(args.rabbitmq_dist_port),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(root / "pid"),
    }
    prom = f"http://{host}:{args.rabbitmq_prometheus_port}/metrics"
    process = Process(
        "rabbitmq", [str(RABBIT_SERVER)], prom, state / "logs" / "rabbitmq.log", env, cwd=state
    )
    return process, f"amqp://{host}:{args.amqp_port}  (metrics {prom})", 120.0

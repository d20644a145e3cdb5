"""Benchmark: the agent's own cost — CPU at a 1 s interval, and /metrics latency.

Not a test. With FakeNvml at 8 GPUs (no GPU here), in one run:
- CPU use of the agent process over a quiet period (no scrapes), as % of one core;
- /metrics latency p50/p99 over 200 scrapes;
against the same numbers for a bare prometheus_client HTTP exporter with an empty registry
in a process of its own (the floor any Python exporter pays).
Targets: CPU < 1 % of one core; /metrics p99 < 50 ms.

Usage: ``python -m bench.agent_bench [--quick]``; writes ``bench/results/agent.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def child(kind: str, quiet: float, port_file: str) -> None:
    """Run an exporter, report its CPU over ``quiet`` seconds, then serve scrapes."""
    from prometheus_client import CollectorRegistry, start_http_server

    import loglog

    loglog.configure(console=None, registry=None)
    registry = CollectorRegistry()
    if kind == "agent":
        from agent.collector import Agent
        from agent.server import MetricsServer
        from agent.testing import FakeGpu, FakeNvml

        agent = Agent(interval=1.0, nvml_module=FakeNvml([FakeGpu() for _ in range(8)]))
        registry.register(agent)
        agent.start()
        server = MetricsServer(registry, "127.0.0.1", 0)
        server.start()
        port = server.port
    else:
        http, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
        port = http.server_port
    time.sleep(2.0)  # settle: imports and first samples are not steady state
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    time.sleep(quiet)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    Path(port_file).write_text(
        json.dumps({"port": port, "cpu_percent": 100 * cpu / (time.monotonic() - started)})
    )
    time.sleep(3600)


def measure(kind: str, quiet: float, scrapes: int) -> dict[str, Any]:
    port_file = Path(tempfile.mkdtemp()) / "port.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.agent_bench", "--child", kind, str(quiet), str(port_file)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + quiet + 60
        while not port_file.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} exporter did not start")
            time.sleep(0.2)
        info = json.loads(port_file.read_text())
        url = f"http://127.0.0.1:{info['port']}/metrics"
        latencies = []
        size = 0
        for _ in range(scrapes):
            started = time.perf_counter()
            size = len(urllib.request.urlopen(url, timeout=10).read())
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        return {
            "cpu_percent_of_one_core": info["cpu_percent"],
            "scrape_p50_ms": latencies[len(latencies) // 2] * 1000,
            "scrape_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "exposition_bytes": size,
        }
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], float(args.child[1]), args.child[2])
        return 0
    quiet = 5.0 if args.quick else 30.0
    scrapes = 50 if args.quick else 200
    rows = {
        "loglog agent, 8 GPUs (FakeNvml), 1 s interval": measure("agent", quiet, scrapes),
        "bare prometheus_client exporter (floor)": measure("floor", quiet, scrapes),
    }
    print("| exporter | CPU % of one core | /metrics p50 ms | /metrics p99 ms | exposition bytes |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['cpu_percent_of_one_core']:.2f} | {row['scrape_p50_ms']:.2f} | "
            f"{row['scrape_p99_ms']:.2f} | {row['exposition_bytes']:,} |"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "rows": rows}
    (RESULTS / "agent.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

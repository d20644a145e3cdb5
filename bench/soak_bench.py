"""Soak benchmark: does the server's memory come back after overload?

Not a test. A ``loglog serve`` child is driven through cycles of overload and idle:
each overload phase sends ``POST /v1/infer`` open loop at ``--overload`` × the calibrated
capacity (the README's 640×480 JPEG) while ``--streams`` synthetic 640×480 streams run;
each idle phase stops everything and waits. RSS (/proc) is read fresh, at the end of
every overload, and at the end of every idle phase. The first cycle is the warm-up: its
idle RSS is the reference, and every later idle point should be within 10 % of it.

Usage: ``python -m bench.soak_bench [--minutes 30] [--cycle 60] [--env K=V …]``; writes
``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench._server import Server
from inference.tools.loadgen import _Connections, open_loop, request_image

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def overload(server: Server, rps: float, seconds: float, streams: int) -> dict[str, Any]:
    """Open-loop requests at ``rps`` and ``streams`` synthetic streams for ``seconds``."""
    ids = []
    for index in range(streams):
        ids.append(
            server.post("/v1/streams", {"source": "synthetic://640x480@30", "id": f"soak-{index}"})[
                "id"
            ]
        )
    body, content_type = request_image("jpeg")

    async def main() -> dict[str, Any]:
        connections = _Connections("127.0.0.1", server.port)
        try:
            run = await open_loop(
                lambda: connections.post("/v1/infer", body, content_type), rps, seconds, timeout=40
            )
        finally:
            connections.close()
        return run.summary(1000)

    try:
        summary = asyncio.run(main())
    finally:
        for stream_id in ids:
            server.delete(f"/v1/streams/{stream_id}")
    return {"ok": summary["statuses"].get("2xx", 0), "errors": summary["errors"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="total soak time")
    parser.add_argument("--cycle", type=float, default=60.0, help="seconds: overload + idle")
    parser.add_argument("--overload", type=float, default=1.5, help="× calibrated capacity")
    parser.add_argument("--streams", type=int, default=4, help="synthetic streams in overload")
    parser.add_argument("--env", action="append", default=[], help="K=V for the server")
    parser.add_argument(
        "--trace-python",
        type=int,
        default=-1,
        metavar="FRAMES",
        help="trace the server's Python allocations (slower; 0: glibc's arenas only) and "
        "write the top sites at every idle point to bench/results/soak-python-CYCLE.txt",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    RESULTS.mkdir(exist_ok=True)
    traced = RESULTS / "soak-python.txt"
    if args.trace_python >= 0:
        env["LOGLOG_BENCH_TRACEMALLOC"] = str(args.trace_python)
        env["LOGLOG_BENCH_TRACEMALLOC_OUT"] = str(traced)
    server = Server(RESULTS / "soak.log", env=env)
    points: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        capacity = server.capacity()
        fresh = server.rss_bytes()
        print(f"capacity {capacity:.1f} items/s; fresh RSS {fresh / MIB:.0f} MiB; env {env}")
        print(
            "| cycle | t min | ok | errors | RSS overload MiB | RSS idle MiB | ÷ ref | ÷ fresh "
            "| idle: heap / arenas / anon / file MiB |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        half = args.cycle / 2
        reference = None
        cycle = 0
        # By the wall clock: an overload phase outlasts its nominal length while it waits
        # for its last answers (a 30-minute run of nominal 60 s cycles took 48 minutes).
        while cycle < 2 or time.monotonic() - started < args.minutes * 60:
            load = overload(server, capacity * args.overload, half * 0.8, args.streams)
            busy = server.rss_bytes()
            time.sleep(half * 1.2)  # idle: nothing sent, no streams
            idle = server.rss_bytes()
            reference = reference or idle
            point = {
                "cycle": cycle, "minutes": round((time.monotonic() - started) / 60, 1),
                **load, "rss_busy": busy, "rss_idle": idle, "ratio": idle / reference,
                "rss_idle_by_mapping": server.rss_breakdown(),
            }  # fmt: skip
            if args.trace_python >= 0 and server.python_memory(traced):
                traced.rename(RESULTS / f"soak-python-{cycle}.txt")
            points.append(point)
            print(
                f"| {cycle}{' (warm-up)' if cycle == 0 else ''} | {point['minutes']} | "
                f"{load['ok']} | {load['errors']} | {busy / MIB:.0f} | {idle / MIB:.0f} | "
                f"{point['ratio']:.3f} | {idle / fresh:.2f} | "
                + " / ".join(f"{v / MIB:.0f}" for v in point["rss_idle_by_mapping"].values())
                + " |",
                flush=True,
            )
            _write(env, fresh, points)  # after every cycle: an interrupted run keeps its data
            cycle += 1
    finally:
        server.stop()
    later = [p["ratio"] for p in points[1:]]
    verdict = max(later) <= 1.10 if later else False
    within = "within" if verdict else "NOT within"
    print(f"worst idle ÷ reference after warm-up: {max(later):.3f} ({within} 10 %)")


def _write(env: dict[str, str], fresh: int, points: list[dict[str, Any]]) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (RESULTS / "soak.json").write_text(
        json.dumps({"when": stamp, "env": env, "fresh_rss": fresh, "points": points}, indent=2)
    )


if __name__ == "__main__":
    main()

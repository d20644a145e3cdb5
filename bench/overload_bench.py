"""Benchmark: goodput under overload — what users get when more comes in than the server
can serve, and how fast it is itself again afterwards.

Not a test. In one run, on the default model, with the README's loadgen picture (640×480
noise, JPEG 290 KiB), for each scenario — HTTP only, then HTTP plus ``--streams``
synthetic streams (``--stream-source``, the demo's 640×480@15 by default):

1. The anchor — model-only capacity (the engine alone, same model and threads, at the
   batch size the server batches to), timed in this process while the server is idle:
   before every HTTP-only step (its capacity), and before the streams start; the streams'
   steps use the median of the repeat's idle anchors. HTTP capacity is that less the
   streams' frames/s (measured for 3 s before any HTTP load: they go first).
2. Open loop (``loglog loadgen --rps``' engine, latency from each request's scheduled send
   time) at each ``--factors`` × the HTTP capacity for ``--seconds``: goodput (2xx within
   the SLO per second of the schedule) ÷ HTTP capacity, 2xx p50/p99, time-outs, refusals
   (429/503) and their latency, the streams' fps against their baseline; meanwhile
   ``GET /metrics``, ``/healthz``, ``/readyz`` and ``/v1/profile`` in turn every 0.25 s:
   the slowest answer and how many took over 1 s or failed (what a Prometheus scrape sees).
3. Recovery: ``--recovery-wait`` seconds after an overload step (factor > 1) ends, a 0.5×
   probe for ``--probe-seconds``: refusals, time-outs, 2xx p99.

``--server-root PATH`` serves another checkout's code (e.g. ``git archive`` of main) with
this benchmark's client, for before → after in one run. The machine is shared: compare
ratios, not rates, across runs.

Usage: ``python -m bench.overload_bench [--seconds 30] [--factors 0.5,1,2,5] [--streams 3]
[--repeats 3] [--label after] [--server-root PATH]``; writes
``bench/results/overload-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._server import Server
from bench.http_bench import Anchor
from inference.tools.loadclient import Connections, ControlClient
from inference.tools.loadgen import open_loop, request_image

RESULTS = Path(__file__).resolve().parent / "results"
PROBED = ("/metrics", "/healthz", "/readyz", "/v1/profile")


async def _probe(port: int, stop: asyncio.Event) -> dict[str, Any]:
    """The observability endpoints in turn every 0.25 s: slowest answer, and how many took
    over 1 s or failed."""
    connections = Connections("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    seen: dict[str, list[float]] = {path: [] for path in PROBED}
    failed = 0
    index = 0
    try:
        while not stop.is_set():
            path = PROBED[index % len(PROBED)]
            index += 1
            started = loop.time()
            try:
                status = await asyncio.wait_for(connections.get(path), 10)
                if status != 200:
                    failed += 1
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                failed += 1
            seen[path].append(loop.time() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        connections.close()
    every = [latency for values in seen.values() for latency in values]
    return {
        "probes": len(every),
        "probe_max_ms": round(max(every, default=0.0) * 1000, 1),
        "probe_p99_ms": round(float(np.percentile(every, 99)) * 1000, 1) if every else None,
        "probes_over_1s_or_failed": failed + sum(latency > 1.0 for latency in every),
        "probe_max_ms_by_path": {
            path: round(max(values, default=0.0) * 1000, 1) for path, values in seen.items()
        },
    }


def stream_fps(url: str) -> float:
    """The server's own count of frames/s over its streams (``GET /v1/streams``)."""
    client = ControlClient(url, timeout=10)
    try:
        status, answer = client.request("GET", "/v1/streams")
    finally:
        client.close()
    return sum(s["fps"] for s in json.loads(answer)) if status == 200 else 0.0


async def _sample_fps(url: str, stop: asyncio.Event) -> list[float]:
    samples: list[float] = []
    while not stop.is_set():
        with contextlib.suppress(OSError, ValueError):
            samples.append(await asyncio.to_thread(stream_fps, url))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return samples


def load(server: Server, rate: float, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    """Open loop at ``rate`` for ``seconds``, with the probes and the fps sampler."""
    body, content_type = request_image("jpeg")

    async def main() -> dict[str, Any]:
        connections = Connections("127.0.0.1", server.port)
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe(server.port, stop))
        fps = asyncio.create_task(_sample_fps(server.url, stop))
        try:
            run = await open_loop(
                lambda: connections.post("/v1/infer", body, content_type),
                rate,
                seconds,
                timeout=args.client_timeout,
                slo=args.slo_ms / 1000,
            )
        finally:
            stop.set()
            probes, samples = await probe, await fps
            connections.close()
        summary = run.summary(1000)
        summary.pop("latencies")
        # The first samples still see the streams' rate before the load started.
        summary["stream_fps"] = round(statistics.mean(samples[2:]), 2) if samples[2:] else None
        return {**summary, **probes}

    return asyncio.run(main())


def _row(summary: dict[str, Any], http_capacity: float) -> dict[str, Any]:
    statuses = summary["statuses"]
    return {
        "offered_rps": summary["target_rps"],
        "goodput_rps": summary["goodput_rps"],
        "goodput_ratio": round(summary["goodput_rps"] / http_capacity, 3)
        if http_capacity
        else None,
        "latency_ms_2xx": summary["latency_ms_2xx"],
        "rejected": summary["rejected"],
        "rejection_latency_ms": summary["rejection_latency_ms"],
        "timeouts": statuses.get("timeout", 0),
        "unreachable": statuses.get("unreachable", 0),
        "status_codes": summary["status_codes"],
        "late_to_send": summary["late_to_send"],
        "stream_fps": summary["stream_fps"],
        "probe_max_ms": summary["probe_max_ms"],
        "probes_over_1s_or_failed": summary["probes_over_1s_or_failed"],
        "probe_max_ms_by_path": summary["probe_max_ms_by_path"],
    }


def scenario(
    server: Server, anchor: Anchor, anchors: list[float], streams: int, args: argparse.Namespace
) -> list[dict]:
    """Every factor for one scenario; the streams are started and deleted here. ``anchors``
    collects the idle anchors of this repeat: the streams' steps use their median (the
    server is never idle during them, and one anchor can land on a neighbour's burst)."""
    rows = []
    label = "http" if not streams else f"http+{streams} streams"
    time.sleep(3.0)  # what the previous step left in the queues drains
    anchors.append(anchor.measure()[0])
    capacity_idle = statistics.median(anchors)
    baseline = 0.0
    ids = []
    for index in range(streams):
        body = {"source": args.stream_source, "id": f"ob-{index}"}
        ids.append(server.post("/v1/streams", body)["id"])
    if streams:
        time.sleep(5.0)  # warm up, then the streams' rate alone
        samples = []
        for _ in range(3):
            time.sleep(1.0)
            samples.append(stream_fps(server.url))
        baseline = statistics.mean(samples)
    try:
        for factor in args.factors:
            if not streams:
                time.sleep(1.0)  # the queues drain before the anchor
                capacity_idle = anchor.measure()[0]
                anchors.append(capacity_idle)
            http_capacity = max(1.0, capacity_idle - baseline)
            summary = load(server, round(factor * http_capacity, 1), args.seconds, args)
            row = {
                "label": args.label, "scenario": label, "factor": factor,
                "capacity": round(capacity_idle, 1), "stream_fps_baseline": round(baseline, 2),
                "http_capacity": round(http_capacity, 1), **_row(summary, http_capacity),
            }  # fmt: skip
            if factor > 1:
                time.sleep(args.recovery_wait)
                probe = load(server, round(0.5 * http_capacity, 1), args.probe_seconds, args)
                row["recovery"] = {
                    key: value
                    for key, value in _row(probe, http_capacity).items()
                    if key
                    in ("rejected", "timeouts", "latency_ms_2xx", "goodput_ratio", "stream_fps")
                }
            rows.append(row)
            _print(row)
    finally:
        for stream_id in ids:
            with contextlib.suppress(OSError):
                server.delete(f"/v1/streams/{stream_id}")
    if streams:
        time.sleep(2.0)
        after = anchor.measure()[0]
        for row in rows:  # the streams' steps had no idle anchor of their own
            row["capacity_after"] = round(after, 1)
    return rows


HEADER = (
    "| label | scenario | load | capacity/s (HTTP) | offered/s | goodput/s | ÷ HTTP capacity "
    "| 2xx p50 / p99 ms | refused | refusal p99 ms | timeouts | stream fps (baseline) "
    "| probes max ms (> 1 s) | recovery: refused, timeouts, 2xx p99 ms |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def _print(row: dict[str, Any]) -> None:
    latency = row["latency_ms_2xx"]
    refusal = row["rejection_latency_ms"]
    recovery = row.get("recovery")
    recovered = (
        f"{recovery['rejected']}, {recovery['timeouts']}, "
        f"{recovery['latency_ms_2xx'].get('p99', '—')}"
        if recovery
        else "—"
    )
    fps = (
        f"{row['stream_fps']} ({row['stream_fps_baseline']})" if row["stream_fps_baseline"] else "—"
    )
    print(
        f"| {row['label']} | {row['scenario']} | {row['factor']:g}× | {row['capacity']:.0f} "
        f"({row['http_capacity']:.0f}) | {row['offered_rps']:.0f} | {row['goodput_rps']:.1f} | "
        f"{row['goodput_ratio']:.2f} | {latency.get('p50', '—')} / {latency.get('p99', '—')} | "
        f"{row['rejected']} | {refusal.get('p99', '—')} | {row['timeouts']} | {fps} | "
        f"{row['probe_max_ms']:.0f} ({row['probes_over_1s_or_failed']}) | {recovered} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per step")
    parser.add_argument(
        "--factors",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.5, 1.0, 2.0, 5.0],
        help="open-loop rates, as multiples of the HTTP capacity",
    )
    parser.add_argument("--streams", type=int, default=3, help="for the second scenario")
    parser.add_argument(
        "--stream-source",
        default="synthetic://640x480@15",
        help="each stream's source (the demo's); their frames must fit the capacity",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recovery-wait", type=float, default=10.0)
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--slo-ms", type=float, default=1000.0, help="the latency SLO")
    parser.add_argument("--client-timeout", type=float, default=30.0)
    parser.add_argument("--label", default="after")
    parser.add_argument("--server-root", help="serve this checkout's code instead")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        server = Server(RESULTS / f"overload-{args.label}.log", root=args.server_root)
        try:
            profile = server.get("/v1/profile")
            sizes = profile["capacity_items_per_s"]
            anchor = Anchor(int(max(sizes, key=lambda size: sizes[size])))
            anchors: list[float] = []
            for streams in (0, args.streams):
                for row in scenario(server, anchor, anchors, streams, args):
                    rows.append({**row, "repeat": repeat})
        finally:
            server.stop()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = RESULTS / f"overload-{args.label}.json"
    out.write_text(json.dumps({"when": stamp, "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Benchmark: the HTTP path (``POST /v1/infer``) against the model's calibrated capacity.

Not a test. In one run, on the default model, for the README's loadgen pictures (640×480
noise, JPEG 290 KiB and PNG 900 KiB):

1. The anchor — model-only capacity (the engine alone, same model and threads, at the
   batch size the server batches to), measured in this process right before and right
   after every step while the server is idle; the step's ratio is achieved ÷ the mean of
   the two. On a machine shared with others, capacity moves by tens of percent within
   minutes, so the server's start-up calibration alone is not a fair denominator (it is
   reported too).
2. Saturation — ``--clients`` keep-alive clients sending back to back (closed loop): the
   most the HTTP path delivers; ratio to the anchor (target ≥ 0.9 with 0 errors).
3. An open-loop sweep (``loglog loadgen --rps``' engine: latency from each request's
   scheduled send time) at fractions of the anchor: achieved rps, p50/p99, errors, late
   sends, ratio to the anchor.
4. Per request: server CPU ms (from /proc) and the event loop's responsiveness — a
   ``GET /healthz`` every 100 ms during each step; its p99 grows if anything holds the loop.
5. With ``--before``, the saturation rows again with the pre-2026-11-28 decoder (``av.open``
   probing), in the same run; with ``--unpinned``, every row again with ``pin_engine: false``
   (the engine's thread not given a core of its own, inference/tuning/affinity.py); with
   ``--variant NAME:KEY=VALUE,…``, every row again with those config options; with
   ``--rounds N`` the servers take turns N times (paired runs).

The machine is shared: compare ratios, not absolute rates, across runs.

Usage: ``python -m bench.http_bench [--seconds 8] [--fractions 0.5,0.8,0.9,1.0,1.2]
[--formats jpeg,png] [--before] [--unpinned] [--variant NAME:K=V] [--rounds 1]``;
writes ``bench/results/http.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._server import Server
from inference.tools.loadclient import Connections
from inference.tools.loadgen import open_loop, request_image

RESULTS = Path(__file__).resolve().parent / "results"


async def _probe_loop(connections: Connections, stop: asyncio.Event) -> list[float]:
    """GET /healthz every 100 ms; its latencies say whether the server's loop is free."""
    seen: list[float] = []
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        try:
            await asyncio.wait_for(connections.get("/healthz"), 10)
            seen.append(loop.time() - started)
        except (OSError, ValueError, TimeoutError):
            seen.append(10.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return seen


async def _closed_loop(
    connections: Connections, body: bytes, kind: str, clients: int, seconds: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def client() -> None:
        while loop.time() < deadline:
            started = loop.time()
            try:
                status = await asyncio.wait_for(connections.post("/v1/infer", body, kind), 60)
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                key = "unreachable"
            else:
                key = f"{status // 100}xx"
                if status // 100 == 2:
                    latencies.append(loop.time() - started)
            statuses[key] = statuses.get(key, 0) + 1

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = loop.time() - started
    ok = statuses.get("2xx", 0)
    return {
        "achieved_rps": ok / elapsed,
        "errors": sum(statuses.values()) - ok,
        "statuses": statuses,
        "p50_ms": float(np.percentile(latencies, 50)) * 1000 if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) * 1000 if latencies else float("nan"),
    }


def step(server: Server, kind: str, mode: str, rate: float, seconds: float) -> dict[str, Any]:
    """One measurement: ``mode`` is ``closed`` (``rate`` clients) or ``open`` (``rate`` rps)."""
    body, content_type = request_image(kind)

    async def main() -> dict[str, Any]:
        host, port = "127.0.0.1", server.port
        load, probes = Connections(host, port), Connections(host, port)
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe_loop(probes, stop))
        cpu_before = server.cpu_seconds()
        try:
            if mode == "closed":
                row = await _closed_loop(load, body, content_type, int(rate), seconds)
            else:
                run = await open_loop(
                    lambda: load.post("/v1/infer", body, content_type), rate, seconds
                )
                summary = run.summary(1000)
                row = {
                    "achieved_rps": summary["achieved_rps"],
                    "errors": summary["errors"],
                    "statuses": summary["statuses"],
                    "p50_ms": summary["latency_ms_2xx"].get("p50", float("nan")),
                    "p99_ms": summary["latency_ms_2xx"].get("p99", float("nan")),
                    "late_to_send": summary["late_to_send"],
                    "max_in_flight_seen": summary["max_in_flight_seen"],
                    "stale_retries": load.stale_retries,
                }
        finally:
            stop.set()
            probe_latencies = await probe
            load.close()
            probes.close()
        ok = row["statuses"].get("2xx", 0)
        row["server_cpu_ms_per_request"] = (
            (server.cpu_seconds() - cpu_before) * 1000 / ok if ok else float("nan")
        )
        row["loop_probe_p99_ms"] = float(np.percentile(probe_latencies, 99)) * 1000
        return row

    row = asyncio.run(main())
    row.update({"format": kind, "mode": mode, "offered": rate})
    return row


class Anchor:
    """Model-only capacity now: the default engine alone (same model, same threads), timed
    in this process — items/s and CPU seconds per item (all of ONNX Runtime's threads)."""

    def __init__(self, batch: int) -> None:
        from inference.engines import load_engine

        self.engine, self.batch = load_engine(), batch
        info = self.engine.describe()
        rng = np.random.default_rng(0)
        self.tensor = rng.random((batch, *info.input_shape)).astype(info.input_dtype)

    def measure(self, seconds: float = 1.5) -> tuple[float, float]:
        self.engine.run(self.tensor)  # warm-up
        wall, cpu, runs = time.perf_counter(), time.process_time(), 0
        while runs < 3 or time.perf_counter() - wall < seconds:
            self.engine.run(self.tensor)
            runs += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        items = runs * self.batch
        return items / wall, cpu / items


def sweep(server: Server, args: argparse.Namespace, label: str) -> list[dict[str, Any]]:
    profile = server.get("/v1/profile")
    startup = server.capacity()
    batch = max(
        profile["capacity_items_per_s"], key=lambda size: profile["capacity_items_per_s"][size]
    )
    anchor = Anchor(int(batch))
    rows = []
    for kind in args.formats:
        step(server, kind, "closed", args.clients, 2.0)  # warm-up: threads, caches, queues
        plan = [("closed", float(args.clients))]
        if label != "before":
            plan += [("open", fraction) for fraction in args.fractions]
        for mode, rate in plan:
            time.sleep(1.0)  # let the queues drain before the anchor
            before, cpu_before = anchor.measure()
            offered = round(before * rate, 1) if mode == "open" else rate
            row = step(server, kind, mode, offered, args.seconds)
            after, cpu_after = anchor.measure()
            capacity, engine_cpu = (before + after) / 2, (cpu_before + cpu_after) / 2
            row.update({
                "decoder": label, "capacity": capacity, "anchor_before": before,
                "anchor_after": after, "startup_capacity": startup,
                "ratio": row["achieved_rps"] / capacity,
                "engine_cpu_ms_per_item": engine_cpu * 1000,
                "cpu_ratio": engine_cpu * 1000 / row["server_cpu_ms_per_request"],
            })  # fmt: skip
            rows.append(row)
            _print_row(row)
    return rows


HEADER = (
    "| decoder | format | load | anchor/s (before–after) | achieved/s | ratio | errors "
    "| p50 ms | p99 ms | late sends | server CPU ms/req | engine-alone CPU ms/item | CPU ratio "
    "| /healthz p99 ms |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _print_row(row: dict[str, Any]) -> None:
    load = (
        f"{int(row['offered'])} clients, closed loop"
        if row["mode"] == "closed"
        else f"open loop {row['offered']:.0f} rps ({row['offered'] / row['anchor_before']:.1f}×)"
    )
    print(
        f"| {row['decoder']} | {row['format']} | {load} | {row['capacity']:.1f} "
        f"({row['anchor_before']:.0f}–{row['anchor_after']:.0f}) | "
        f"{row['achieved_rps']:.1f} | {row['ratio']:.2f} | {row['errors']} | "
        f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row.get('late_to_send', '—')} | "
        f"{row['server_cpu_ms_per_request']:.1f} | {row['engine_cpu_ms_per_item']:.1f} | "
        f"{row['cpu_ratio']:.2f} | {row['loop_probe_p99_ms']:.1f} |",
        flush=True,
    )


def _variants(args: argparse.Namespace) -> dict[str, str]:
    """Config files for ``--unpinned`` and each ``--variant``, by label."""
    specs = (["unpinned:pin_engine=false"] if args.unpinned else []) + args.variant
    files = {}
    for spec in specs:
        name, _, options = spec.partition(":")
        path = RESULTS / f"http-{name}.yaml"
        path.write_text("".join(f"{item.replace('=', ': ', 1)}\n" for item in options.split(",")))
        files[name] = str(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per step")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument(
        "--fractions",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.5, 0.8, 0.9, 1.0, 1.2],
        help="open-loop rates, as fractions of the calibrated capacity",
    )
    parser.add_argument("--formats", type=lambda text: text.split(","), default=["jpeg", "png"])
    parser.add_argument("--before", action="store_true", help="also the old probing decoder")
    parser.add_argument(
        "--unpinned", action="store_true", help="also a server with pin_engine: false"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also a server with these config options (YAML values), e.g. "
        "'dynamic-malloc:malloc_trim_threshold=0,malloc_mmap_threshold=0'",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the servers this many times, alternating (paired runs on a noisy host)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    variants = {"after": None, **_variants(args)}
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    labels = list(variants) + ["before"] * args.before
    for _ in range(args.rounds):
        for label in labels:
            server = Server(
                RESULTS / f"http-{label}.log", probed=label == "before", config=variants.get(label)
            )
            try:
                rows += sweep(server, args, label)
            finally:
                server.stop()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (RESULTS / "http.json").write_text(json.dumps({"when": stamp, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

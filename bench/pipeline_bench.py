"""Benchmark: the runtime's instrumentation cost, its efficiency at saturation, its verdicts.

Not a test. In one run, on the default model (ONNX Runtime, CPU):

1. Instrumentation overhead — the same pipeline saturated with 640×480 frames, with
   instrumentation on (metrics, queue gauges, stats, monitor) and off, interleaved
   three times; the throughput ratio on ÷ off (target ≥ 0.99).
2. Pipeline efficiency at saturation — delivered items/s ÷ the model-only capacity the
   runtime calibrated (engine alone, same threads) at the max batch size (target ≥ 0.95).
3. Verdict check — three synthetic streams; each stage slowed by a drill in turn; the
   verdict must name it.

Usage: ``python -m bench.pipeline_bench [--quick]``; writes ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

RESULTS = Path(__file__).resolve().parent / "results"


def _runtime(instrumented: bool, **options: Any) -> Any:
    from inference.config import RuntimeConfig
    from inference.runtime import Runtime

    config = RuntimeConfig(
        calibration_seconds=2.0, max_batch=8, max_wait_ms=5, sampling_ratio=0.0, **options
    )
    runtime = Runtime(config=config, registry=CollectorRegistry(), instrumented=instrumented)
    runtime.start(progress=lambda message: None)
    return runtime


def saturated(instrumented: bool, seconds: float) -> dict[str, float]:
    """Items/s out of the pipeline while a feeder keeps its input queue full."""
    from inference.types import Item

    runtime = _runtime(instrumented)
    frame = (np.random.default_rng(1).random((480, 640, 3)) * 255).astype(np.uint8)
    stop = threading.Event()

    def feed() -> None:
        index = 0
        while not stop.is_set():
            runtime.pipeline.submit(Item("bench", index, image=frame), timeout=0.5)
            index += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(2.0)  # warm up: queues fill, batches reach their steady size
        infer = runtime.pipeline.meters["infer"].stats
        engine_before = infer.snapshot()
        before, started = runtime.pipeline.completed.value, time.monotonic()
        time.sleep(seconds)
        done, elapsed = runtime.pipeline.completed.value - before, time.monotonic() - started
        engine_after = infer.snapshot()
    finally:
        stop.set()
        feeder.join(5)
        capacity = runtime.calibration.best_capacity(runtime.pipeline.batcher.max_batch)
        runtime.stop()
    spent = engine_after.engine_seconds - engine_before.engine_seconds
    expected = engine_after.expected_seconds - engine_before.expected_seconds
    engine = expected / spent if instrumented and spent > 0 else float("nan")
    return {"items_per_s": done / elapsed, "capacity_per_s": capacity, "engine_efficiency": engine}


def instrumentation_cost_per_item(n: int = 20_000) -> float:
    """Seconds of instrumentation one item costs: the accounting of its four worker
    stages (in-flight entry, histogram with exemplar slot, counters, ledger), its four
    queues' depth and wait updates, its in-flight entry in the pipeline and its outcome —
    timed directly, so machine noise cannot hide it."""
    from inference.types import Item

    runtime = _runtime(True)
    pipeline = runtime.pipeline
    try:
        item = Item("bench", 0)
        stages = [
            pipeline.stages[name] for name in ("preprocess", "infer", "postprocess", "encode")
        ]
        queues = [pipeline.queues[stage.name] for stage in stages]
        inflight = pipeline.accounting.inflight
        clock = time.perf_counter
        started = clock()
        for _ in range(n):
            inflight[id(item)] = item.created
            for stage in stages:
                token, _ = stage.ledger.enter(1)
                pipeline.accounting.observe(stage, [item], token, clock(), 0.0)
            for queue in queues:
                queue._set_depth(1)
                queue._observe_wait(0.0001)
                queue._set_depth(0)
            inflight.pop(id(item), None)
            pipeline.accounting.outcome(item)
        return (clock() - started) / n
    finally:
        runtime.stop()


def verdicts() -> dict[str, str]:
    from inference.types import STAGES

    found = {}
    for stage in STAGES:
        runtime = _runtime(True, monitor_interval_s=0.25, monitor_window_s=2.0)
        try:
            for index in range(3):
                runtime.streams.add("synthetic://320x240@20", f"s{index}")
            runtime.drills.start(stage, 80 if stage == "decode" else 30, 60)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if (
                    runtime.monitor.latest is not None
                    and runtime.monitor.latest.bottleneck == stage
                ):
                    break
            found[stage] = runtime.monitor.latest.bottleneck if runtime.monitor.latest else "none"
        finally:
            runtime.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    import loglog

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    loglog.configure(console=None, registry=None)
    seconds = 4.0 if args.quick else 10.0
    runs: dict[str, list[float]] = {"on": [], "off": []}
    efficiencies: list[float] = []
    capacities: list[float] = []
    engine_runs: list[float] = []
    for _ in range(1 if args.quick else 3):
        for mode in ("on", "off"):
            result = saturated(mode == "on", seconds)
            runs[mode].append(result["items_per_s"])
            if mode == "on":
                # Each runtime calibrates itself: compare a run with its own capacity.
                capacities.append(result["capacity_per_s"])
                engine_runs.append(result["engine_efficiency"])
                efficiencies.append(result["items_per_s"] / result["capacity_per_s"])
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    capacity, efficiency = statistics.median(capacities), statistics.median(efficiencies)
    cost = instrumentation_cost_per_item()
    checked = verdicts()
    summary = {
        "instrumented_items_per_s": on,
        "bare_items_per_s": off,
        "overhead_ratio_on_over_off": on / off,
        "instrumentation_seconds_per_item": cost,
        "instrumentation_share_of_item_time": cost * on,
        "model_capacity_items_per_s": capacity,
        "pipeline_efficiency_at_saturation": efficiency,
        "pipeline_efficiency_runs": efficiencies,
        "engine_efficiency_at_saturation": statistics.median(engine_runs),
        "engine_efficiency_runs": engine_runs,
        "verdicts": checked,
        "verdicts_correct": sum(stage == found for stage, found in checked.items()),
    }
    print("| measurement | value | target |")
    print("|---|---:|---|")
    print(f"| throughput, instrumentation on (median of {len(runs['on'])}) | {on:.1f} items/s | |")
    print(f"| throughput, instrumentation off | {off:.1f} items/s | |")
    print(f"| on ÷ off (end to end; machine noise ±5 %) | {on / off:.3f} | ≥ 0.99 |")
    share = f"{cost * 1e6:.1f} µs = {cost * on:.2%} of an item's time"
    print(f"| instrumentation per item, timed directly | {share} | |")
    print(f"| model-only capacity (calibrated, batch ≤ 8; median) | {capacity:.1f} items/s | |")
    label = "pipeline efficiency at saturation (median, each run ÷ its own calibration)"
    print(f"| {label} | {efficiency:.3f} | ≥ 0.95 |")
    engine = summary["engine_efficiency_at_saturation"]
    print(
        f"| engine efficiency during those runs (model speed ÷ its calibration) | {engine:.3f} | |"
    )
    print(
        f"| verdict names the drilled stage | {summary['verdicts_correct']}/{len(checked)} | 5/5 |"
    )
    for stage, found in checked.items():
        print(f"|   drill on {stage} | verdict: {found} | {stage} |")
    RESULTS.mkdir(exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "runs": runs,
        **summary,
    }
    (RESULTS / "pipeline.json").write_text(json.dumps(report, indent=2))
    loglog.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The one-shot GPU proof: the agent on real NVML and the runtime on the torch engine (CUDA).

Not a test. One prepared run (under 8 minutes; ``--budget-s``, default 420, bounds it)
on a bare GPU machine, writing one JSON and one Markdown result:

1. **Host** — Python, torch and CUDA versions, the GPU's name, the driver.
2. **Engine** — the built-in CNN in PyTorch (fp16 on CUDA by default), its FLOPs per item
   counted from the torch module and from the ONNX graph (they must agree), the dense
   peak it is measured against.
3. **Calibration** — model-only items/s per batch size as the runtime calibrates it
   (host-visible: input copy, forward, output copy, synchronised), next to the kernels
   alone timed with CUDA events, and the model-only MFU of each.
4. **Saturation** — for each batch size, the runtime fed pre-made tensors as fast as it
   takes them (decode and resize out of the way), then 640×480 frames at the largest
   batch (preprocess on the CPU in the way), then N synthetic 640×480@30 streams:
   delivered items/s, pipeline and engine efficiency, live MFU, the bottleneck verdict.
5. **NVML** — the agent samples the GPU throughout (real ``pynvml``): which series this
   GPU exports, and min/mean/max of each during every phase.
6. **gpu-marked tests** — ``pytest -m gpu`` on the files that hold them; the summary.

Usage::

    python -m bench.gpu_proof [--out DIR] [--precision fp16|bf16|fp32] [--budget-s 420]
    python -m bench.gpu_proof --dry-run    # CPU, FakeNvml, tiny phases: checks the script

Writes ``DIR/gpu_proof.json`` and ``DIR/gpu_proof.md`` (DIR: ``bench/results``).

**On the lent GPU machine** (no network; PyTorch, nvidia-ml-py, numpy, onnx,
onnxruntime, prometheus-client, PyYAML and pytest are there) the runtime also needs PyAV
and the OpenTelemetry SDK, carried as wheels: ``bench/gpu_wheels.sh`` downloads them into
``.whl/`` (git-ignored through ``.git/info/exclude``), and the command there is::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \\
      && PYTHONPATH=/tmp/site python3 -m bench.gpu_proof --out $OUT
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from .gpu_watch import GpuWatch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: The files that hold tests marked gpu (collecting others would import the HTTP stack).
GPU_TEST_FILES = ("tests/agent/test_agent.py", "tests/inference/test_torch_engine.py")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much the run does: the GPU plan, or the dry run's tiny one."""

    batch_sizes: tuple[int, ...]
    stream_counts: tuple[int, ...]
    phase_s: float
    warmup_s: float
    calibration_s: float
    event_runs: int
    stream_source: str
    test_timeout_s: float

    @classmethod
    def for_gpu(cls) -> Plan:
        return cls((1, 8, 32, 128), (1, 4, 16), 12.0, 4.0, 0.5, 20, "synthetic://640x480@30", 180)

    @classmethod
    def dry(cls) -> Plan:
        return cls((1, 2), (1, 2), 1.5, 0.5, 0.2, 2, "synthetic://160x120@10", 120)


class Deadline:
    """The run's time budget: phases that would start past it are skipped, and said so."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.ends = clock() + seconds

    def left(self) -> float:
        return self.ends - self.clock()


# -- the runtime on the torch engine ---------------------------------------------------------


def _runtime(engine: Any, max_batch: int, plan: Plan, say: Callable[[str], None]) -> Any:
    from inference.config import RuntimeConfig
    from inference.runtime import Runtime

    config = RuntimeConfig(
        max_batch=max_batch,
        batch_policy="max",  # the batch size under test, not the calibrated best
        max_wait_ms=2.0,
        queue_capacity=max(256, 4 * max_batch),
        sampling_ratio=0.0,
        calibration_seconds=plan.calibration_s,
        monitor_interval_s=0.5,
        monitor_window_s=max(1.0, plan.phase_s - 1.0),
        workers={"preprocess": 4, "infer": 1, "postprocess": 2, "encode": 2},
        max_streams=max(plan.stream_counts),
    )
    runtime = Runtime(engine=engine, config=config, registry=CollectorRegistry())
    runtime.start(progress=say)
    return runtime


@dataclasses.dataclass
class Phase:
    """What one load phase measured."""

    name: str
    feed: str  # "tensor", "image" or "streams"
    batch: int
    streams: int
    delivered_per_s: float
    capacity_per_s: float
    pipeline_efficiency: float | None
    engine_efficiency: float | None
    mfu: float | None
    bottleneck: str | None
    reason: str
    mean_batch: float | None


def _encoded(runtime: Any) -> float:
    value = runtime.registry.get_sample_value("inference_stage_items_total", {"stage": "encode"})
    return float(value or 0.0)


def _batches(runtime: Any) -> tuple[float, float]:
    count = runtime.registry.get_sample_value("inference_batch_size_count") or 0.0
    total = runtime.registry.get_sample_value("inference_batch_size_sum") or 0.0
    return float(count), float(total)


def _measure(runtime: Any, name: str, feed: str, batch: int, streams: int, plan: Plan) -> Phase:
    """After the warm-up, count what leaves the pipeline for ``phase_s``; then the
    runtime's own verdict over (nearly) the same window."""
    time.sleep(plan.warmup_s)
    before, (count0, sum0) = _encoded(runtime), _batches(runtime)
    started = time.monotonic()
    time.sleep(plan.phase_s)
    elapsed = time.monotonic() - started
    delivered = (_encoded(runtime) - before) / elapsed
    count1, sum1 = _batches(runtime)
    report = runtime.report()
    verdict = report.get("verdict") or {}
    capacity = runtime.calibration.best_capacity(batch)
    print(
        f"  {name}: {delivered:,.0f} items/s, verdict {verdict.get('bottleneck')}", file=sys.stderr
    )
    return Phase(
        name=name,
        feed=feed,
        batch=batch,
        streams=streams,
        delivered_per_s=delivered,
        capacity_per_s=capacity,
        pipeline_efficiency=delivered / capacity if capacity else None,
        engine_efficiency=verdict.get("engine_efficiency"),
        mfu=report.get("mfu"),
        bottleneck=verdict.get("bottleneck"),
        reason=str(verdict.get("reason", "")),
        mean_batch=(sum1 - sum0) / (count1 - count0) if count1 > count0 else None,
    )


class _Flood:
    """Feeder threads that keep the runtime's first queue full with the same payload."""

    def __init__(self, runtime: Any, make: Callable[[int], Any], threads: int = 2) -> None:
        self.runtime = runtime
        self.make = make
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._feed, daemon=True) for _ in range(threads)]

    def __enter__(self) -> _Flood:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)

    def _feed(self) -> None:
        index = 0
        while not self.stop.is_set():
            future = self.runtime.submit(self.make(index), timeout=0.2)
            future.add_done_callback(lambda f: f.exception())  # refusals are expected
            index += 1


def saturate(
    engine: Any,
    plan: Plan,
    watch: GpuWatch,
    deadline: Deadline,
    say: Callable[[str], None],
    skipped: list[str],
) -> tuple[list[Phase], dict[str, Any] | None]:
    """The load phases; returns them and the calibration of the largest batch size."""
    from inference.types import Item

    info = engine.describe()
    tensor = np.random.default_rng(0).random(info.input_shape).astype(np.float32)
    frame = (np.random.default_rng(1).random((480, 640, 3)) * 255).astype(np.uint8)
    phases: list[Phase] = []
    calibration: dict[str, Any] | None = None
    per_phase = plan.warmup_s + plan.phase_s + 2.0
    largest = max(plan.batch_sizes)
    for batch in sorted(plan.batch_sizes, reverse=True):  # the largest calibrates every size
        if deadline.left() < per_phase + 30:
            skipped.append(f"tensor flood at batch {batch}: out of time")
            continue
        watch.phase = f"calibrate-b{batch}"
        runtime = _runtime(engine, batch, plan, say)
        watch.phase = f"tensor-b{batch}"
        try:
            if calibration is None:
                calibration = dict(runtime.calibration.seconds_per_batch)
            with _Flood(runtime, lambda i: Item("proof", i, tensor=tensor)):
                phases.append(_measure(runtime, watch.phase, "tensor", batch, 0, plan))
            if batch == largest:
                if deadline.left() > per_phase + 30:
                    watch.phase = f"image-b{batch}"
                    with _Flood(runtime, lambda i: Item("proof", i, image=frame), threads=4):
                        phases.append(_measure(runtime, watch.phase, "image", batch, 0, plan))
                else:
                    skipped.append("image flood: out of time")
                for count in plan.stream_counts:
                    if deadline.left() < per_phase + 30:
                        skipped.append(f"{count} streams: out of time")
                        continue
                    watch.phase = f"streams-{count}"
                    for index in range(count):
                        runtime.streams.add(plan.stream_source, f"cam{index}")
                    phases.append(_measure(runtime, watch.phase, "streams", batch, count, plan))
                    for index in range(count):  # not stop_all(): that stops ingest for good
                        runtime.streams.remove(f"cam{index}")
        finally:
            runtime.stop()
    order = {"tensor": 0, "image": 1, "streams": 2}
    return sorted(phases, key=lambda p: (order[p.feed], p.batch, p.streams)), calibration


# -- the report ------------------------------------------------------------------------------


def engine_facts(engine: Any) -> dict[str, Any]:
    """Engine, FLOPs by both counts, and the peak for its precision."""
    from hardware.peaks import peak_flops
    from inference.analysis.flops import count_flops
    from inference.engines.model import default_model_path

    info = engine.describe()
    onnx_flops = count_flops(default_model_path())
    peak = peak_flops(info.device, info.precision or "fp16") if info.device != "cpu" else None
    return {
        "kind": info.kind,
        "device": info.device,
        "precision": info.precision,
        "flops_per_item_torch": info.flops_per_item,
        "flops_per_item_onnx": onnx_flops,
        "flops_agree": info.flops_per_item == onnx_flops,
        "peak_flops": peak,
    }


def calibration_rows(
    engine: Any, seconds_per_batch: dict[int, float], facts: dict[str, Any], plan: Plan
) -> list[dict[str, Any]]:
    """Per batch size: the runtime's calibration and the kernels alone (CUDA events)."""
    flops, peak = facts["flops_per_item_torch"], facts["peak_flops"]
    shape = engine.describe().input_shape
    rows = []
    for batch, seconds in sorted(seconds_per_batch.items()):
        sample = np.random.default_rng(batch).random((batch, *shape)).astype(np.float32)
        kernel_s = engine.device_seconds(sample, runs=plan.event_runs)
        row = {
            "batch": batch,
            "seconds_per_batch": seconds,
            "items_per_s": batch / seconds,
            "kernel_seconds_per_batch": kernel_s,
            "kernel_items_per_s": batch / kernel_s,
            "mfu": batch / seconds * flops / peak if flops and peak else None,
            "kernel_mfu": batch / kernel_s * flops / peak if flops and peak else None,
        }
        rows.append(row)
    return rows


def run_gpu_tests(plan: Plan, deadline: Deadline) -> dict[str, Any]:
    """``pytest -m gpu`` on the files that hold gpu tests; the summary line and exit."""
    timeout = min(plan.test_timeout_s, max(10.0, deadline.left() - 5))
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider",
               *GPU_TEST_FILES]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        return {"returncode": None, "summary": f"timed out after {timeout:.0f}s", "tail": str(tail)}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {
        "returncode": done.returncode,
        "summary": lines[-1] if lines else done.stderr.strip()[-300:],
        "results": [line for line in lines if line.split(" ")[0] in _OUTCOMES],
        "tail": done.stdout[-3000:] + done.stderr[-1000:],
    }  # fmt: skip


_OUTCOMES = ("PASSED", "FAILED", "SKIPPED", "ERROR")


def host_facts(torch: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def saturation_verdict(phases: list[Phase]) -> dict[str, Any] | None:
    """The verdict of the phase that delivered the most items/s with images (the video
    path), else with tensors."""
    for feed in ("image", "tensor"):
        candidates = [p for p in phases if p.feed == feed]
        if candidates:
            best = max(candidates, key=lambda p: p.delivered_per_s)
            return {"phase": best.name, "bottleneck": best.bottleneck, "reason": best.reason}
    return None


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    """The whole proof; returns the result dictionary."""
    started = time.monotonic()
    deadline = Deadline(args.budget_s)
    plan = Plan.dry() if args.dry_run else Plan.for_gpu()
    import torch

    from inference.engines.torch import TorchEngine

    nvml_module: Any = None
    if args.dry_run:
        from agent.testing import FakeGpu, FakeNvml

        nvml_module = FakeNvml([FakeGpu(name="NVIDIA H200")])
    elif not torch.cuda.is_available():
        raise SystemExit(
            "gpu_proof: PyTorch sees no CUDA GPU; run it on a GPU host, or pass --dry-run"
        )
    watch = GpuWatch(nvml_module, interval=0.5 if not args.dry_run else 0.1)
    watch.start()
    skipped: list[str] = []
    try:
        say("loading the torch engine")
        device = "cpu" if args.dry_run else "cuda"
        engine = TorchEngine(None, device=device, precision=args.precision)
        facts = engine_facts(engine)
        say(f"engine: {facts}")
        watch.phase = "load"
        phases, seconds_per_batch = saturate(engine, plan, watch, deadline, say, skipped)
        watch.phase = "calibration-events"
        rows = calibration_rows(engine, seconds_per_batch or {}, facts, plan)
    finally:
        watch.phase = "idle-after"
        watch.sample()
        scrape = watch.scrape()
        watch.stop()
    say("gpu-marked tests")
    tests = run_gpu_tests(plan, deadline)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dry_run": bool(args.dry_run),
        "host": host_facts(torch),
        "engine": facts,
        "calibration": rows,
        "phases": [dataclasses.asdict(p) for p in phases],
        "verdict_at_saturation": saturation_verdict(phases),
        "nvml": {
            "module": "FakeNvml" if args.dry_run else "pynvml",
            "reason": watch.reason,
            "driver": watch.agent.driver,
            "series_seen": sorted(watch.seen),
            "scrape": scrape,
            "phases": watch.summary(),
        },
        "gpu_tests": tests,
        "skipped": skipped,
        "seconds": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, FakeNvml, tiny phases")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting phases after")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        if message:
            print(message, file=sys.stderr, flush=True)

    import loglog

    # Each phase ends by stopping its runtime with the flood's items still queued: they
    # are failed on purpose, one WARNING each. Only errors are worth reading here.
    loglog.configure(level="ERROR")
    result = run(args, say)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_proof.json").write_text(json.dumps(result, indent=2, default=str))
    from .gpu_report import markdown

    text = markdown(result)
    (args.out / "gpu_proof.md").write_text(text)
    print(text)
    return 0 if result["engine"]["flops_agree"] and result["phases"] else 1


if __name__ == "__main__":
    sys.exit(main())

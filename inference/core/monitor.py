"""The monitor: every ``interval``, turn counters into a window of rates and a verdict.

Over the last ``window`` seconds it computes, per stage, items/s and utilization (busy
seconds ÷ wall seconds ÷ workers), the fill and growth of each input queue, and:

- engine efficiency = calibrated seconds for the batches run ÷ seconds they took
  (is the model itself running at full speed?);
- pipeline efficiency = delivered items/s ÷ model-only capacity at the max batch size
  (is the pipeline feeding it?);
- MFU = items/s × FLOPs per item ÷ the GPU's dense peak, only when the peak is known;
- the bottleneck verdict (see :mod:`inference.analysis.bottleneck`), exported as a 0/1 gauge, and
  which stages are stalled (``inference_stage_stalled``).

Busy time and in-flight ages come from the stage ledgers (:mod:`inference.analysis.stats`), which
count work in progress: a window that ends while a stage is stuck sees it busy and stuck,
so a hang is named within a second of its call passing the stall threshold.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..analysis.bottleneck import SATURATION, StageWindow, Verdict, verdict
from ..analysis.shared import fuse
from ..analysis.stats import StageCounters
from ..metrics import RuntimeMetrics
from ..types import ENGINE_STAGE, LAST_STAGE, SPECS, STAGES
from .pipeline import Pipeline

#: (time, stage → counters, queue → depth, queue → items taken so far)
_Snapshot = tuple[float, dict[str, StageCounters], dict[str, int], dict[str, int]]


class HostCpu:
    """The host's CPU busy share between two calls, from ``/proc/stat`` (None where
    there is none, or on the first call)."""

    def __init__(self, path: str = "/proc/stat") -> None:
        self._path = path
        self._last: tuple[int, int] | None = None

    def __call__(self) -> float | None:
        try:
            with open(self._path) as file:
                fields = [int(x) for x in file.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle, total = fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)
        last, self._last = self._last, (idle, total)
        if last is None or total <= last[1]:
            return None
        return 1.0 - (idle - last[0]) / (total - last[1])


class Monitor:
    """Samples the pipeline; ``latest`` holds the most recent verdict and stage windows.

    ``clock`` defaults to the pipeline's: in-flight ages and window lengths must be read
    on the same clock (tests pass a fake one to both).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: RuntimeMetrics,
        *,
        interval: float,
        window: float,
        clock: Callable[[], float] | None = None,
        cpu_busy: Callable[[], float | None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.interval = interval
        self.window = window
        self._clock = clock or pipeline.clock
        self._cpu_busy = cpu_busy or HostCpu()
        self._history: deque[_Snapshot] = deque()
        self.latest: Verdict | None = None
        self.stages: list[StageWindow] = []
        self.mfu: float | None = None
        self.cpu: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        model = pipeline.info.name
        self._engine_eff = metrics.engine_efficiency_ratio.labels(model)
        self._pipeline_eff = metrics.pipeline_efficiency_ratio.labels(model)
        self._mfu = metrics.mfu_ratio.labels(model) if pipeline.calibration.peak_flops else None
        self._bottleneck = {
            name: metrics.pipeline_bottleneck.labels(name) for name in (*STAGES, "input")
        }
        self._utilization = {
            stage: metrics.stage_utilization_ratio.labels(stage) for stage in STAGES
        }
        self._stalled = {stage: metrics.stage_stalled.labels(stage) for stage in STAGES}
        for gauge in self._stalled.values():
            gauge.set(0)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # never let analysis take the server down
                continue

    def _snapshot(self) -> _Snapshot:
        now = self._clock()
        stages = self.pipeline.stages
        counters = {stage: stages[stage].ledger.snapshot(now) for stage in STAGES}
        queues = self.pipeline.queues
        depths = {name: len(queue) for name, queue in queues.items()}
        return now, counters, depths, {name: queue.passed for name, queue in queues.items()}

    def sample(self) -> Verdict | None:
        """Take a snapshot, compute the window against the oldest one inside it."""
        now = self._snapshot()
        self.cpu = self._cpu_busy()
        self._history.append(now)
        while len(self._history) > 2 and now[0] - self._history[1][0] >= self.window:
            self._history.popleft()
        then = self._history[0]
        elapsed = now[0] - then[0]
        if elapsed <= 0:
            return None
        self.stages = self._windows(then, now, elapsed)
        infer_now, infer_then = now[1][ENGINE_STAGE], then[1][ENGINE_STAGE]
        engine_seconds = infer_now.engine_seconds - infer_then.engine_seconds
        expected = infer_now.expected_seconds - infer_then.expected_seconds
        engine_efficiency = expected / engine_seconds if engine_seconds > 0 else None
        delivered = (now[1][LAST_STAGE].items - then[1][LAST_STAGE].items) / elapsed
        calibration = self.pipeline.calibration
        capacity = calibration.best_capacity(self.pipeline.batcher.max_batch)
        result = verdict(
            self.stages,
            delivered_per_s=delivered,
            capacity_per_s=capacity,
            engine_efficiency=engine_efficiency,
            cpu_busy=self.cpu,
            gpu=self.pipeline.info.device != "cpu",
            decode_processes=self.pipeline.decode_processes(),
        )
        self.latest = result
        self._export(result, infer_now, infer_then, elapsed)
        return result

    def _own_threads(self, stage: str) -> int:
        """Threads working for ``stage`` on inputs of their own, not its queue: streams'
        source threads here, and streams' threads in decode processes."""
        remote = self.pipeline.remote_streams() if SPECS[stage].remote else 0
        return self.pipeline.sourced(stage) + remote

    def _workers(self, stage: str, then: _Snapshot, now: _Snapshot) -> int:
        """Threads that could work for the stage over the window: those on inputs of
        their own, plus the queue's workers if work came through the queue (idle queue
        workers must not dilute the streams' utilization) or nobody else works for it."""
        own = self._own_threads(stage)
        fed = now[3][stage] > then[3][stage] or now[2][stage] > 0 or then[2][stage] > 0
        return own + (self.pipeline.workers(stage) if fed or not own else 0)

    def _windows(self, then: _Snapshot, now: _Snapshot, elapsed: float) -> list[StageWindow]:
        samples = [snap for snap in self._history if snap[0] >= then[0]]
        windows = []
        busy_by_stage: dict[str, float] = {}
        for stage in STAGES:
            current, before = now[1][stage], then[1][stage]
            items = current.items - before.items
            busy = current.busy - before.busy
            busy_by_stage[stage] = busy
            drilled = current.drilled - before.drilled
            workers = self._workers(stage, then, now)
            queue = self.pipeline.queues[stage]
            depths = [snap[2][stage] for snap in samples]
            fill: float | None = (sum(depths) / len(depths)) / queue.capacity
            if SPECS[stage].sourced and not any(depths):
                # Streams queue frames in their own mailboxes, which are not measured: an
                # unused HTTP queue says nothing about the pressure on the stage.
                fill = None
            growth = (now[2][stage] - then[2][stage]) / elapsed
            utilization = min(1.0, busy / (elapsed * workers)) if workers else 0.0
            windows.append(
                StageWindow(
                    stage,
                    items / elapsed,
                    utilization,
                    workers,
                    fill,
                    growth,
                    inflight=current.inflight,
                    oldest_inflight_s=current.oldest_age,
                    p50_s=current.p50,
                    p99_s=current.p99,
                    drilled_share=min(1.0, drilled / busy) if busy > 0 else 0.0,
                )
            )
        # Decode processes: one thread per stream decodes and preprocesses (feed/shared.py).
        return fuse(windows, busy_by_stage, elapsed, self.pipeline.remote_streams(), SATURATION)

    def _export(
        self, result: Verdict, infer_now: StageCounters, infer_then: StageCounters, elapsed: float
    ) -> None:
        for window in self.stages:
            self._utilization[window.name].set(window.utilization)
            # Streams' threads (here or in decode processes) work for some stages too.
            self.pipeline.stages[window.name].workers.set(window.workers)
        for name, gauge in self._stalled.items():
            gauge.set(1 if name in result.stalled else 0)
        if result.engine_efficiency is not None:
            self._engine_eff.set(result.engine_efficiency)
        if result.pipeline_efficiency is not None:
            self._pipeline_eff.set(result.pipeline_efficiency)
        for name, gauge in self._bottleneck.items():
            gauge.set(1 if name == result.bottleneck else 0)
        self.metrics.engine_starved.set(1 if result.engine_starved else 0)
        calibration = self.pipeline.calibration
        if self._mfu is not None and calibration.flops_per_item and calibration.peak_flops:
            flops = (infer_now.items - infer_then.items) * calibration.flops_per_item / elapsed
            self.mfu = flops / calibration.peak_flops
            self._mfu.set(self.mfu)

    def report(self) -> dict[str, Any]:
        """The latest verdict and stage windows, for /v1/profile (computed now if the
        first interval has not passed yet)."""
        if self.latest is None:
            self.sample()
        return {
            "verdict": self.latest.as_dict() if self.latest else None,
            "stages": [{**window.__dict__, "stalled": window.stalled} for window in self.stages],
            "mfu": self.mfu,
            "cpu_busy": self.cpu,
            "window_s": self.window,
        }

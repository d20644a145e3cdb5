"""The monitor: every ``interval``, turn counters into a window of rates and a verdict.

Over the last ``window`` seconds it computes, per stage, items/s and utilization (busy
seconds ÷ wall seconds ÷ workers), the fill and growth of each input queue, and:

- engine efficiency = calibrated seconds for the batches run ÷ seconds they took
  (is the model itself running at full speed?);
- pipeline efficiency = delivered items/s ÷ model-only capacity at the max batch size
  (is the pipeline feeding it?);
- MFU = items/s × FLOPs per item ÷ the GPU's dense peak, only when the peak is known;
- the bottleneck verdict (see :mod:`inference.bottleneck`), exported as a 0/1 gauge.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .bottleneck import StageWindow, Verdict, verdict
from .metrics import RuntimeMetrics
from .pipeline import Pipeline
from .stats import StageCounters
from .types import STAGES

_Snapshot = tuple[float, dict[str, StageCounters], dict[str, int]]


class Monitor:
    """Samples the pipeline; ``latest`` holds the most recent verdict and stage windows."""

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: RuntimeMetrics,
        *,
        interval: float,
        window: float,
        decode_workers: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.interval = interval
        self.window = window
        self._decode_workers = decode_workers
        self._clock = clock
        self._history: deque[_Snapshot] = deque()
        self.latest: Verdict | None = None
        self.stages: list[StageWindow] = []
        self.mfu: float | None = None
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
        counters = {stage: self.pipeline.meters[stage].stats.snapshot() for stage in STAGES}
        depths = {name: len(queue) for name, queue in self.pipeline.queues.items()}
        return self._clock(), counters, depths

    def sample(self) -> Verdict | None:
        """Take a snapshot, compute the window against the oldest one inside it."""
        now = self._snapshot()
        self._history.append(now)
        while len(self._history) > 2 and now[0] - self._history[1][0] >= self.window:
            self._history.popleft()
        then = self._history[0]
        elapsed = now[0] - then[0]
        if elapsed <= 0:
            return None
        self.stages = self._windows(then, now, elapsed)
        infer_now, infer_then = now[1]["infer"], then[1]["infer"]
        engine_seconds = infer_now.engine_seconds - infer_then.engine_seconds
        expected = infer_now.expected_seconds - infer_then.expected_seconds
        engine_efficiency = expected / engine_seconds if engine_seconds > 0 else None
        delivered = (now[1]["encode"].items - then[1]["encode"].items) / elapsed
        calibration = self.pipeline.calibration
        capacity = calibration.best_capacity(self.pipeline.batcher.max_batch)
        result = verdict(
            self.stages,
            delivered_per_s=delivered,
            capacity_per_s=capacity,
            engine_efficiency=engine_efficiency,
        )
        self.latest = result
        self._export(result, infer_now, infer_then, elapsed)
        return result

    def _windows(self, then: _Snapshot, now: _Snapshot, elapsed: float) -> list[StageWindow]:
        samples = [snap for snap in self._history if snap[0] >= then[0]]
        windows = []
        for stage in STAGES:
            items = now[1][stage].items - then[1][stage].items
            busy = now[1][stage].busy - then[1][stage].busy
            workers = self._decode_workers() if stage == "decode" else self.pipeline.workers(stage)
            fill = None
            growth = 0.0
            queue = self.pipeline.queues.get(stage)
            if queue is not None:
                depths = [snap[2][stage] for snap in samples]
                fill = (sum(depths) / len(depths)) / queue.capacity
                growth = (now[2][stage] - then[2][stage]) / elapsed
            utilization = min(1.0, busy / (elapsed * workers)) if workers else 0.0
            windows.append(StageWindow(stage, items / elapsed, utilization, workers, fill, growth))
        return windows

    def _export(
        self, result: Verdict, infer_now: StageCounters, infer_then: StageCounters, elapsed: float
    ) -> None:
        for window in self.stages:
            self._utilization[window.name].set(window.utilization)
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
            "stages": [window.__dict__ for window in self.stages],
            "mfu": self.mfu,
            "window_s": self.window,
        }

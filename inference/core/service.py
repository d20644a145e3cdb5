"""What the pipeline can serve now, measured from its stage ledgers: the estimator behind
admission control (:mod:`inference.core.admission`).

Service time, not a concurrency limit: each stage's ledger (:mod:`inference.analysis.stats`)
already counts its busy seconds, items and calls, so per-item and per-call seconds come
straight from it every ``refresh`` seconds; the slowest stage sets the rate, and the live
streams' frames (which go first at every queue) are taken out of the stages they pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..analysis.stats import StageCounters, StageLedger
from ..types import ENGINE_STAGE

#: How much each refresh moves the estimates toward the latest window (EWMA weight).
BLEND = 0.5
#: A stage's window is folded in once it holds this many calls (else it grows).
MIN_CALLS = 2


class ServiceModel:
    """What the pipeline can serve now, measured from the stage ledgers.

    Every ``refresh`` seconds (when asked), each stage's busy seconds and items over the
    window since the last refresh give its seconds per item and per call; a stage with
    nothing done in the window keeps its estimate. ``initial`` gives estimates before the
    first measurement (the engine's, from calibration).

    - ``http_rate``: requests/s the slowest stage can take — workers ÷ seconds per item,
      less the streams' frame rate at the stages frames pass through (``shared``).
    - ``floor``: seconds one item alone needs (every stage's call, plus the batcher's wait).
    - ``reserves[stage]``: seconds from the queue in front of ``stage`` to the end; written
      to each queue's ``reserve`` so it can drop requests that can no longer finish.

    Not locked: one thread refreshes it (the server's event loop, which admits requests
    and answers scrapes); the queues only read the floats it publishes.
    """

    def __init__(
        self,
        ledgers: Mapping[str, StageLedger],
        *,
        workers: Callable[[str], int],
        frames: Callable[[], int],
        shared: frozenset[str],
        batch_wait: Callable[[], float],
        batched: str = ENGINE_STAGE,
        initial: Mapping[str, tuple[float, float]] | None = None,
        queues: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        refresh: float = 0.5,
    ) -> None:
        self._ledgers = ledgers
        self._workers = workers
        self._frames = frames
        self._shared = shared
        self._batch_wait = batch_wait
        self._batched = batched
        self._queues = queues or {}
        self._clock = clock
        self.refresh_every = refresh
        start = initial or {}
        #: stage → (seconds per item, seconds per call)
        self.per_item = {stage: start.get(stage, (0.0, 0.0))[0] for stage in ledgers}
        self.per_call = {stage: start.get(stage, (0.0, 0.0))[1] for stage in ledgers}
        self.frame_rate = 0.0
        self._at = clock()
        self._last: dict[str, StageCounters] = {
            stage: ledger.snapshot(self._at) for stage, ledger in ledgers.items()
        }
        self._frames_last = frames()
        self._publish()

    def refresh(self, force: bool = False) -> None:
        """Fold in the window since the last refresh, if ``refresh`` seconds have passed."""
        now = self._clock()
        elapsed = now - self._at
        if elapsed < self.refresh_every and not force:
            return
        for stage, ledger in self._ledgers.items():
            snap = ledger.snapshot(now)
            last = self._last[stage]
            items = snap.items + snap.errors - last.items - last.errors
            calls = snap.calls - last.calls
            if calls < MIN_CALLS:
                continue  # too few to say anything yet: the window grows
            busy = snap.busy - last.busy
            if items > 0 and busy >= 0:
                self.per_item[stage] = _blend(self.per_item[stage], busy / items)
                self.per_call[stage] = _blend(self.per_call[stage], busy / calls)
            self._last[stage] = snap
        frames = self._frames()
        if elapsed > 0:
            # The last window's rate, not a blend: a deleted stream stops asking at once.
            self.frame_rate = (frames - self._frames_last) / elapsed
        self._frames_last = frames
        self._at = now
        self._publish()

    def _publish(self) -> None:
        stages = list(self._ledgers)
        batch_wait = self._batch_wait()
        remaining = 0.0
        reserves = {}
        for stage in reversed(stages):
            remaining += self.per_call[stage] + (batch_wait if stage == self._batched else 0.0)
            reserves[stage] = remaining
        self.floor = remaining
        self.reserves = reserves
        for stage, queue in self._queues.items():
            queue.reserve = reserves.get(stage, 0.0)

    def stage_rates(self) -> dict[str, float]:
        """Requests/s each stage can take after the streams (inf: nothing measured)."""
        rates = {}
        for stage, seconds in self.per_item.items():
            if seconds <= 0:
                rates[stage] = math.inf
                continue
            # At least one: a stage serving has one (config), and tests start them late.
            rate = max(1, self._workers(stage)) / seconds
            if stage in self._shared:
                rate -= self.frame_rate
            rates[stage] = max(0.0, rate)
        return rates

    @property
    def http_rate(self) -> float:
        """Requests/s the pipeline serves now (the slowest stage's, after the streams)."""
        return min(self.stage_rates().values(), default=math.inf)

    @property
    def total_rate(self) -> float:
        """Items/s the slowest stage serves, streams included (inf: nothing measured)."""
        rates = [
            max(1, self._workers(stage)) / seconds
            for stage, seconds in self.per_item.items()
            if seconds
        ]
        return min(rates, default=math.inf)


def _blend(old: float, new: float) -> float:
    return new if old <= 0 else old + BLEND * (new - old)

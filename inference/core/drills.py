"""Drills: slow a stage on purpose, for game days and for alert tests.

A drill adds ``delay`` seconds to every *item* the stage handles (a batch of 8 in infer
sleeps 8× the delay), inside the stage's timed region. So a drill makes a real
bottleneck — the stage's utilization, queue and latency all move as they would for a
genuinely slow stage — and the verdict must name it. Drills expire on their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import DrillInputError
from ..metrics import RuntimeMetrics
from ..types import DRILL_STAGES, STAGES

MAX_DELAY_MS = 60_000
MAX_DURATION_S = 3600


class Drills:
    """Active drills by stage; ``delay(stage)`` is called per item on the hot path."""

    def __init__(
        self,
        metrics: RuntimeMetrics,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        """``sleep``: how a drilled stage waits (default: a wait that ``stop_all`` cuts
        short); tests pass one that advances their fake clock."""
        self._sleep = sleep
        self._active: dict[str, tuple[float, float]] = {}  # stage → (delay s, until)
        self._lock = threading.Lock()
        self._cancel = threading.Event()  # set by stop_all: wakes every sleeping stage
        self._clock = clock
        self._gauge = metrics.drill_delay_seconds
        for stage in STAGES:
            self._gauge.labels(stage).set(0)
        self._listeners: list[Callable[[], object]] = []

    def subscribe(self, listener: Callable[[], object]) -> None:
        """Call ``listener()`` after every ``start`` and ``stop_all``: the decode processes
        mirror the decode and preprocess drills (inference/feed/drills.py)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def start(self, stage: str, delay_ms: float, duration_s: float) -> dict[str, float | str]:
        if stage not in DRILL_STAGES:
            raise DrillInputError(
                f"unknown stage {stage!r}: drills apply to {', '.join(DRILL_STAGES)}"
            )
        if isinstance(delay_ms, bool) or isinstance(duration_s, bool):
            # bool is an int subclass: True would pass as a 1 ms drill.
            raise DrillInputError("delay_ms and duration_s are numbers, not true/false")
        if not (0 < delay_ms <= MAX_DELAY_MS) or not (0 < duration_s <= MAX_DURATION_S):
            raise DrillInputError(
                f"delay_ms must be in (0, {MAX_DELAY_MS}] and duration_s in (0, {MAX_DURATION_S}]"
            )
        until = self._clock() + duration_s
        with self._lock:
            self._active[stage] = (delay_ms / 1000.0, until)
        self._gauge.labels(stage).set(delay_ms / 1000.0)
        self._changed()
        return {"stage": stage, "delay_ms": delay_ms, "duration_s": duration_s}

    def delay(self, stage: str) -> float:
        """Seconds to add per item now (0 when no drill, or it has expired)."""
        drill = self._active.get(stage)
        if drill is None:
            return 0.0
        if self._clock() >= drill[1]:
            with self._lock:
                if self._active.get(stage) == drill:
                    del self._active[stage]
            self._gauge.labels(stage).set(0)
            return 0.0
        return drill[0]

    def pause(self, stage: str, items: int = 1) -> float:
        """Sleep for the drill's delay × ``items`` (never past the drill's end); a
        ``stop_all`` wakes the sleeper at once. Returns the seconds slept."""
        drill = self._active.get(stage)
        if drill is None or self.delay(stage) == 0.0:
            return 0.0
        seconds = max(0.0, min(drill[0] * items, drill[1] - self._clock()))
        started = self._clock()
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._cancel.wait(seconds)
        return self._clock() - started

    def stop_all(self) -> int:
        with self._lock:
            count = len(self._active)
            self._active.clear()
            cancel, self._cancel = self._cancel, threading.Event()
        cancel.set()
        for stage in STAGES:
            self._gauge.labels(stage).set(0)
        self._changed()
        return count

    def active(self) -> dict[str, dict[str, float]]:
        now = self._clock()
        return {
            stage: {"delay_ms": delay * 1000, "remaining_s": round(until - now, 3)}
            for stage, (delay, until) in list(self._active.items())
            if until > now
        }

"""Drills on decode and preprocess, applied inside the decode processes.

The engine's :class:`~inference.core.drills.Drills` is the one authority (the HTTP API starts
and stops drills there); :class:`DrillBoard` mirrors its decode and preprocess drills into
a small shared region that every decode process reads per frame. A drill therefore slows
the stage where it really runs, inside its timed region, exactly as on threads: the stage's
utilization, in-flight age and latency move, and the verdict must name it. ``stop_all``
bumps a generation number that wakes every sleeping decode thread within
:data:`TICK_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..core.drills import Drills
from ..types import REMOTE_STAGES
from .shm import Region

#: The two calls a decode process makes per frame, in the board's order (its stats row
#: has a column group for each: DEC_* and PRE_* in .shm).
DECODE, PREPROCESS = REMOTE_STAGES
_WORDS = 2 * len(REMOTE_STAGES) + 1  # (delay s, until monotonic s) per stage, generation
SIZE = 64
#: How often a sleeping drilled call looks for a stop (seconds).
TICK_S = 0.05


class DrillBoard:
    """The shared mirror of the decode/preprocess drills (either side builds one)."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self._words = region.array(0, (_WORDS,), np.float64)

    @classmethod
    def create(cls) -> DrillBoard:
        return cls(Region(SIZE))

    def mirror(self, drills: Drills) -> Callable[[], None]:
        """A listener for ``drills.subscribe`` that copies its drills here."""

        def publish() -> None:
            active = drills.active()
            now = time.monotonic()
            for index, stage in enumerate(REMOTE_STAGES):
                drill = active.get(stage)
                delay = drill["delay_ms"] / 1000.0 if drill else 0.0
                until = now + drill["remaining_s"] if drill else 0.0
                # until first: a reader that sees the new delay also sees its end.
                self._words[2 * index + 1] = until
                self._words[2 * index] = delay
            self._words[-1] += 1  # wakes drilled calls in progress (they re-read)

        publish()
        return publish

    def pause(self, stage: str, sleep: Callable[[float], object] = time.sleep) -> float:
        """In a decode process: wait out ``stage``'s drill for one item (never past the
        drill's end; cut short when the drills change); returns the seconds waited."""
        index = REMOTE_STAGES.index(stage)
        words = self._words
        delay = float(words[2 * index])
        if delay <= 0.0:
            return 0.0
        started = time.monotonic()
        end = min(started + delay, float(words[2 * index + 1]))
        generation = float(words[-1])
        while True:
            now = time.monotonic()
            if now >= end or float(words[-1]) != generation:
                return now - started
            sleep(min(TICK_S, end - now))

    def close(self) -> None:
        self._words = np.zeros(_WORDS)
        self.region.close()

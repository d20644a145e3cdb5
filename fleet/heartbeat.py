"""What a worker tells the fleet about itself: its heartbeat, and the rate it reports.

A worker beats into the store every ``heartbeat_s`` (:class:`Heartbeat`) with a
:class:`WorkerBeat`; the record expires after three missed beats, so a SIGKILLed worker
leaves service discovery by itself. The jobs API reads the beats back (its http_sd
targets, ``fleet_workers``, fleet throughput and capacity), typed::

    beat = WorkerBeat(name="w0", metrics="10.0.0.5:9500", gpu=0, busy=True, job="j1")
    WorkerBeat.from_json(beat.to_json()) == beat  # True
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from loglog import get_logger

from .errors import StoreUnavailable


class BeatStore(Protocol):
    """Where beats go: :class:`fleet.store.JobStore` (named here without importing it,
    since the store reads :class:`WorkerBeat` back)."""

    def heartbeat(self, beat: WorkerBeat, ttl: float) -> None: ...


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class WorkerBeat:
    """One heartbeat of a worker, as stored (JSON) and read back by the API."""

    name: str
    #: ``host:port`` of the worker's ``/metrics`` ("" when it serves none).
    metrics: str = ""
    gpu: int | None = None
    #: Whether it runs a segment now, and of which job.
    busy: bool = False
    job: str | None = None
    #: Frames/s while working over the last 30 s (:class:`RateWindow`).
    frames_per_second: float = 0.0
    #: Its calibrated model-only frames/s (its share of fleet capacity).
    capacity_frames_per_second: float = 0.0
    #: When the store recorded the beat (its clock, seconds since the epoch).
    seen: float = 0.0

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerBeat | None:
        """A beat read back; None when ``text`` is not one (garbage, or a record whose
        fields have other types). Unknown fields are ignored and missing ones take their
        defaults, so workers and API of neighbouring versions still agree."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        values: dict[str, Any] = {}
        for key, raw in data.items():
            value: Any = raw
            kind = _KINDS.get(key)
            if kind is None or (value is None and key not in _OPTIONAL):
                continue  # a newer version's field, or none given: the default
            if kind is float and type(value) is int:
                value = float(value)
            if value is not None and type(value) is not kind:
                return None  # strict: true is not 1, "0" is not GPU 0
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                return None
            values[key] = value
        return cls(**values)


#: The JSON type of each field; null is a value only for the optional ones.
_KINDS: dict[str, type] = {"name": str, "metrics": str, "gpu": int, "busy": bool, "job": str,
                           "frames_per_second": float, "capacity_frames_per_second": float,
                           "seen": float}  # fmt: skip
_OPTIONAL = frozenset({"gpu", "job"})


class RateWindow:
    """Frames per second while working, over the last ``window`` seconds: frames in the
    window ÷ time since the oldest of them (not since the window opened, so idle time
    before a job does not dilute the rate the fleet ETA is computed from)."""

    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.clock = window, clock
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, frames: int) -> None:
        with self._lock:
            self._events.append((self.clock(), frames))

    def rate(self) -> float:
        now = self.clock()
        with self._lock:
            while self._events and self._events[0][0] < now - self.window:
                self._events.popleft()
            if not self._events:
                return 0.0
            frames = sum(n for _, n in self._events)
            oldest = self._events[0][0]
        return frames / max(now - oldest, 1.0)


class Heartbeat(threading.Thread):
    """Beats ``beat()`` into the store until stopped; a store outage is logged, not fatal."""

    def __init__(self, store: BeatStore, beat: Callable[[], WorkerBeat], interval: float) -> None:
        super().__init__(name="fleet-heartbeat", daemon=True)
        self.store, self.beat, self.interval = store, beat, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        log = get_logger("fleet.worker")
        while not self.stopped.is_set():
            try:
                self.store.heartbeat(self.beat(), ttl=self.interval * 3)
            except StoreUnavailable as exc:
                log.warning("heartbeat failed; retrying", error=str(exc))
            self.stopped.wait(self.interval)

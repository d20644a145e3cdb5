"""Plain counters per stage, read by the monitor to compute windows (rates, utilization).

Prometheus counters are for scrapers; the runtime's own analysis needs consistent
snapshots of the same quantities, cheaply. Each stage keeps a tiny lock-protected record.
"""

from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass
class StageCounters:
    """Cumulative numbers for one stage."""

    items: int = 0
    busy: float = 0.0
    errors: int = 0
    calls: int = 0
    #: infer only: engine seconds actually spent, and what calibration predicted for them.
    engine_seconds: float = 0.0
    expected_seconds: float = 0.0


class StageStats:
    """Thread-safe accumulation and snapshots of :class:`StageCounters`."""

    def __init__(self) -> None:
        self._counters = StageCounters()
        self._lock = threading.Lock()

    def add(
        self,
        items: int,
        busy: float,
        errors: int = 0,
        engine_seconds: float = 0.0,
        expected_seconds: float = 0.0,
    ) -> None:
        with self._lock:
            c = self._counters
            c.items += items
            c.busy += busy
            c.errors += errors
            c.calls += 1
            c.engine_seconds += engine_seconds
            c.expected_seconds += expected_seconds

    def snapshot(self) -> StageCounters:
        with self._lock:
            return dataclasses.replace(self._counters)

"""Lock-free counting, so that no log call and no sink ever waits on a metrics lock.

prometheus_client guards every value with a ``threading.Lock``; taken on the caller's
thread it could deadlock a signal handler that logs while the interrupted code holds it,
and held across ``fork()`` it would freeze the child. loglog counts with these instead
and exposes them through a collector at scrape time (see :mod:`loglog.metrics`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

#: What a :class:`Tally` counts by: a kind and its labels, e.g. ``("dropped", level, reason)``.
TallyKey = tuple[str, ...]


class AtomicCounter:
    """A counter that any thread, or a signal handler, may bump without a lock.

    ``itertools.count.__next__`` runs in C and never releases the GIL, so each increment is
    atomic; the value is read back from its repr, documented as ``count(n)``.

    >>> c = AtomicCounter(); c.inc(); c.inc(); c.value
    2
    """

    __slots__ = ("counter", "inc")

    def __init__(self) -> None:
        #: The ``itertools.count`` itself: loglog's C hot path steps it directly.
        self.counter = itertools.count()
        self.inc = self.counter.__next__

    @property
    def value(self) -> int:
        return int(repr(self.counter)[6:-1])


class Tally:
    """Counts written by exactly one thread, read by any (the collector copies them).

    A single writer needs no lock: ``dict`` operations are atomic under the GIL, and
    ``dict(d)`` copies in C without running Python code in between.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[TallyKey, int] = {}

    def add(self, key: TallyKey, amount: int = 1) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0) + amount

    def snapshot(self) -> dict[TallyKey, int]:
        return dict(self.counts)


class WriterHistogram:
    """A histogram with a single writer thread (a sink's), read by the collector."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """Buckets as prometheus_client's ``HistogramMetricFamily`` wants them, and the sum."""
        counts = list(self.counts)
        running = 0
        buckets: list[tuple[str, int]] = []
        for bound, count in zip(self.bounds, counts, strict=False):
            running += count
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", running + counts[-1]))
        return buckets, self.sum


def merge(tallies: Sequence[Tally]) -> dict[TallyKey, int]:
    """Sum several single-writer tallies into one mapping."""
    total: dict[TallyKey, int] = {}
    for tally in tallies:
        for key, value in tally.snapshot().items():
            total[key] = total.get(key, 0) + value
    return total

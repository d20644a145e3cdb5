"""What each stage did and what it holds right now, read by the monitor and at scrape time.

A stage's ledger counts finished calls (items, busy seconds, errors, engine and drill
seconds) *and* the calls in progress, with the start time of each. Busy time therefore
includes the elapsed part of work that has not finished: a stage stuck on one item for a
minute reads 100 % busy during that minute, not 0 % until the item finally comes out.

One lock per stage makes "leave a call and add its seconds" atomic with respect to a
reader, so ``busy`` read at any moment (finished + in progress) never goes backwards.

Calls that run in another process (decode and preprocess in the decode processes,
:mod:`inference.feed`) are added whole when their report arrives (:meth:`StageLedger.add_call`);
until then :attr:`StageLedger.remote` shows them, read under the same lock, so they too
count while in progress and are never counted twice or dropped in between.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

#: How many recent call durations a stage keeps to know its normal speed.
RECENT = 256


@dataclasses.dataclass
class StageCounters:
    """Cumulative numbers for one stage, plus what is in progress at snapshot time."""

    items: int = 0
    busy: float = 0.0  # finished calls' seconds + the elapsed part of calls in progress
    errors: int = 0
    calls: int = 0
    #: Seconds spent in drill delays (inside busy); the stage's own work is busy − drilled.
    drilled: float = 0.0
    #: infer only: engine seconds actually spent (drill excluded), and what calibration
    #: predicted for them.
    engine_seconds: float = 0.0
    expected_seconds: float = 0.0
    #: At snapshot time: items in progress, and how long the oldest call has run.
    inflight: int = 0
    oldest_age: float = 0.0
    #: Clock time of the last finished call (the ledger's creation until the first).
    last_completion: float = 0.0
    #: Recent call durations: p50 is the stage's normal speed, p99 its slow tail.
    p50: float | None = None
    p99: float | None = None


class StageLedger:
    """Thread-safe accounting of one stage: ``enter`` before a call, ``leave`` after.

    >>> clock = iter([0.0, 0.0, 2.0]).__next__
    >>> ledger = StageLedger(clock=clock)
    >>> token = ledger.enter(1)
    >>> ledger.snapshot().oldest_age
    2.0
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._counters = StageCounters(last_completion=clock())
        self._inflight: dict[int, tuple[float, int]] = {}  # token → (started, items)
        self._tokens = itertools.count()
        self._recent: deque[float] = deque(maxlen=RECENT)
        #: Calls of this stage running in other processes and not yet added:
        #: ``remote(now)`` yields ``(started, ended)``, ``ended`` None while it runs.
        #: Called under the ledger's lock (see :meth:`add_call`).
        self.remote: Callable[[float], Iterable[tuple[float, float | None]]] | None = None

    def enter(self, items: int, started: float | None = None) -> tuple[int, float]:
        """Mark a call of ``items`` items as started (now, or at ``started``)."""
        token = next(self._tokens)  # itertools.count is atomic under the GIL
        when = self.clock() if started is None else started
        with self._lock:
            self._inflight[token] = (when, items)
        return token, when

    def leave(
        self,
        token: int,
        ended: float,
        *,
        ok: int,
        errors: int = 0,
        drilled: float = 0.0,
        engine: bool = False,
        expected_seconds: float = 0.0,
    ) -> float:
        """Mark the call finished at ``ended``; returns when it started. ``engine``: the
        call's time less ``drilled`` was the engine's own (infer)."""
        with self._lock:
            started, _ = self._inflight.pop(token)
            seconds = ended - started
            c = self._counters
            c.items += ok
            c.busy += seconds
            c.errors += errors
            c.calls += 1
            c.drilled += drilled
            if engine:
                c.engine_seconds += seconds - drilled
                c.expected_seconds += expected_seconds
            c.last_completion = ended
            self._recent.append(seconds)
        return started

    def add_call(
        self,
        started: float,
        ended: float,
        *,
        ok: int,
        errors: int = 0,
        drilled: float = 0.0,
        then: Callable[[], object] | None = None,
    ) -> None:
        """Add a whole call that ran elsewhere; ``then()`` runs under the same lock (the
        feed marks the call reported there, so :attr:`remote` stops showing it at the
        very moment it is counted here)."""
        with self._lock:
            seconds = max(0.0, ended - started)  # as remote() counted it meanwhile
            c = self._counters
            c.items += ok
            c.busy += seconds
            c.errors += errors
            c.calls += 1
            c.drilled += drilled
            c.last_completion = max(c.last_completion, ended)
            self._recent.append(seconds)
            if then is not None:
                then()

    def snapshot(self, now: float | None = None) -> StageCounters:
        """The counters, with in-progress work counted up to ``now`` (default: the clock)."""
        with self._lock:
            at = self.clock() if now is None else now
            snap = dataclasses.replace(self._counters)
            calls = list(self._inflight.values())
            recent = sorted(self._recent)
            remote = tuple(self.remote(at)) if self.remote is not None else ()
        for started, ended in remote:
            if ended is None:
                calls.append((started, 1))
            else:  # finished, its report on the way: its seconds, no longer in progress
                snap.busy += max(0.0, ended - started)
        if calls:
            ages = [max(0.0, at - started) for started, _ in calls]
            snap.busy += sum(ages)
            snap.inflight = sum(items for _, items in calls)
            snap.oldest_age = max(ages)
        snap.p50, snap.p99 = percentile(recent, 0.5), percentile(recent, 0.99)
        return snap


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0–1) of already sorted values (nearest rank)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]

"""What a sink with a sender thread of its own still owes: counted once, settled by shutdown.

The Loki sink takes records from its runner, groups them into batches and hands those to
a sender thread that may still be waiting on the network when ``shutdown()`` returns. Its
records must be counted by then — delivered, dropped with a reason, or left on disk for
the next process — and never again afterwards. So every record such a sink takes on is
*held* here (by level, from the moment its runner takes it from the inbox), and every
outcome goes through :meth:`Ledger.settle`, under one lock:

    runner takes a batch ──hold──▶ held ──settle(reason)──▶ delivered / dropped
                                     └──spilled──▶ durable ──settle──▶ delivered / dropped
    close(): what is still held ──▶ dropped ``shutdown``; durable ──▶ ``spilled``

After :meth:`close` every settlement is ignored: a push that succeeds one second after
shutdown changes no count. A batch is settled once (its ``settled`` flag); records of a
batch adopted from an earlier process were never held and are counted as they settle.
Counts by level, not per record: a spill of millions of records costs no memory here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from .counters import Tally
from .types import DropReason, Record, level_name

SHUTDOWN = DropReason.SHUTDOWN  # the name this module exported before DropReason


class Settleable(Protocol):
    """A batch as the ledger sees it (loglog.batches.Batch)."""

    levels: dict[str, int]
    adopted: bool
    settled: bool
    durable: bool


class Ledger:
    """See the module docstring. ``tally`` holds what was settled: ``("delivered",
    level)``, ``("dropped", level, reason)``, ``("spilled", level)``, and
    ``("replayed", "spill")`` for adopted batches delivered; every write is under the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self._durable: Counter[str] = Counter()
        self.closed = False
        self.tally = Tally()

    def hold(self, records: Sequence[Record]) -> None:
        """The sink's runner took ``records`` from its inbox (under the runner's lock)."""
        levels = Counter([level_name(record.level) for record in records])
        with self._lock:
            if self.closed:  # counted by close() with the runner's inbox already
                return
            self._held.update(levels)

    def drop(self, level: str, reason: DropReason, count: int = 1) -> None:
        """``count`` held records of ``level`` that never made it into a batch."""
        with self._lock:
            if self.closed:
                return
            self._held[level] -= count
            self.tally.add(("dropped", level, reason), count)

    def spilled(self, batch: Settleable) -> None:
        """``batch`` is on disk: kept for the next process if this one ends first."""
        with self._lock:
            if self.closed or batch.settled or batch.adopted or batch.durable:
                return
            batch.durable = True
            self._durable.update(batch.levels)

    def settle(self, batch: Settleable, reason: DropReason | None) -> None:
        """``batch`` was delivered (``reason`` None) or dropped; counted once."""
        with self._lock:
            if self.closed or batch.settled:
                return
            batch.settled = True
            for level, count in batch.levels.items():
                if reason is None:
                    self.tally.add(("delivered", level), count)
                else:
                    self.tally.add(("dropped", level, reason), count)
                if not batch.adopted:
                    self._held[level] -= count
                    if batch.durable:
                        self._durable[level] -= count
            if batch.adopted and reason is None:
                self.tally.add(("replayed", "spill"), sum(batch.levels.values()))

    def settle_entries(
        self, batch: Settleable, levels: Mapping[str, int], reason: DropReason
    ) -> None:
        """Entries of ``batch`` dropped one by one (too old by the time it was sent); the
        caller then takes them out of ``batch.levels``."""
        with self._lock:
            if self.closed or batch.settled:
                return
            for level, count in levels.items():
                self.tally.add(("dropped", level, reason), count)
                if not batch.adopted:
                    self._held[level] -= count
                    if batch.durable:
                        self._durable[level] -= count

    def close(self) -> None:
        """Settle everything still held (shutdown); later settlements are ignored."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for level, count in self._held.items():
                kept = self._durable[level]
                if count - kept > 0:
                    self.tally.add(("dropped", level, SHUTDOWN), count - kept)
                if kept > 0:
                    self.tally.add(("spilled", level), kept)
            self._held.clear()
            self._durable.clear()

    @property
    def held(self) -> int:
        """Records taken on and not yet settled (durable ones included)."""
        with self._lock:
            return sum(self._held.values())

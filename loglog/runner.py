"""One thread per sink, behind a bounded inbox, so sinks cannot hold each other up.

The worker offers every batch to every runner. A runner's inbox is bounded in records;
past ``capacity`` it sheds DEBUG/INFO and keeps WARNING+, past twice that it sheds all —
each shed record counted as dropped with reason ``sink_backlog``. A hung sink therefore
costs its own records only, with a count, and a bounded amount of memory.

Recursion is cut here: a record emitted on one of loglog's own threads (``internal``) goes
to local sinks only, and never to the sink whose thread emitted it; every record withheld
that way is counted with reason ``recursion``.

At shutdown, :meth:`SinkRunner.abandon` counts what the sink has not finished by the
deadline — its inbox, the batch inside ``write``, and for a sink with a ledger of its own
(Loki: a sender thread) everything that ledger still holds — as dropped (``shutdown``),
under the lock the runner counts its own outcomes with, so each record is counted once,
before ``shutdown()`` returns, whatever the sink's threads do later.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from .counters import Tally, WriterHistogram
from .errors import SinkStalled
from .ledger import Ledger
from .logger import Logger
from .types import WARNING, DropReason, Record, Sink, level_name

LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_TICK = 0.1
#: Pending inbox batches are merged up to this many records per write: a slow sink pays
#: its per-call cost (a request, a system call) once per merged batch, not per cycle.
MAX_BATCH = 5000
_WARN_EVERY = 10.0


def sink_name(sink: object) -> str:
    return str(getattr(sink, "name", "") or type(sink).__name__.lower())


class SinkRunner:
    """Runs ``sink.write`` on a thread named ``loglog-sink-<name>``."""

    def __init__(self, sink: Sink, *, capacity: int, flush_target: Callable[[], int]) -> None:
        self.sink = sink
        self.name = sink_name(sink)
        self.local = bool(getattr(sink, "local", False))
        self._tick: Callable[[bool], None] | None = getattr(sink, "tick", None)
        self._progress: Callable[[], tuple[int | None, int | None]] | None = getattr(
            sink, "progress", None
        )
        self._close: Callable[[float], None] | None = getattr(sink, "close", None)
        # A sink that hands records to a thread of its own counts them in its ledger.
        ledger = getattr(sink, "ledger", None)
        self._ledger: Ledger | None = ledger if isinstance(ledger, Ledger) else None
        self._abandoned = False  # shutdown counted what was left: count nothing more
        self.capacity = capacity
        self._flush_target = flush_target
        self._forced = -1
        self._inbox: deque[tuple[list[Record], int, int]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._deadline = 0.0
        self.tally = Tally()  # written by this runner's thread
        self.offer_tally = Tally()  # written by the worker thread
        self.latency = WriterHistogram(LATENCY_BUCKETS)
        self._processed = -1
        self._processed_cycle = -1
        self.done_cycle = -1  # the worker cycle whose batch this sink has finished
        self.restarts = 0
        self._writing: list[Record] = []  # the batch inside sink.write right now
        self.done_seq = -1
        self.durable_seq = -1
        self._log = Logger("loglog.sink", {"sink": self.name})
        self._warned = -_WARN_EVERY
        self._thread = threading.Thread(target=self._supervise, name=f"loglog-sink-{self.name}")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    # -- worker thread ------------------------------------------------------------------

    def offer(self, records: list[Record], upto: int, internal: bool, cycle: int = -1) -> None:
        """Queue a batch (may be empty: it still carries the ``upto`` and ``cycle``
        watermarks); ``internal`` says whether any record in it came from a loglog thread."""
        own = self._thread.ident
        kept = records
        if internal:
            kept = []
            for record in records:
                if record.internal and (not self.local or record.thread_id == own):
                    self.offer_tally.add(("dropped", record.levelname, DropReason.RECURSION))
                else:
                    kept.append(record)
        with self._cond:
            if self._abandoned:  # offered after shutdown's deadline (a late last cycle)
                for record in kept:
                    self.offer_tally.add(("dropped", record.levelname, DropReason.SHUTDOWN))
                return
            if kept and self._pending + len(kept) > self.capacity:
                kept = self._shed(kept)
            self._inbox.append((kept, upto, cycle))
            self._pending += len(kept)
            self._cond.notify()

    def _shed(self, records: list[Record]) -> list[Record]:
        keep_all_above = WARNING if self._pending < 2 * self.capacity else 10**9
        kept = []
        for record in records:
            if record.level >= keep_all_above:
                kept.append(record)
            else:
                self.offer_tally.add(("dropped", record.levelname, DropReason.SINK_BACKLOG))
        return kept

    # -- sink thread --------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run the loop; an exception outside ``sink.write`` (a bug, a hook) restarts it,
        counted as a restart, instead of ending delivery for this sink."""
        while True:
            try:
                self._run()
                return
            except Exception as exc:
                self.restarts += 1
                self.tally.add(("restart",))
                with self._cond:  # a batch taken and not counted: dropped, counted once
                    lost, self._writing = self._writing, []
                    if not self._abandoned:
                        self._count(lost, DropReason.SINK_ERROR)
                self._warn("sink thread failed; restarted it", exc)
                time.sleep(0.01)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._inbox and not self._stopping:
                    # Only a sink with a tick hook (batching by time) needs waking
                    # without records; the others sleep until offered a batch.
                    self._cond.wait(_TICK if self._tick is not None else None)
                item = self._take()
                finished = self._stopping and not self._inbox
            if item is not None:
                self._deliver(*item)
            self._maybe_tick()
            self._update_progress()
            if finished:
                break
        if self._close is not None:
            self._guard(self._close, max(0.0, self._deadline - time.monotonic()))
        self._update_progress()

    def _take(self) -> tuple[list[Record], int, int] | None:
        """Pop pending batches, merged up to MAX_BATCH records (lock held). From here on
        they are ``_writing`` (or held by the sink's ledger): what abandon() counts."""
        if not self._inbox:
            return None
        records, upto, cycle = self._inbox.popleft()
        if self._inbox and len(records) < MAX_BATCH:
            records = list(records)
            while self._inbox and len(records) + len(self._inbox[0][0]) <= MAX_BATCH:
                more, upto, cycle = self._inbox.popleft()
                records.extend(more)
        self._pending -= len(records)
        if self._ledger is not None:
            self._ledger.hold(records)
        else:
            self._writing = records
        return records, upto, cycle

    def _deliver(self, records: list[Record], upto: int, cycle: int) -> None:
        if records:
            started = time.perf_counter()
            delivered = len(records)
            dropped: tuple[list[Record], DropReason | str] | None = None
            try:
                self.sink.write(records)
            except SinkStalled as stall:
                delivered = max(0, min(stall.delivered, len(records)))
                dropped = (records[delivered:], stall.reason)
                if stall.reason != DropReason.SINK_TIMEOUT:
                    self.tally.add(("sink_error",))
                    self._warn("sink failed; the rest of its batch was dropped", stall)
            except Exception as exc:
                delivered = 0
                dropped = (records, DropReason.SINK_ERROR)
                self.tally.add(("sink_error",))
                self._warn("sink failed; its batch was dropped", exc)
            self.latency.observe(time.perf_counter() - started)
            with self._cond:  # abandon() takes it too: one of us counts this batch
                self._writing = []
                # A sink with a ledger counts each record there, as it settles; one with a
                # thread of its own (progress) counts what it delivers.
                if not self._abandoned and self._ledger is None:
                    if dropped is not None:
                        self._count(*dropped)
                    if self._progress is None:
                        sent = records if delivered == len(records) else records[:delivered]
                        for level, count in Counter([record.level for record in sent]).items():
                            self.tally.add(("delivered", level_name(level)), count)
        self._processed = upto
        self._processed_cycle = cycle

    def _maybe_tick(self) -> None:
        if self._tick is None:
            return
        target = self._flush_target()
        force = target > self._forced and target > self.done_seq
        if force:
            self._forced = target
        self._guard(self._tick, force)

    def _update_progress(self) -> None:
        processed = self._processed
        cycle = self._processed_cycle
        if self._progress is None:
            self.durable_seq = self.done_seq = processed
        else:
            try:
                durable, done = self._progress()
            except Exception:
                return
            self.durable_seq = processed if durable is None else min(processed, durable - 1)
            self.done_seq = processed if done is None else min(processed, done - 1)
        # Published after done_seq: flush() reads done_cycle first, then done_seq.
        self.done_cycle = cycle

    def _count(self, records: list[Record], reason: DropReason | str) -> None:
        for level, count in Counter([record.level for record in records]).items():
            self.tally.add(("dropped", level_name(level), reason), count)

    def _guard(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as exc:
            self.tally.add(("sink_error",))
            self._warn("sink hook failed", exc)

    def _warn(self, message: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            self._log.warning(message, error=f"{type(exc).__name__}: {exc}")

    # -- shutdown (caller of loglog.shutdown) -------------------------------------------

    def stop(self, deadline: float) -> None:
        """Ask the thread to finish its inbox, close the sink and exit by ``deadline``."""
        with self._cond:
            self._deadline = deadline
            self._stopping = True
            self._cond.notify()

    def join(self, deadline: float) -> bool:
        """Wait for the thread until ``deadline``; True when it ended."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def abandon(self, tally: Tally) -> None:
        """At shutdown's deadline: count everything this sink has not finished as dropped
        (``shutdown``) in ``tally`` — the inbox, the batch inside ``write`` (a hung or slow
        sink), what its ledger still holds (Loki's sender) — and nothing of it again."""
        with self._cond:
            if self._abandoned:
                return
            self._abandoned = True
            stuck = [self._writing, *(item[0] for item in self._inbox)]
            self._inbox.clear()
            self._pending = 0
            for records in stuck:
                for record in records:
                    tally.add(("dropped", record.levelname, DropReason.SHUTDOWN, self.name))
            if self._ledger is not None:
                self._ledger.close()

    @property
    def queued(self) -> int:
        return self._pending

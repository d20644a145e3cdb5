"""Everything one configuration runs: queues, worker, sink runners, spool and spill.

Built once by ``configure()`` (and again in a forked child); every decision — which
sinks, which capacities, whether WARNING+ is spooled — is taken here, so the hot path
only executes the closure :func:`loglog.core.make_emit` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import spool as spool_mod
from . import wakeup
from .batches import MemoryQueue, SpillQueue
from .config import LogConfig
from .core import LEVEL, MAX_TIME_NS, SLOT, CallerStats, Emit, RawRecord, make_emit, wake
from .counters import AtomicCounter, Tally, TallyKey, merge
from .format import render_fields
from .ownership import Owner, owner_of, quarantine
from .runner import SinkRunner
from .sinks.console import ConsoleSink
from .sinks.file import FileSink
from .stats import SpoolStats, Stats
from .stderr import stderr_line
from .tracing import context_getter
from .types import WARNING, DropReason, Record, Sink, level_name
from .worker import Worker

#: How long past shutdown's deadline the worker's last cycle may take (it calls no user
#: code then; a few milliseconds unless the host starves it of CPU).
_WORKER_GRACE = 1.0


class CallableSink:
    """Adapts a plain function ``f(records)`` to the :class:`~loglog.types.Sink` protocol."""

    def __init__(self, function: Callable[[Sequence[Record]], Any]) -> None:
        self._function = function
        self.name = getattr(function, "__name__", "callable").strip("<>").lower()

    def write(self, records: Sequence[Record]) -> None:
        self._function(records)


def normalise_sink(sink: object) -> Sink:
    """Accept a :class:`Sink` or any callable taking a sequence of records."""
    if callable(getattr(sink, "write", None)):
        return sink  # type: ignore[return-value]
    if callable(sink):
        return CallableSink(sink)
    raise TypeError(f"a sink needs a write(records) method or must be callable, got {sink!r}")


class Pipeline:
    """One running configuration. Not reused: ``configure()`` builds a new one."""

    def __init__(
        self, config: LogConfig, *, extra_sinks: Iterable[object] = (), adopt: bool = True
    ) -> None:
        self.config = config
        self.extra_sinks = tuple(extra_sinks)
        self.low: deque[RawRecord] = deque()
        self.high: deque[RawRecord] = deque()
        self.seq = AtomicCounter()
        self.caller = CallerStats()
        self.shutdown_tally = Tally()
        self.idle = [False]  # set by the worker while it sleeps long; read by log calls
        self.owner: Owner | None = None
        self.spool: spool_mod.Spool | None = None
        self.spool_error = ""  # why there is no crash spool despite a spill_dir
        self.replayed_spool = 0
        self.recovery = Tally()  # records lost before this process started, by reason
        dead: set[str] = set()
        replay: list[tuple[Record, int]] = []
        if config.spill_dir:
            self.owner = Owner(config.spill_dir)
            if adopt:
                dead = self.owner.dead_owners(_referenced_owners(self.owner.directory))
            try:
                self.spool = spool_mod.Spool(self.owner, slots=config.spool_slots)
            except OSError as exc:
                # A full or read-only disk: run without crash protection, and say so once.
                self.spool_error = f"{errno.errorcode.get(exc.errno or 0, 'OSError')}: {exc}"
                stderr_line(
                    f"loglog: crash spool unavailable in {config.spill_dir} "
                    f"({self.spool_error}); WARNING+ records are not protected against "
                    "a crash until the next configure() with room on that disk\n"
                )
            replay = self._recover_spools(dead)
        try:
            self.sinks: list[Sink] = [*self._builtin_sinks(config, dead)]
        except BaseException:
            # A sink that cannot open (a read-only file path): give the directory back.
            if self.spool is not None:
                self.spool.close()
            if self.owner is not None:
                self.owner.close()
            raise
        self.sinks += [normalise_sink(sink) for sink in self.extra_sinks]
        self._flush_target = -1
        self.runners = [
            SinkRunner(sink, capacity=config.capacity, flush_target=self._get_flush_target)
            for sink in self.sinks
        ]
        # Taken last, when nothing can fail any more; never closed (loglog/wakeup.py).
        self._pipe = wakeup.take()
        self.worker = Worker(
            low=self.low,
            high=self.high,
            seq=self.seq,
            runners=self.runners,
            spool=self.spool,
            pipe=self._pipe,
            poll_interval=config.poll_interval,
            replay=replay,
            idle=self.idle,
            render_timeout=config.render_timeout,
            on_exit=self._give_back_pipe,
        )
        self.emit: Emit = make_emit(
            low=self.low,
            high=self.high,
            low_capacity=config.capacity,
            high_capacity=config.high_capacity,
            seq=self.seq,
            stats=self.caller,
            context_get=context_getter(),
            wake_fd=self._pipe.write,
            spool=self.spool,
            idle=self.idle,
        )

    def _builtin_sinks(self, config: LogConfig, dead: set[str]) -> list[Sink]:
        sinks: list[Sink] = []
        if config.console:
            sinks.append(
                ConsoleSink(
                    stream=config.console_stream,
                    fmt=config.console,
                    color=config.color,
                    write_timeout=config.console_write_timeout,
                )
            )
        if config.file:
            sinks.append(
                FileSink(
                    config.file,
                    fmt=config.file_format,
                    max_bytes=config.file_max_bytes,
                    backups=config.file_backups,
                )
            )
        if config.loki_url:
            from .sinks.loki import LokiSink

            queue: MemoryQueue | SpillQueue
            if self.owner is not None:
                queue = SpillQueue(self.owner, "loki", config.spill_max_bytes, dead)
                for level, count in queue.corrupt.items():
                    self.recovery.add(("dropped", level, DropReason.CORRUPT), count)
            else:
                queue = MemoryQueue(config.loki_buffer_bytes)
            sinks.append(LokiSink(config, queue))
        if config.otlp_endpoint or os.environ.get("OTEL_LOGS_EXPORTER", "").lower() == "otlp":
            from .sinks.otlp import OtlpSink

            sinks.append(OtlpSink(config.otlp_endpoint))
        return sinks

    def _recover_spools(self, dead: set[str]) -> list[tuple[Record, int]]:
        """Records that dead processes spooled but never delivered, re-protected by ours.

        Each file is first claimed by renaming it to our owner id (atomic: of two processes
        starting together, one gets it), read once and validated slot by slot, then removed,
        or moved to ``corrupt/`` when anything in it was invalid. Never raises.
        """
        assert self.owner is not None
        directory = self.owner.directory
        replay: list[tuple[Record, int]] = []
        for path in sorted(directory.glob("*.spool")):
            if owner_of(path.name) not in dead:
                continue
            stamp, _, rest = path.name.partition("-")
            claimed = directory / f"{stamp}-{self.owner.id}-{rest.rsplit('-', 1)[-1]}"
            try:
                os.rename(path, claimed)
                recovered = spool_mod.recover(claimed)
            except OSError:
                continue  # another process claimed it first, or it vanished
            for level, count in recovered.corrupt.items():
                self.recovery.add(("dropped", level, DropReason.CORRUPT), count)
            if recovered.lost_in_crash:
                self.recovery.add(
                    ("dropped", "warning", DropReason.LOST_IN_CRASH), recovered.lost_in_crash
                )
            for doc in recovered.docs:
                seq = self.seq.inc()
                token = self.spool.write_doc(doc) if self.spool is not None else -1
                replay.append((_record_from_doc(seq, doc), token))
            if recovered.intact:
                with contextlib.suppress(OSError):
                    claimed.unlink()
            else:
                quarantine(claimed, directory)
        self.replayed_spool = len(replay)
        return replay

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for runner in self.runners:
            runner.start()
        self.worker.start()

    def _get_flush_target(self) -> int:
        return self._flush_target

    def flush(self, timeout: float) -> bool:
        """Wait until every record whose log call returned before this call is delivered
        or counted as dropped.

        Exact because it waits for a worker cycle that *started* after this call (so it
        took every such record from the queues), then for every sink to finish the last
        batch offered by then and to have nothing older pending.
        """
        if threading.current_thread().name.startswith("loglog-"):
            return False  # a sink flushing from its own thread would wait on itself
        target = self.seq.value - 1
        cycle = self.worker.cycles
        self._flush_target = max(self._flush_target, target)
        ours = wakeup.wake_if_ours(self._pipe)
        deadline = time.monotonic() + timeout
        pause = 0.0005
        offered = -2
        while True:
            if offered == -2 and self.worker.cycle_done >= cycle:
                offered = self.worker.offered_cycle
            if offered != -2 and all(
                runner.done_cycle >= offered and runner.done_seq >= target
                for runner in self.runners
            ):
                return True
            if time.monotonic() >= deadline:
                return False
            # Polling, not a Condition: flush may be called from anywhere (a signal handler
            # included) and must not take a lock a sink thread could be holding.
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
            if offered == -2 and ours:
                wake(self._pipe.write)

    def close(self, timeout: float) -> bool:
        """Flush, stop every thread and close every sink, all within ``timeout`` seconds.

        When it returns, every record is counted: delivered, dropped with a reason
        (``shutdown`` for what a sink had not finished by the deadline, counted here and
        never again), or spilled. The one exception is a worker thread that has not ended
        its last cycle by then (it calls no user code at this point, so it only takes
        longer when starved of CPU): it may offer records later, counted as they come.
        """
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        self.worker.renderer.stop()  # the last cycle waits on no user code
        # The worker never waits on a sink: its last cycle gets a moment past the deadline
        # (it only hands records over), so that they are counted before we return.
        self.worker.stop(max(deadline, time.monotonic() + _WORKER_GRACE))
        for runner in self.runners:
            runner.stop(deadline)
        joined = all([runner.join(deadline) for runner in self.runners])
        for runner in self.runners:
            runner.abandon(self.shutdown_tally)  # the rest, counted once (loglog/runner.py)
        self.worker.release_now()
        if self.spool is not None:
            self.spool.close()
        if self.owner is not None:
            self.owner.close()
        return flushed and joined

    def stragglers(self) -> list[RawRecord]:
        """Records queued after the worker's last cycle — by a caller that still held this
        pipeline's emit while ``configure()``/``shutdown()`` replaced it (a preempted thread,
        a finalizer that reconfigured in the middle of a log call). Taken only once the
        worker has ended, so nobody else reads these queues any more; each is taken once,
        whoever else sweeps at the same time (a signal handler's flush()).

        A record already in the crash spool (WARNING+ with a slot) is taken off the queue
        but not returned: its spool file outlives this pipeline unreleased, and the next
        start on the directory replays it once — handing it on as well would deliver it
        twice.
        """
        if self.worker.alive:
            return []
        taken: list[RawRecord] = []
        for queue in (self.high, self.low):
            while True:
                try:
                    raw = queue.popleft()
                except IndexError:
                    break
                if raw[SLOT] < 0:
                    taken.append(raw)
        return taken

    def adopt(self, raws: list[RawRecord]) -> None:
        """Queue a replaced pipeline's stragglers here, as they were logged (time, thread,
        trace context), with this pipeline's sequence numbers and counts."""
        for raw in raws:
            level = raw[LEVEL]
            self.caller.emitted.by_number[level].inc()
            queue = self.high if level >= WARNING else self.low
            queue.append((self.seq.inc(), *raw[1:SLOT], -1))
        if raws:
            wakeup.wake_if_ours(self._pipe)

    def count_stragglers(self, raws: list[RawRecord]) -> None:
        """Count, in this pipeline's figures, records no pipeline will deliver any more."""
        for raw in raws:
            self.shutdown_tally.add(("dropped", level_name(raw[LEVEL]), DropReason.SHUTDOWN, "all"))

    def _give_back_pipe(self) -> None:
        # Called by the worker thread as it exits — never earlier, since until then it may
        # read the pipe; a pipe closed under us (os.closerange) is never handed out again.
        if wakeup.intact(self._pipe):
            wakeup.give_back(self._pipe)

    def abandon(self) -> None:
        """In a forked child: let go of the parent's files without touching its threads.

        Only descriptors are closed; no lock is taken, because a parent thread may have held
        any of them at the moment of the fork.
        """
        for sink in self.sinks:
            abandon = getattr(sink, "abandon", None)
            if callable(abandon):
                with contextlib.suppress(Exception):
                    abandon()
        if self.spool is not None:
            self.spool.abandon()
        if self.owner is not None:
            self.owner.abandon()

    # -- accounting -------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Every count loglog keeps; the numbers behind its metrics (see :class:`Stats`).

        ``dropped`` is keyed by ``(sink, level, reason)``; sink ``"all"`` means the record
        never reached any sink (the caller-side queue was full). ``spilled`` counts, by
        ``(sink, level)``, records left on disk at shutdown for the next process to ship.
        """
        tables = _Tables()
        tables.replayed["spool"] = self.replayed_spool
        tables.replayed["spill"] = 0
        for level, count in self.caller.queue_full.values().items():
            if count:
                tables.dropped[("all", level, DropReason.QUEUE_FULL)] = count
        for key, count in self.recovery.snapshot().items():  # ("dropped", level, reason)
            tables.add_dropped(("all", key[1], key[2]), count)
        for runner in self.runners:
            tallies = [runner.tally, runner.offer_tally, *getattr(runner.sink, "tallies", ())]
            for key, count in merge(tallies).items():
                tables.file(key, runner.name, count)
        for key, count in self.shutdown_tally.snapshot().items():  # (…, reason, sink)
            tables.add_dropped((key[3], key[1], key[2]), count)
        spool = self.spool
        return Stats(
            emitted=self.caller.emitted.values(),
            dropped=tables.dropped,
            delivered=tables.delivered,
            spilled=tables.spilled,
            sink_errors=tables.errors,
            truncated=tables.truncated,
            replayed=tables.replayed,
            queued=len(self.low) + len(self.high),
            capacity=self.config.capacity + self.config.high_capacity,
            internal_errors=self.caller.internal_errors.value + self.worker.errors.value,
            sink_restarts=tables.restarts,
            render_timeouts=self.worker.renderer.timeouts.value,
            spool_overwritten=spool.overwritten.value if spool is not None else 0,
            spool=SpoolStats(
                enabled=spool is not None,
                slots=spool.slots if spool is not None else 0,
                error=self.spool_error,
            ),
            spill_bytes=sum(
                queue.nbytes
                for queue in (getattr(sink, "queue", None) for sink in self.sinks)
                if isinstance(queue, SpillQueue)
            ),
            latency={runner.name: runner.latency for runner in self.runners},
        )


@dataclasses.dataclass
class _Tables:
    """The tables of :meth:`Pipeline.stats`, filled from the tallies' keys."""

    dropped: dict[tuple[str, str, DropReason | str], int] = dataclasses.field(default_factory=dict)
    delivered: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    spilled: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    truncated: dict[str, int] = dataclasses.field(default_factory=dict)
    replayed: dict[str, int] = dataclasses.field(default_factory=dict)
    restarts: dict[str, int] = dataclasses.field(default_factory=dict)

    def add_dropped(self, key: tuple[str, str, DropReason | str], count: int) -> None:
        self.dropped[key] = self.dropped.get(key, 0) + count

    def file(self, key: TallyKey, sink: str, count: int) -> None:
        """Sort one entry of ``sink``'s tallies into its table."""
        kind = key[0]
        if kind == "dropped":  # ("dropped", level, reason)
            self.add_dropped((sink, key[1], key[2]), count)
        elif kind == "delivered":  # ("delivered", level)
            self.delivered[(sink, key[1])] = self.delivered.get((sink, key[1]), 0) + count
        elif kind == "spilled":  # ("spilled", level)
            self.spilled[(sink, key[1])] = count
        elif kind == "sink_error":
            self.errors[sink] = self.errors.get(sink, 0) + count
        elif kind == "truncated":
            self.truncated[sink] = self.truncated.get(sink, 0) + count
        elif kind == "replayed":  # ("replayed", source)
            self.replayed[key[1]] = self.replayed.get(key[1], 0) + count
        elif kind == "restart":
            self.restarts[sink] = self.restarts.get(sink, 0) + count


def _referenced_owners(directory: Path) -> set[str]:
    names = [p.name for p in directory.glob("*.spool")]
    loki = directory / "loki"
    if loki.is_dir():
        names += [p.name for p in loki.iterdir()]
    return {owner for owner in map(owner_of, names) if owner}


def _record_from_doc(seq: int, doc: dict[str, Any]) -> Record:
    stamp = int(doc.get("t", 0))
    if not 0 <= stamp <= MAX_TIME_NS:  # a damaged or foreign spool: no sink could write it
        stamp = time.time_ns()
    return Record(
        seq=seq,
        time_ns=stamp,
        level=int(doc.get("l", 30)),
        logger=str(doc.get("n", "")),
        message=str(doc.get("m", "")),
        # Through the renderer: a damaged or foreign spool may hold NaN or huge ints.
        fields=render_fields(dict(doc.get("f") or {}), safe=True),
        trace_id=doc.get("tr"),
        span_id=doc.get("sp"),
        thread=str(doc.get("th", "")),
        exc_text=doc.get("x"),
        replayed=True,
    )

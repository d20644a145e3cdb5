"""The decode processes of one runtime: where streams go, what the ledgers see of them.

:class:`DecodePool` starts up to ``processes`` decode processes, lazily — the first
stream starts the first one — and gives each new stream to a new process while there
are fewer than ``processes``, then to the least loaded. It plugs into the runtime at
three points only:

- :meth:`open` returns a :class:`~.remote.RemoteSource` for the stream manager;
- the decode and preprocess ledgers get a ``remote`` reader of the calls in progress in
  every process (so a hung decoder is seen, and named stalled, while it hangs);
- the drills on decode and preprocess are mirrored into a shared board.

It exports ``inference_decode_processes``, ``inference_decode_process_restarts_total``
and, at scrape time, each process's heartbeat age.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..media.sources import SourceSpec
from ..metrics import METRICS, RuntimeMetrics
from ..types import REMOTE_STAGES
from .drills import DrillBoard
from .plan import FeedPlan
from .process import DecodeProcess
from .remote import RemoteSource
from .shm import Layout

#: Bytes of tensors in flight per process, at most (the ring's slots take this much).
RING_BYTES = 64 * 1024 * 1024
MAX_SLOTS = 32


class DecodePool:
    """Decode processes for one pipeline; see the module docstring."""

    def __init__(
        self,
        *,
        plan: FeedPlan,
        pipeline: Any,
        metrics: RuntimeMetrics,
        drills: Any,
        buffer: int,
        rows: int,
        claims_dir: str | None,
        log: Any,
        log_level: int = 20,
    ) -> None:
        self.plan = plan
        self.processes = plan.processes
        self.pipeline = pipeline
        self.metrics = metrics
        self.buffer = buffer
        self.log = log
        self.log_level = log_level
        self.claims_dir = claims_dir
        info = pipeline.info
        self.info_dict = dataclasses.asdict(info)
        slot_bytes = Layout(1, 1, info.input_shape, info.input_dtype).slot_bytes
        slots = max(4, min(MAX_SLOTS, RING_BYTES // slot_bytes))
        self.layout = Layout(rows, slots, tuple(info.input_shape), info.input_dtype)
        # Worker times are CLOCK_MONOTONIC; the ledgers run on the pipeline's clock. The
        # offset is read monotonic first, so it never makes a finished call look earlier
        # than a snapshot that saw it running (busy must never go backwards).
        mono = time.monotonic()
        self._offset = pipeline.clock() - mono
        self.board = DrillBoard.create()
        drills.subscribe(self.board.mirror(drills))
        self._procs: list[DecodeProcess] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._running = metrics.decode_processes
        self._running.set(0)
        self._restarts = metrics.decode_process_restarts_total
        for stage, name in enumerate(REMOTE_STAGES):
            pipeline.stages[name].ledger.remote = self._unreported(stage)
        pipeline.remote_streams = self.streams_running
        pipeline.decode_processes = self.processes_running
        self._collector = _HeartbeatCollector(self)
        metrics.registry.register(self._collector)

    def to_clock(self, ns: int) -> float:
        """A worker's CLOCK_MONOTONIC nanoseconds on the pipeline's clock."""
        return ns / 1e9 + self._offset

    # -- streams ------------------------------------------------------------------------

    def open(self, spec: SourceSpec, stream_id: str) -> RemoteSource:
        """Open ``spec`` in a decode process; raises SourceError as a thread would."""
        with self._lock:
            if self._stopped:
                from ..errors import SourceError

                raise SourceError("the server is stopping")
            process = self._choose()
            source = RemoteSource(process, spec, stream_id, self.buffer)
            process.open(source)
        source.wait_opened()
        return source

    def _choose(self) -> DecodeProcess:
        idle = [p for p in self._procs if p.load() == 0]
        if idle:
            return idle[0]
        if len(self._procs) < self.processes:
            process = DecodeProcess(len(self._procs), self)
            self._procs.append(process)
            self._running.set(len(self._procs))
            return process
        return min(self._procs, key=lambda p: p.load())

    # -- what the ledgers and the monitor read ------------------------------------------

    def _unreported(self, stage: int) -> Any:
        def remote(now: float) -> Iterator[tuple[float, float | None]]:
            to_clock = self.to_clock
            for process in list(self._procs):
                for _, started, ended in process.unreported(stage):
                    yield to_clock(started), (to_clock(ended) if ended else None)

        return remote

    def streams_running(self) -> int:
        """Streams the decode processes hold now."""
        return sum(process.load() for process in list(self._procs))

    def processes_running(self) -> int:
        """Decode processes started (what ``inference_decode_processes`` exports)."""
        return len(self._procs)

    def heartbeats(self) -> list[tuple[int, float | None]]:
        if self._stopped:
            return []
        return [(p.index, p.heartbeat_age()) for p in list(self._procs)]

    def pids(self) -> list[int]:
        """The decode processes' pids now (tests, tools)."""
        return [p.life.pid for p in list(self._procs)]

    # -- lifecycle ----------------------------------------------------------------------

    def count_death(self, index: int, pid: int, said: str, why: str, *, restarted: bool) -> None:
        if restarted:
            self._restarts.inc()
        if self.log is not None:
            self.log.error(
                "decode process died" + ("; restarting it" if restarted else "; not restarted"),
                process=index, pid=pid, exit=said, detail=why,
            )  # fmt: skip

    def relay_log(self, index: int, pid: int, body: dict[str, Any]) -> None:
        """A record logged in a decode process, logged again here (to this process's sinks)."""
        if self.log is None:
            return
        from loglog import get_logger

        fields = body.get("fields") or {}
        fields = {**fields, "decode_process": index, "pid": pid} if isinstance(fields, dict) else {}
        logger = get_logger(str(body.get("logger") or "inference.feed"))
        level = body.get("level")
        logger.log(level if isinstance(level, int) else 40, str(body.get("message", "")), **fields)

    def stop(self) -> None:
        """End every decode process (each gets 2 s to finish, then SIGKILL)."""
        with self._lock:
            self._stopped = True
            processes = list(self._procs)
        for process in processes:
            process.stop()
        self._running.set(0)
        for name in REMOTE_STAGES:
            self.pipeline.stages[name].ledger.remote = None
        self.pipeline.remote_streams = lambda: 0
        self.pipeline.decode_processes = lambda: 0
        self.board.close()


class _HeartbeatCollector(Collector):
    """``inference_decode_process_heartbeat_age_seconds{process}``, read when scraped."""

    NAME = "inference_decode_process_heartbeat_age_seconds"

    def __init__(self, pool: DecodePool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, METRICS[self.NAME][2], labels=METRICS[self.NAME][1])
        for index, age in self._pool.heartbeats():
            if age is not None:
                family.add_metric([str(index)], age)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())

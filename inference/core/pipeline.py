"""The pipeline: one stage loop per worker, stages joined by bounded queues, all measured.

The stages come from :data:`inference.types.PIPELINE`; each is built once into a
:class:`_Stage` (its input, its callable, its metric children, its ledger). Every worker of
every stage runs the same loop, :meth:`Pipeline.run_stage`::

    take from the input (queue, batcher, or a stream's source) → enter the ledger → drill
    → call → read clock → leave the ledger and observe → forward (or finish)

A stream's source thread runs the same loop for the decode stage (take = read the next
packet, call = decode it, forward = the stream's mailbox): see :meth:`Pipeline.source_stage`.

The ledger knows what is in progress at any moment (see :mod:`inference.analysis.stats`), so a stage
stuck on an item is visible *while* it is stuck. A drill's delay is inside the timed
region, so it looks exactly like a slow stage; its seconds are also counted apart, so the
engine's own speed excludes it. An item that fails in a stage leaves the pipeline there,
counted as an error; the others carry on. What a call did and how an item ended are
counted by :mod:`inference.core.accounting`. The clock is a parameter: tests drive the
whole pipeline with a fake one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from loglog.counters import AtomicCounter

from ..analysis.calibration import Calibration
from ..analysis.stats import StageLedger
from ..analysis.tracing import Tracing
from ..metrics import RuntimeMetrics, ScrapeCollector
from ..tuning.affinity import CorePlan, pin_current_thread
from ..types import (
    ENGINE_STAGE,
    NEXT,
    PIPELINE,
    REMOTE_STAGES,
    SOURCE_STAGE,
    STAGES,
    Engine,
    Item,
    Stage,
    StageSpec,
)
from .accounting import Accounting
from .batching import Batcher
from .drills import Drills
from .queues import StageQueue, one_from
from .stages import Encode, Postprocess, Preprocess, StageKit

#: Where an item that needs no decoding enters (a stream's frame, a tensor).
FIRST_AFTER_DECODE: str = NEXT[SOURCE_STAGE] or SOURCE_STAGE
#: Where an item that a decode process ran every remote stage on already enters.
FIRST_AFTER_PREPROCESS: str = NEXT[REMOTE_STAGES[-1]] or REMOTE_STAGES[-1]


@dataclasses.dataclass(eq=False)
class _Stage:
    """One stage, resolved once: input, callable, metric children, ledger."""

    spec: StageSpec
    call: Stage
    take: Callable[[], list[Item]]
    ledger: StageLedger
    duration: Any  # Histogram child
    items: Any  # Counter child
    errors: Any  # Counter child
    workers: Any  # Gauge child
    #: Where an item the call finished goes (the next queue; the end for the last stage).
    forward: Callable[[Item], None]
    #: Where an item that failed goes (the end of its road, counted as an error).
    fail: Callable[[Item], None]
    #: The engine's stage: calibrated seconds for a batch of n (engine efficiency).
    expected: Callable[[int], float] | None = None
    #: Run by a source's own thread (a stream), not by a worker of the stage's queue.
    sourced: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stats(self) -> StageLedger:
        """The stage's ledger (kept under this name for tools reading snapshots)."""
        return self.ledger


class Pipeline:
    """Stage workers, queues and the batcher around one engine."""

    def __init__(
        self,
        *,
        engine: Engine,
        calibration: Calibration,
        metrics: RuntimeMetrics,
        tracing: Tracing,
        drills: Drills,
        encode: Encode,
        max_batch: int,
        max_wait: float,
        queue_capacity: int,
        top_k: int = 5,
        log: Any = None,
        instrumented: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        deadline_clock: Callable[[], float] = time.monotonic,
        cores: CorePlan | None = None,
    ) -> None:
        self.engine = engine
        self.cores = cores
        self.info = engine.describe()
        self.calibration = calibration
        self.metrics = metrics
        self.tracing = tracing
        self.drills = drills
        self.log = log
        self.instrumented = instrumented
        self.clock = clock
        #: The clock of requests' deadlines (the queues drop late ones on it).
        self.deadline_clock = deadline_clock
        self.queues = {
            name: StageQueue(
                name, queue_capacity, metrics, instrumented=instrumented, clock=deadline_clock
            )
            for name in STAGES
        }
        #: What each call did and how each item ended: ledgers, metrics, spans, callers.
        self.accounting = accounting = Accounting(
            metrics, tracing, log=log, instrumented=instrumented
        )
        for queue in self.queues.values():
            queue.on_expired = accounting.expired
        #: Frames the streams' sources decoded, dropped later or not: what the streams ask
        #: of the pipeline (admission takes their rate out of HTTP's, as they go first).
        self.frames_in = AtomicCounter()
        self.keep_images: set[str] = set()  # streams whose frames are re-encoded
        self.preprocess = Preprocess(self.info, keep_images=self.keep_images)
        self.postprocess = Postprocess(self.info, top_k=top_k)
        self.encode = encode
        self.batcher = Batcher(
            self.queues[ENGINE_STAGE],
            max_batch=self.clamp_batch(max_batch),
            max_wait=max_wait,
            metrics=metrics,
            instrumented=instrumented,
        )
        flops = calibration.flops_per_item or 0
        flops_total = metrics.model_flops_total.labels(self.info.name)
        count_flops = (lambda ok: flops_total.inc(flops * ok)) if flops and instrumented else None
        kit = StageKit(engine, self.preprocess, self.postprocess, encode, count_flops)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.stages: dict[str, _Stage] = {}
        for spec in PIPELINE:
            after = NEXT[spec.name]
            self.stages[spec.name] = _Stage(
                spec=spec,
                call=spec.factory(kit),
                take=(
                    self.batcher.next_batch if spec.batched else one_from(self.queues[spec.name])
                ),
                ledger=StageLedger(clock),
                duration=metrics.stage_duration_seconds.labels(spec.name),
                items=metrics.stage_items_total.labels(spec.name),
                errors=metrics.stage_errors_total.labels(spec.name),
                workers=metrics.stage_workers.labels(spec.name),
                forward=self._forward_to(self.queues[after]) if after else accounting.finish,
                fail=accounting.finish,
                expected=calibration.latency if spec.batched else None,
            )
            self.stages[spec.name].workers.set(0)
        self.meters = self.stages  # the name tools and benchmarks used before
        #: The HTTP bodies' decode callable (its ``calls`` count the bodies it decoded).
        self.decode = self.stages[SOURCE_STAGE].call
        self._workers: dict[str, list[threading.Event]] = {stage: [] for stage in STAGES}
        #: stage → source threads running it now (streams decoding here).
        self._sourced: dict[str, int] = dict.fromkeys(STAGES, 0)
        #: Streams decoded and preprocessed in decode processes now (set by the feed).
        self.remote_streams: Callable[[], int] = lambda: 0
        #: Decode processes running for streams (set by inference/feed's pool).
        self.decode_processes: Callable[[], int] = lambda: 0
        self.completed = accounting.completed  # items out of the pipeline, in every mode
        if instrumented:
            metrics.registry.register(
                ScrapeCollector(
                    {name: stage.ledger for name, stage in self.stages.items()},
                    accounting.request_ages,
                    clock=clock,
                )
            )

    def clamp_batch(self, max_batch: int) -> int:
        """An engine built for a fixed maximum batch caps the batcher."""
        return self.info.batch_limit(max_batch)

    # -- control ------------------------------------------------------------------------

    def set_workers(self, stage: str, count: int) -> None:
        """Grow or shrink a stage's worker threads (a config reload may call this)."""
        with self._lock:
            stops = self._workers[stage]
            while len(stops) < count:
                stop = threading.Event()
                thread = threading.Thread(
                    target=self.run_stage,
                    args=(self.stages[stage], stop),
                    name=f"{stage}-{len(stops)}",
                    daemon=True,
                )
                stops.append(stop)
                self._threads.append(thread)
                thread.start()
            while len(stops) > count:
                stops.pop().set()  # that worker exits after its current item
            if self.stages[stage].spec.batched and count > 1 and self.cores is not None:
                self._unpin_infer()
            self._set_worker_gauge(stage)

    def _unpin_infer(self) -> None:
        """Several infer workers on the engine's one core would only take turns: give
        every infer thread all cores back (the new ones do it themselves)."""
        assert self.cores is not None
        for thread in self._threads:
            if thread.name.startswith(f"{ENGINE_STAGE}-") and thread.native_id is not None:
                pin_current_thread(self.cores.every, thread.native_id)

    def workers(self, stage: str) -> int:
        """Worker threads of ``stage``'s queue (not the sources running it)."""
        return len(self._workers[stage])

    def sourced(self, stage: str) -> int:
        """Source threads running ``stage`` now (streams decoding here)."""
        return self._sourced[stage]

    def _set_worker_gauge(self, stage: str) -> None:
        sources = self._sourced[stage]
        # Idle queue workers must not dilute the sources' utilization; the monitor adds
        # them back while their queue has work.
        self.stages[stage].workers.set(sources or len(self._workers[stage]))

    def source_stage(
        self,
        take: Callable[[], list[Item]],
        call: Stage,
        forward: Callable[[Item], None],
        fail: Callable[[Item], None],
    ) -> _Stage:
        """The stage that sources run (decode), for one source's own thread to pass to
        :meth:`run_stage`: ``take`` reads its next packet, ``call`` decodes it into
        frames, ``forward`` takes each frame on (every one counts in ``frames_in``),
        ``fail`` ends the source with a failed call's error. The ledger and metric
        children are the stage's: a stream's decode is timed, drilled and seen in
        progress exactly like an HTTP body's."""
        frames_in = self.frames_in.inc

        def counted(item: Item) -> None:
            frames_in()
            forward(item)

        return dataclasses.replace(
            self.stages[SOURCE_STAGE], take=take, call=call, forward=counted, fail=fail,
            sourced=True,
        )  # fmt: skip

    def submit(self, item: Item, timeout: float | None = None, kind: str = "frame") -> bool:
        """Hand an item to the pipeline, blocking while its first queue is full: an HTTP
        body (``item.payload``) enters at decode, a decoded frame or tensor after it."""
        self.tracing.start(item, kind)
        if item.tensor is not None:
            item.tensor = self.preprocess.check(item.tensor)
        if item.payload is not None:
            first = SOURCE_STAGE
        elif REMOTE_STAGES[-1] in item.stage_ms:  # a decode process ran it already
            first = FIRST_AFTER_PREPROCESS
        else:
            first = FIRST_AFTER_DECODE
        inflight = self.accounting.inflight
        if self.instrumented:
            inflight[id(item)] = item.created
        if self.queues[first].put(item, timeout):
            return True
        inflight.pop(id(item), None)
        return False

    def account_remote(
        self,
        name: str,
        item: Item,
        started: float,
        ended: float,
        drilled: float,
        then: Callable[[], object] | None = None,
    ) -> None:
        """A call of stage ``name`` on ``item`` ran in a decode process from ``started``
        to ``ended`` (this pipeline's clock): account it as if it had run here. ``then``
        runs under the stage ledger's lock (see StageLedger.add_call)."""
        self.accounting.remote(self.stages[name], item, started, ended, drilled, then)

    def fail(self, item: Item) -> None:
        """End ``item`` here with its error (it failed before entering the queues)."""
        self.accounting.finish(item)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker and fail what is still queued (an HTTP caller gets an error)."""
        self._stopping.set()
        with self._lock:
            for stops in self._workers.values():
                for stop in stops:
                    stop.set()
        for queue in self.queues.values():
            queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for queue in self.queues.values():
            for item in queue.drain():
                self.accounting.abandon(item)
        self.encode.close()

    # -- the stage loop ------------------------------------------------------------------

    def run_stage(self, stage: _Stage, stop: threading.Event) -> None:
        """The loop every worker of every stage, and every stream's source thread, runs
        until ``stop`` is set. A call returns the items it made (a packet may decode into
        no frame, or several); they go on, or end here with their error."""
        take, call, name = stage.take, stage.call, stage.name
        if self.cores is not None and not stage.sourced:
            why = pin_current_thread(self.cores.for_stage(name, len(self._workers[ENGINE_STAGE])))
            if why is not None and self.log is not None:
                self.log.warning("a stage thread could not be pinned", stage=name, reason=why)
        enter = stage.ledger.enter if self.instrumented else _enter_nothing
        observe = self.accounting.observe
        clock, pause, forward, fail = self.clock, self.drills.pause, stage.forward, stage.fail
        drill = stage.spec.drill
        with self._source_of(stage):
            while not stop.is_set():
                batch = take()
                if not batch:
                    continue
                token, _ = enter(len(batch))
                drilled = 0.0
                try:
                    if drill:  # per item: a drill makes a real bottleneck
                        drilled = pause(name, len(batch))
                    done = call(batch)
                except Exception as exc:
                    for item in batch:
                        item.error = exc
                    done = batch
                observe(stage, done, token, clock(), drilled)
                for item in done:
                    if item.error is not None:
                        fail(item)
                    else:
                        forward(item)

    @contextlib.contextmanager
    def _source_of(self, stage: _Stage) -> Iterator[None]:
        """While a source's thread runs ``stage``, it counts as one of its workers."""
        if not stage.sourced:
            yield
            return
        with self._lock:
            self._sourced[stage.name] += 1
            self._set_worker_gauge(stage.name)
        try:
            yield
        finally:
            with self._lock:
                self._sourced[stage.name] -= 1
                self._set_worker_gauge(stage.name)

    def _forward_to(self, target: StageQueue) -> Callable[[Item], None]:
        """An item's way into ``target``: wait while it is full, give up at shutdown."""
        put, stopping, abandon = target.put, self._stopping, self.accounting.abandon

        def forward(item: Item) -> None:
            while not put(item, timeout=0.5):
                if stopping.is_set():
                    abandon(item)
                    return

        return forward


def _enter_nothing(items: int) -> tuple[int, float]:
    return 0, 0.0

"""The pipeline: stage workers joined by bounded queues, with every stage measured.

Running a stage is "read clock, call, read clock, account": the metric children, labels
and callables are all resolved when the pipeline is built. A drill's delay is added
inside the timed region, so it looks exactly like a slow stage. An item that fails in a
stage leaves the pipeline there, counted as an error; the others carry on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from loglog.counters import AtomicCounter

from .batching import Batcher
from .calibration import Calibration
from .drills import Drills
from .errors import InferenceError, InputError
from .metrics import RuntimeMetrics
from .queues import StageQueue
from .stages import Encode, Postprocess, Preprocess
from .stats import StageStats
from .tracing import Tracing
from .types import STAGES, Engine, Item

#: stage → the stage after it (encode is last)
NEXT = {"preprocess": "infer", "infer": "postprocess", "postprocess": "encode", "encode": None}
WORKER_STAGES = ("preprocess", "infer", "postprocess", "encode")


class _StageMeters:
    """The metric children and counters of one stage, resolved once."""

    def __init__(self, stage: str, metrics: RuntimeMetrics) -> None:
        self.duration = metrics.stage_duration_seconds.labels(stage)
        self.items = metrics.stage_items_total.labels(stage)
        self.busy = metrics.stage_busy_seconds_total.labels(stage)
        self.errors = metrics.stage_errors_total.labels(stage)
        self.workers = metrics.stage_workers.labels(stage)
        self.stats = StageStats()
        self.workers.set(0)


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
    ) -> None:
        self.engine = engine
        self.info = engine.describe()
        self.calibration = calibration
        self.metrics = metrics
        self.tracing = tracing
        self.drills = drills
        self.log = log
        self.instrumented = instrumented
        self.queues = {
            stage: StageQueue(stage, queue_capacity, metrics, instrumented=instrumented)
            for stage in WORKER_STAGES
        }
        self.meters = {stage: _StageMeters(stage, metrics) for stage in STAGES}
        self.preprocess = Preprocess(self.info)
        self.postprocess = Postprocess(self.info, top_k=top_k)
        self.encode = encode
        self._functions: dict[str, Callable[[list[Item]], list[Item]]] = {
            "preprocess": self.preprocess,
            "postprocess": self.postprocess,
            "encode": self.encode,
        }
        self.batcher = Batcher(
            self.queues["infer"],
            max_batch=self.clamp_batch(max_batch),
            max_wait=max_wait,
            metrics=metrics,
            instrumented=instrumented,
        )
        self._flops = calibration.flops_per_item or 0
        self._flops_total = metrics.model_flops_total.labels(self.info.name)
        self._requests = {s: metrics.requests_total.labels(s) for s in ("ok", "error", "rejected")}
        self._latency = metrics.request_duration_seconds
        self._workers: dict[str, list[threading.Event]] = {stage: [] for stage in WORKER_STAGES}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.keep_images: set[str] = set()  # streams whose frames are re-encoded
        self.completed = AtomicCounter()  # items out of the pipeline, counted in every mode
        if not instrumented:
            # Benchmarks measure the pipeline without its instrumentation: the same code
            # path, with the accounting decided away here rather than tested per call.
            self._account = self._account_nothing  # type: ignore[method-assign]

    def clamp_batch(self, max_batch: int) -> int:
        """An engine built for a fixed maximum batch caps the batcher."""
        return min(max_batch, self.info.max_batch) if self.info.max_batch else max_batch

    # -- control ------------------------------------------------------------------------

    def set_workers(self, stage: str, count: int) -> None:
        """Grow or shrink a stage's worker threads (a config reload may call this)."""
        with self._lock:
            stops = self._workers[stage]
            while len(stops) < count:
                stop = threading.Event()
                target = self._infer_loop if stage == "infer" else self._item_loop
                thread = threading.Thread(
                    target=target, args=(stage, stop), name=f"{stage}-{len(stops)}", daemon=True
                )
                stops.append(stop)
                self._threads.append(thread)
                thread.start()
            while len(stops) > count:
                stops.pop().set()  # that worker exits after its current item
            self.meters[stage].workers.set(count)

    def workers(self, stage: str) -> int:
        return len(self._workers[stage])

    def submit(self, item: Item, timeout: float | None = None, kind: str = "frame") -> bool:
        """Hand an item to the pipeline (blocking while the first queue is full)."""
        self.tracing.start(item, kind)
        if item.tensor is not None:
            item.tensor = self.preprocess.check(item.tensor)
        return self.queues["preprocess"].put(item, timeout)

    def record_decode(self, item: Item, started: float, seconds: float) -> None:
        """Account a frame a stream's source decoded (sources run their own threads)."""
        self._account("decode", [item], started, started + seconds)

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
                self._abandon(item)
        self.encode.close()

    def _abandon(self, item: Item) -> None:
        """At shutdown: a waiting HTTP caller gets an error; a stream frame is counted."""
        if item.future is not None:
            item.error = InferenceError("the server is shutting down; retry elsewhere")
            self._finish(item)
        else:
            self.metrics.frames_dropped_total.labels(item.stream, "shutdown").inc()

    # -- workers -----------------------------------------------------------------------

    def _item_loop(self, stage: str, stop: threading.Event) -> None:
        source = self.queues[stage]
        function = self._functions[stage]
        pause = self.drills.pause
        last = NEXT[stage] is None
        clock = time.perf_counter
        while not stop.is_set():
            item = source.get(0.2)
            if item is None:
                continue
            started = clock()
            try:
                pause(stage)
                function([item])
            except Exception as exc:
                item.error = exc
            self._account(stage, [item], started, clock())
            if stage == "preprocess" and item.stream not in self.keep_images:
                item.image = None  # the tensor is all the rest of the pipeline needs
            if item.error is not None or last:
                self._finish(item)
            else:
                self._forward(item, stage)

    def _infer_loop(self, stage: str, stop: threading.Event) -> None:
        run = self.engine.run
        pause = self.drills.pause
        clock = time.perf_counter
        while not stop.is_set():
            batch = self.batcher.next_batch()
            if not batch:
                continue
            started = clock()
            try:
                pause("infer", len(batch))  # per item: a drill makes a real bottleneck
                outputs = run(np.stack([item.tensor for item in batch]))  # type: ignore[misc]
                for index, item in enumerate(batch):
                    item.outputs = {name: value[index] for name, value in outputs.items()}
            except Exception as exc:
                for item in batch:
                    item.error = exc
            ended = clock()
            ok = sum(item.error is None for item in batch)
            if ok and self._flops:
                self._flops_total.inc(self._flops * ok)
            self._account(
                "infer",
                batch,
                started,
                ended,
                engine_seconds=ended - started,
                expected=self.calibration.latency(len(batch)),
            )
            for item in batch:
                if item.error is not None:
                    self._finish(item)
                else:
                    item.tensor = None
                    self._forward(item, "infer")

    def _forward(self, item: Item, stage: str) -> None:
        target = self.queues[NEXT[stage]]  # type: ignore[index]
        while not target.put(item, timeout=0.5):
            if self._stopping.is_set():
                self._abandon(item)
                return

    # -- accounting --------------------------------------------------------------------

    def _account(
        self,
        stage: str,
        items: list[Item],
        started: float,
        ended: float,
        engine_seconds: float = 0.0,
        expected: float = 0.0,
    ) -> None:
        meters = self.meters[stage]
        seconds = ended - started
        errors = 0
        exemplar: dict[str, str] | None = None
        for item in items:
            item.stage_ms[stage] = seconds * 1000.0
            if item.error is not None:
                errors += 1
            if item.span is not None:
                self.tracing.stage(item, stage, started, ended)
                exemplar = {"trace_id": item.trace_id or ""}
        meters.duration.observe(seconds, exemplar)
        meters.items.inc(len(items) - errors)
        meters.busy.inc(seconds)
        if errors:
            meters.errors.inc(errors)
        meters.stats.add(len(items) - errors, seconds, errors, engine_seconds, expected)

    def _account_nothing(self, stage: str, items: list[Item], *args: Any, **kwargs: Any) -> None:
        return None

    def _count_outcome(self, item: Item) -> None:
        error = item.error
        if error is None:
            self._requests["ok"].inc()
            exemplar = {"trace_id": item.trace_id} if item.trace_id else None
            self._latency.observe(time.monotonic() - item.created, exemplar)
            return
        self._requests["rejected" if isinstance(error, InputError) else "error"].inc()
        if self.log is not None:
            self.log.warning(
                "item failed", stream=item.stream, frame=item.frame,
                error=f"{type(error).__name__}: {error}", trace_id=item.trace_id,
            )  # fmt: skip

    def _finish(self, item: Item) -> None:
        """The end of an item's road: count it, end its span, answer its caller."""
        error = item.error
        self.completed.inc()
        if self.instrumented:
            self._count_outcome(item)
        self.tracing.finish(item)
        future = item.future
        if future is not None and not future.done():
            if error is None:
                future.set_result(item)
            else:
                future.set_exception(error)

"""``loglog worker``: a Celery worker that runs job segments through the inference pipeline.

One process per GPU (``--gpu N`` sets ``CUDA_VISIBLE_DEVICES`` before the engine loads),
Celery's ``solo`` pool, one unacknowledged segment at a time (see :mod:`fleet.celeryapp`).
A segment is: mark the job running, decode frames ``[start, end)``, run them through
:class:`inference.runtime.Runtime` (only its public ``start``/``submit``/``report``/``stop``),
write the lines as the segment's part file, count the segment done in the store, and —
when it was the last — assemble the job's results. The message is acknowledged after
that, so a worker killed at any point leaves the segment to be redelivered, and every
step is idempotent so the redelivery finishes the job with each frame once.

Memory is bounded by the frame size: frames over the runtime's ``max_image_pixels`` fail
the job from the container header, before decoding (:func:`fleet.sources.read`), and at
most :data:`INFLIGHT_FRAME_BYTES` of decoded frames are in flight.

The worker serves its own ``/metrics`` (pipeline + fleet) and beats into the store every
``heartbeat_s`` with its address, so the API's http_sd endpoint lists it for Prometheus.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from loglog import get_logger

from .celeryapp import check_broker_url
from .errors import FleetConfigError, FleetError, SourceUnreadable, StoreUnavailable
from .heartbeat import Heartbeat, RateWindow, WorkerBeat
from .metrics import WorkerMetrics
from .model import TERMINAL, SegmentResult
from .results import Results
from .sources import MAX_FRAME_PIXELS, read
from .store import JobStore

#: Frames between two progress reports, each of which also reads the job's state (so a
#: cancel stops a running segment) — or :data:`PROGRESS_S` seconds, whichever is first:
#: the job's recent rate (its ETA, :mod:`fleet.eta`) lags the work by at most that much.
PROGRESS_FRAMES = 16
PROGRESS_S = 2.0
#: Seconds a worker waits before putting back a segment it could not record (store down).
STORE_BACKOFF_S = 2.0
#: Bytes of decoded frames a worker keeps in flight at most (at least one frame): 8
#: frames of 1080p, one of 8K — so a large frame size cannot multiply by the window.
INFLIGHT_FRAME_BYTES = 96 * 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What ``loglog worker`` is started with; validated once."""

    broker: str = "amqp://guest:guest@127.0.0.1:5672//"
    store: str = "redis://127.0.0.1:6379/0"
    prefix: str = "loglog:fleet"
    queue: str = "loglog.segments"
    results_dir: Path = Path("fleet-results")
    name: str = ""
    gpu: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    heartbeat_s: float = 5.0
    model: str | None = None
    runtime_config: str | None = None

    def __post_init__(self) -> None:
        check_broker_url(self.broker)
        if self.gpu is not None and self.gpu < 0:
            raise FleetConfigError(f"--gpu {self.gpu}: give a GPU index ≥ 0")
        if not 0 <= self.metrics_port <= 65535:
            raise FleetConfigError(f"--metrics-port {self.metrics_port}: 0–65535 (0 = any free)")
        if not 0.1 <= self.heartbeat_s <= 300:
            raise FleetConfigError("heartbeat_s must be 0.1–300")


class SegmentRunner:
    """Runs one segment at a time; the Celery task is a thin call into :meth:`run`."""

    def __init__(
        self,
        *,
        name: str,
        store: JobStore,
        results: Results,
        runtime: Any,
        metrics: WorkerMetrics,
        window: int = 8,
        max_pixels: int = MAX_FRAME_PIXELS,
        inflight_bytes: int = INFLIGHT_FRAME_BYTES,
        capacity: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``window``: frames in flight at most (so the batcher can fill batches), and
        never more than ``inflight_bytes`` of them; ``max_pixels``: the largest frame a
        job may have (the runtime's ``max_image_pixels``); ``capacity``: the runtime's
        calibrated model-only frames/s, for the heartbeats."""
        self.name, self.store, self.results, self.runtime = name, store, results, runtime
        self.metrics, self.window, self.clock = metrics, window, clock
        self.max_pixels, self.inflight_bytes = max_pixels, inflight_bytes
        self.rate = RateWindow(clock=clock)
        self.current: str | None = None
        self.capacity = capacity
        self.log = get_logger("fleet.worker").bind(worker=name)

    def run(self, *, job: str, index: int, start: int, end: int, source: str,
            segments: int) -> SegmentResult:  # fmt: skip
        """Run one segment; returns how it ended."""
        state, rerun = self.store.start_segment(job, self.name, index)
        if rerun:  # a worker started this segment before (killed, or published twice)
            self.metrics.redeliveries_total.inc()
        if state is None or state in TERMINAL:
            self.log.info("segment skipped: job ended", job=job, segment=index, state=state)
            return self._count(SegmentResult.SKIPPED)
        began = self.clock()
        self.current = job
        self.metrics.busy.set(1)
        try:
            lines = self._analyse(job, index, start, end, source)
        except SourceUnreadable as exc:
            self.log.error("job failed: source unreadable", job=job, segment=index, error=str(exc))
            self.store.fail(job, f"segment {index} (frames {start}–{end - 1}): {exc}")
            return self._count(SegmentResult.FAILED)
        except _JobEnded:
            return self._count(SegmentResult.SKIPPED)
        except StoreUnavailable:
            raise  # not acknowledged as failed: the message goes back (see the task)
        except Exception as exc:  # an engine or pipeline error: fail this job, keep serving
            self.log.error("job failed", job=job, segment=index, error=repr(exc))
            self.store.fail(job, f"segment {index}: analysis failed: {exc!r}")
            return self._count(SegmentResult.FAILED)
        finally:
            self.metrics.busy.set(0)
            self.current = None
        try:
            self.results.write_segment(job, index, lines)
        except OSError as exc:
            return self._results_failed(job, index, exc)
        state, complete = self.store.complete_segment(job, index, len(lines))
        self.metrics.segment_duration_seconds.observe(self.clock() - began)
        if complete and state not in TERMINAL:
            try:
                path = self.results.assemble(job, segments)
            except (OSError, FleetError) as exc:
                if isinstance(exc, StoreUnavailable):
                    raise
                return self._results_failed(job, index, exc)
            if self.store.succeed(job, str(path)) == "succeeded":
                record = self.store.get(job)
                self.metrics.job_duration_seconds.observe(max(0.0, time.time() - record.created))
                self.log.info("job succeeded", job=job, frames=record.frames_done, result=str(path))
        return self._count(SegmentResult.DONE)

    def _results_failed(self, job: str, index: int, exc: Exception) -> SegmentResult:
        # Raising would not end the job: the task would be acknowledged as failed and the
        # job left "running" forever. A results directory that cannot be written is not
        # transient enough to retry blindly; the job fails with the reason instead.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = getattr(exc, "filename", None) or self.results.root
        self.log.error("job failed: results not written", job=job, segment=index, error=reason)
        self.store.fail(
            job,
            f"segment {index}: cannot write results under {self.results.root} ({where}: "
            f"{reason}): give every worker a writable, shared --results-dir with space",
        )
        return self._count(SegmentResult.FAILED)

    def _count(self, result: SegmentResult) -> SegmentResult:
        self.metrics.segments_total.labels(result.value).inc()
        return result

    def _analyse(
        self, job: str, index: int, start: int, end: int, source: str
    ) -> list[dict[str, Any]]:
        from inference.types import Item

        pending: collections.deque[tuple[int, float | None, int, Future[Any]]] = collections.deque()
        lines: list[dict[str, Any]] = []
        inflight = 0  # bytes of the frames in ``pending``

        def collect(limit: int, room: int = 0) -> None:
            # Until at most ``limit`` frames are in flight and ``room`` more bytes fit.
            nonlocal inflight
            while len(pending) > limit or (pending and inflight + room > self.inflight_bytes):
                frame, pts, size, future = pending.popleft()
                item = future.result(timeout=120)
                inflight -= size
                ms = {stage: round(value, 3) for stage, value in item.stage_ms.items()}
                lines.append({"job": job, "segment": index, "frame": frame, "pts": pts,
                              "result": item.result, "ms": ms})  # fmt: skip
                self.metrics.frames_total.inc()
                self.rate.add(1)

        reported, reported_at = 0, self.clock()

        def report() -> str | None:
            # Frames analysed (out of the pipeline) since the last report; the job's state.
            nonlocal reported, reported_at
            state = self.store.progress(job, index, analysed=len(lines), new=len(lines) - reported)
            reported, reported_at = len(lines), self.clock()
            return state

        # Counted by hand, not with enumerate(): enumerate keeps the previous frame's tuple
        # until the next frame is read, so two frames would be alive (measured: 398 MB
        # instead of 297 MB peak for 8K frames).
        count = 0
        for frame, pts, image in read(source, start, end, max_pixels=self.max_pixels):
            due = count % PROGRESS_FRAMES == 0 or self.clock() - reported_at >= PROGRESS_S
            if count and due and report() in TERMINAL:
                raise _JobEnded(job)
            count += 1  # noqa: SIM113 (see above: not enumerate)
            # A window of frames in flight lets the batcher fill batches; results stay in
            # order. The pipeline drops the image after preprocess; no reference is kept
            # here while the next frame is read (one 8K frame is 100 MB).
            size = frame_bytes(image)
            item = Item(f"job:{job}", frame, pts=pts, image=image)
            future = self.runtime.submit(item, timeout=60)
            del item, image
            pending.append((frame, pts, size, future))
            inflight += size
            # Room for the next frame (the same size) before it is read.
            collect(self.window - 1, room=size)
        collect(0)
        report()  # the last frames count in the rate before the segment is done
        return lines

    def beat(self, metrics_addr: str, gpu: int | None) -> WorkerBeat:
        """This worker's heartbeat now."""
        current = self.current
        return WorkerBeat(name=self.name, metrics=metrics_addr, gpu=gpu,
                          busy=current is not None, job=current,
                          frames_per_second=round(self.rate.rate(), 3),
                          capacity_frames_per_second=self.capacity)  # fmt: skip


def requeue_on_store_outage(
    call: Callable[[], SegmentResult], *, backoff: float = STORE_BACKOFF_S,
    sleep: Callable[[float], object] = time.sleep,
) -> SegmentResult:  # fmt: skip
    """Run a segment; when the store is down, put the segment back in the queue.

    Raising would not do it: with ``task_acks_on_failure_or_timeout`` (on, so that a
    poison segment is not redelivered forever) Celery acknowledges a task that raised,
    and the segment — and with it the job, left ``running`` — would be lost. ``Reject``
    with ``requeue`` returns the message to the broker; the pause keeps a worker from
    spinning on it while Redis is down."""
    from celery.exceptions import Reject

    try:
        return call()
    except StoreUnavailable as exc:
        get_logger("fleet.worker").warning(
            "store down: segment goes back to the queue", error=str(exc), retry_in_s=backoff
        )
        sleep(backoff)
        raise Reject(exc, requeue=True) from exc


def frame_bytes(image: Any) -> int:
    """Bytes of a decoded frame (an ``av.VideoFrame``'s planes, or an array's)."""
    planes = getattr(image, "planes", None)
    if planes is not None:
        return sum(int(plane.buffer_size) for plane in planes)
    return int(getattr(image, "nbytes", 0))


class _JobEnded(FleetError):
    """The job was cancelled or failed while this segment ran."""


def capacity_of(runtime: Any) -> float:
    """The best calibrated model-only items/s, from the runtime's public report."""
    report = runtime.report()
    values = [float(v) for v in (report.get("capacity_items_per_s") or {}).values()]
    return max(values, default=0.0)


def run_worker(config: WorkerConfig) -> int:
    """Start the runtime, the metrics server and the Celery consumer; block until stopped."""
    if config.gpu is not None:
        # Before the engine loads: the one GPU this process may see.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(config.gpu)
    from prometheus_client import CollectorRegistry, start_http_server

    from inference.config import load_config
    from inference.runtime import Runtime

    from .celeryapp import SEGMENT_TASK, make_app

    log = get_logger("fleet.worker")
    name = config.name or f"worker-{socket.gethostname()}-{os.getpid()}"
    store = JobStore.connect(config.store, prefix=config.prefix)
    registry = CollectorRegistry()
    runtime_config = load_config(Path(config.runtime_config)) if config.runtime_config else None
    runtime = Runtime(model=config.model, config=runtime_config, registry=registry)
    metrics = WorkerMetrics(registry)
    runtime.start(progress=lambda message: log.info(message))
    capacity = capacity_of(runtime)
    metrics.capacity.set(capacity)
    server, _ = start_http_server(config.metrics_port, config.metrics_host, registry=registry)
    metrics_addr = f"{config.metrics_host}:{server.server_port}"
    runner = SegmentRunner(
        name=name, store=store, results=Results(config.results_dir), runtime=runtime,
        metrics=metrics, window=2 * max(1, runtime.config.max_batch),
        max_pixels=runtime.config.max_image_pixels, capacity=capacity,
    )  # fmt: skip
    app = make_app(config.broker, config.queue)

    @app.task(name=SEGMENT_TASK, acks_late=True)
    def segment(**kwargs: Any) -> str:
        return requeue_on_store_outage(lambda: runner.run(**kwargs)).value

    beat = Heartbeat(store, lambda: runner.beat(metrics_addr, config.gpu), config.heartbeat_s)
    beat.start()
    print(f"worker {name}: metrics http://{metrics_addr}/metrics, queue {config.queue}", flush=True)
    try:
        app.worker_main(["worker", "--pool=solo", "--concurrency=1", f"--hostname={name}",
                         f"--queues={config.queue}", "--without-gossip", "--without-mingle",
                         "--without-heartbeat", "--loglevel=WARNING"])  # fmt: skip
    finally:
        beat.stopped.set()
        with contextlib.suppress(StoreUnavailable):
            store.forget_worker(name)
        server.shutdown()
        runtime.stop()
    return 0

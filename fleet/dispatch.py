"""Submitting jobs: probe, split and store at once; publish in the background, in chunks.

``POST /v1/jobs`` only probes the source and stores the job (state ``pending``); it never
waits for the broker. :class:`Publisher`, a thread of the API, sends the segments, each
with a broker confirm, at most :data:`PUBLISH_CHUNK` per hold of the publish lock and one
chunk per pending job in turn — so a legal 100,000-segment job (which took 424 s to
publish, holding the lock and every other submit for all of it) delays another job's
publication by one chunk, and no request at all. When a job's last segment is confirmed
it becomes ``queued``. If the broker is down, jobs stay pending and the publisher retries
every ``interval`` seconds. A crash between a confirm and its record publishes those
segments again — harmless, because a segment is idempotent (see :mod:`fleet.results`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from loglog import get_logger

from .celeryapp import MAX_PRIORITY, SEGMENT_TASK
from .errors import BrokerUnavailable, FleetConfigError, JobNotFound, StoreUnavailable
from .model import PENDING, TERMINAL, Job, check_job_id, split
from .sources import MAX_FRAME_PIXELS, probe
from .store import JobStore

_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
#: Segments published per hold of the publish lock (≈0.2–1 s with confirms on loopback).
PUBLISH_CHUNK = 200


class Dispatcher:
    """Turns sources into stored jobs, and stored jobs into published segments."""

    def __init__(
        self,
        app: Any,
        store: JobStore,
        *,
        queue: str,
        segment_seconds: float = 10.0,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.1 <= segment_seconds <= 600:
            raise FleetConfigError(
                f"segment_seconds {segment_seconds}: use 0.1–600 (a segment must finish far "
                "inside RabbitMQ's consumer_timeout, 30 min by default)"
            )
        self.app, self.store, self.queue = app, store, queue
        self.segment_seconds, self.clock = segment_seconds, clock
        self.max_frame_pixels = max_frame_pixels
        self.log = get_logger("fleet.dispatch")
        # One publisher at a time in this process, for one chunk: the publisher thread and
        # a direct publish() would otherwise both read "published: 0" and send every
        # segment twice. (Harmless for results, but double work. Several API replicas
        # would need a lock in Redis; one API per fleet is the supported layout.)
        self._publishing = threading.Lock()
        #: Set on every submit: the publisher starts on a new job at once.
        self.wake = threading.Event()

    def submit(self, source: str, *, job_id: str | None = None, priority: int = 0) -> Job:
        """Probe, split and store the job (``pending``); the publisher sends its segments.
        Raises :class:`SourceUnreadable` for a bad source."""
        return self.submit_new(source, job_id=job_id, priority=priority)[0]

    def submit_new(
        self, source: str, *, job_id: str | None = None, priority: int = 0
    ) -> tuple[Job, bool]:
        """:meth:`submit`, and whether the job is new: a retried submit (same id, same
        source) returns the stored job and False, so demand is not counted twice."""
        if not 0 <= priority <= MAX_PRIORITY:
            raise FleetConfigError(f"priority {priority}: use 0–{MAX_PRIORITY} (higher first)")
        job_id = check_job_id(job_id or uuid.uuid4().hex[:16])
        total, fps = probe(source, max_pixels=self.max_frame_pixels)
        segments = split(total_frames=total, fps=fps, segment_seconds=self.segment_seconds)
        job = Job(id=job_id, source=source, state=PENDING, priority=priority, total_frames=total,
                  fps=fps, segment_frames=segments[0].frames, segments=len(segments),
                  created=self.clock())  # fmt: skip
        job, new = self.store.create_new(job)
        self.wake.set()
        return job, new

    def publish(self, job: Job) -> int:
        """Publish every segment of ``job`` the broker has not confirmed yet, a chunk per
        hold of the lock; returns how many went out."""
        sent = 0
        while chunk := self.publish_chunk(job.id):
            sent += chunk
        return sent

    def publish_chunk(self, job_id: str, size: int = PUBLISH_CHUNK) -> int:
        """Publish the job's next ``size`` unconfirmed segments; returns how many."""
        with self._publishing:
            try:
                current = self.store.get(job_id)
            except JobNotFound:  # its record is gone: nothing to publish, ever
                self.store.drop_pending(job_id)
                return 0
            if current.state in TERMINAL:
                self.store.drop_pending(job_id)
                return 0
            first = current.segments_published
            last = min(first + size, current.segments)
            for index in range(first, last):
                try:
                    self._send(current, index)
                except BrokerUnavailable:
                    if index > first:  # what the broker confirmed stays confirmed
                        self.store.mark_published(job_id, index, current.segments)
                    raise
            if last > first or current.segments_published >= current.segments:
                self.store.mark_published(job_id, last, current.segments)
            return last - first

    def _send(self, job: Job, index: int) -> None:
        start = index * job.segment_frames
        end = min(start + job.segment_frames, job.total_frames)
        kwargs = {"job": job.id, "index": index, "start": start, "end": end,
                  "source": job.source, "segments": job.segments}  # fmt: skip
        try:
            # With confirm_publish the call returns after the broker's confirm.
            self.app.send_task(SEGMENT_TASK, kwargs=kwargs, queue=self.queue,
                               priority=job.priority, retry=True,
                               retry_policy=_RETRY)  # fmt: skip
        except Exception as exc:  # kombu/amqp raise many types for one outage
            if isinstance(exc, StoreUnavailable):
                raise
            raise BrokerUnavailable(
                f"the broker did not take segment {index} of job {job.id!r}: {exc}. "
                "It is retried when the broker is back"
            ) from exc

    def publish_round(self) -> int:
        """One chunk of every pending job, oldest first; returns how many segments went
        out. A job submitted meanwhile joins the next round: it waits for one chunk of
        each other pending job at most, however large they are."""
        return sum(self.publish_chunk(job_id) for job_id in self.store.pending())

    def publish_pending(self) -> int:
        """Rounds until no pending job is left; returns how many segments went out."""
        sent = 0
        while chunk := self.publish_round():
            sent += chunk
        return sent

    def backlog(self) -> tuple[int, int]:
        """(ready messages, consumers) of the segment queue, from the broker itself."""
        try:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                ok = conn.default_channel.queue_declare(queue=self.queue, passive=True)
                return int(ok.message_count), int(ok.consumer_count)
        except Exception as exc:
            if "NOT_FOUND" in str(exc):
                return 0, 0  # no segment was ever published: nothing queued, nobody consuming
            raise BrokerUnavailable(f"cannot read the queue {self.queue!r}: {exc}") from exc


class Publisher(threading.Thread):
    """The API's background publisher: rounds of :meth:`Dispatcher.publish_round` while
    there is work, woken at once by a submit, retrying every ``interval`` seconds while
    the broker or the store is down. :meth:`stop` ends it within one chunk."""

    def __init__(self, dispatcher: Dispatcher, interval: float = 1.0) -> None:
        super().__init__(name="fleet-publisher", daemon=True)
        self.dispatcher, self.interval = dispatcher, interval
        self.stopped = threading.Event()
        self.log = get_logger("fleet.dispatch")

    def run(self) -> None:
        wake = self.dispatcher.wake
        while not self.stopped.is_set():
            wake.clear()  # before the round: a submit during it is not missed
            try:
                sent = self.dispatcher.publish_round()
            except (BrokerUnavailable, StoreUnavailable) as exc:
                self.log.debug("pending segments wait for the broker", error=str(exc))
                sent = 0
            except Exception as exc:
                self.log.error("publishing pending segments failed", error=repr(exc))
                sent = 0
            if not sent:
                wake.wait(self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        self.dispatcher.wake.set()
        self.join(timeout)

"""Submitting jobs: probe, split, store, then publish each segment with a broker confirm.

A job is stored first and published second. If the broker is down, the job is still
accepted (queued, with segments pending); :meth:`Dispatcher.publish_pending`, run again by
the API every second, publishes what the broker has not confirmed yet once it is back. A
crash between a confirm and its record publishes that segment twice — harmless, because
a segment is idempotent (see :mod:`fleet.results`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from loglog import get_logger

from .celeryapp import MAX_PRIORITY, SEGMENT_TASK
from .errors import BrokerUnavailable, FleetConfigError, StoreUnavailable
from .model import QUEUED, TERMINAL, Job, check_job_id, split
from .sources import probe
from .store import JobStore

_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class Dispatcher:
    """Turns sources into stored, published jobs."""

    def __init__(
        self,
        app: Any,
        store: JobStore,
        *,
        queue: str,
        segment_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.1 <= segment_seconds <= 600:
            raise FleetConfigError(
                f"segment_seconds {segment_seconds}: use 0.1–600 (a segment must finish far "
                "inside RabbitMQ's consumer_timeout, 30 min by default)"
            )
        self.app, self.store, self.queue = app, store, queue
        self.segment_seconds, self.clock = segment_seconds, clock
        self.log = get_logger("fleet.dispatch")
        # One publisher at a time in this process: the request thread and the republish
        # loop would otherwise both read "published: 0" and send every segment twice.
        # (Harmless for results, but double work. Several API replicas would need a lock
        # in Redis; one API per fleet is the supported layout.)
        self._publishing = threading.Lock()

    def submit(self, source: str, *, job_id: str | None = None, priority: int = 0) -> Job:
        """Probe, split and store the job, then try to publish it (a broker outage leaves
        it pending; it is not an error). Raises :class:`SourceUnreadable` for a bad source."""
        return self.submit_new(source, job_id=job_id, priority=priority)[0]

    def submit_new(
        self, source: str, *, job_id: str | None = None, priority: int = 0
    ) -> tuple[Job, bool]:
        """:meth:`submit`, and whether the job is new: a retried submit (same id, same
        source) returns the stored job and False, so demand is not counted twice."""
        if not 0 <= priority <= MAX_PRIORITY:
            raise FleetConfigError(f"priority {priority}: use 0–{MAX_PRIORITY} (higher first)")
        job_id = check_job_id(job_id or uuid.uuid4().hex[:16])
        total, fps = probe(source)
        segments = split(total_frames=total, fps=fps, segment_seconds=self.segment_seconds)
        job = Job(id=job_id, source=source, state=QUEUED, priority=priority, total_frames=total,
                  fps=fps, segment_frames=segments[0].frames, segments=len(segments),
                  created=self.clock())  # fmt: skip
        job, new = self.store.create_new(job)
        try:
            self.publish(job)
        except BrokerUnavailable as exc:
            self.log.warning("broker down: job stays pending", job=job.id, error=str(exc))
        return job, new

    def publish(self, job: Job) -> int:
        """Publish the job's segments the broker has not confirmed yet; returns how many."""
        with self._publishing:
            return self._publish(job)

    def _publish(self, job: Job) -> int:
        current = self.store.get(job.id)
        if current.state in TERMINAL:
            self.store.drop_pending(job.id)
            return 0
        sent = 0
        for index in range(current.segments_published, current.segments):
            start = index * current.segment_frames
            end = min(start + current.segment_frames, current.total_frames)
            kwargs = {"job": current.id, "index": index, "start": start, "end": end,
                      "source": current.source, "segments": current.segments}  # fmt: skip
            try:
                # With confirm_publish the call returns after the broker's confirm.
                self.app.send_task(SEGMENT_TASK, kwargs=kwargs, queue=self.queue,
                                   priority=current.priority, retry=True,
                                   retry_policy=_RETRY)  # fmt: skip
            except Exception as exc:  # kombu/amqp raise many types for one outage
                if isinstance(exc, StoreUnavailable):
                    raise
                raise BrokerUnavailable(
                    f"the broker did not take segment {index} of job {job.id!r}: {exc}. "
                    "It is retried when the broker is back"
                ) from exc
            self.store.mark_published(current.id, index + 1, current.segments)
            sent += 1
        return sent

    def publish_pending(self) -> int:
        """Publish every pending job's remaining segments; returns how many went out."""
        sent = 0
        for job_id in self.store.pending():
            sent += self.publish(self.store.get(job_id))
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

"""A job run by simulated workers on a fake clock, through the real store (Redis).

Each simulated worker does what :class:`fleet.worker.SegmentRunner` does with the store —
``start_segment``, ``progress`` every second of work, ``complete_segment`` — at a fixed
frames/s; a killed worker's segment goes back to the front of the queue (the broker's
redelivery) and a restarted one takes segments again after a warm-up. The clock is a
list the simulation advances: nothing sleeps. Used by the ETA tests to replay the bad
days (outage, restart, stall) and compare the ETA with the real remaining time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from fleet.model import QUEUED, Job, split
from fleet.store import JobStore


@dataclasses.dataclass(frozen=True)
class Sample:
    """The job's ETA at ``t``, and the truth at today's pace: frames not analysed yet ÷
    the frames/s of the workers alive now (not what a restart will add later)."""

    t: float
    status: str | None
    eta: float | None
    at_pace: float


@dataclasses.dataclass
class SimWorker:
    name: str
    fps: float
    segment: int | None = None
    done: float = 0.0  # frames of the current segment analysed (fractional)
    reported: int = 0
    down_until: float = 0.0  # dead (or warming up) until then


class Clock:
    """A fake wall clock: ``clock()`` reads it, the simulation moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Sim:
    """One job of ``frames`` frames (``segment`` per segment) on ``workers`` workers."""

    def __init__(self, store: JobStore, clock: Clock, *, frames: int, segment: int = 100,
                 workers: dict[str, float], job_id: str = "sim") -> None:  # fmt: skip
        self.store, self.clock, self.id = store, clock, job_id
        segments = split(total_frames=frames, fps=10.0, segment_seconds=segment / 10)
        self.segments = {s.index: s for s in segments}
        self.queue = [s.index for s in segments]
        self.workers = {name: SimWorker(name, fps) for name, fps in workers.items()}
        store.create(Job(id=job_id, source="synthetic://sim", state=QUEUED, priority=0,
                         total_frames=frames, fps=10.0, segment_frames=segment,
                         segments=len(segments), created=clock()))  # fmt: skip
        self.finished: float | None = None
        #: One after every step.
        self.samples: list[Sample] = []

    def job(self) -> Job:
        return self.store.get(self.id)

    def kill(self, name: str, down_for: float) -> None:
        """SIGKILL ``name``: its segment is redelivered; it works again after ``down_for``."""
        worker = self.workers[name]
        if worker.segment is not None:
            self.queue.insert(0, worker.segment)
        worker.segment, worker.done, worker.reported = None, 0.0, 0
        worker.down_until = self.clock() + down_for

    def step(self, dt: float = 1.0) -> None:
        """``dt`` seconds of work by every live worker, then one sample of the ETA."""
        self.clock.now += dt
        now = self.clock()
        for worker in self.workers.values():
            if worker.down_until > now:
                continue
            if worker.segment is None:
                if not self.queue:
                    continue
                worker.segment = self.queue.pop(0)
                worker.done, worker.reported = 0.0, 0
                self.store.start_segment(self.id, worker.name, worker.segment)
            segment = self.segments[worker.segment]
            worker.done = min(segment.frames, worker.done + worker.fps * dt)
            analysed = int(worker.done)
            self.store.progress(self.id, segment.index, analysed=analysed,
                                new=analysed - worker.reported)  # fmt: skip
            worker.reported = analysed
            if analysed >= segment.frames:
                _, complete = self.store.complete_segment(self.id, segment.index, segment.frames)
                worker.segment = None
                if complete:
                    self.store.succeed(self.id, "/results/sim.jsonl")
                    self.finished = now
        job = self.job()
        eta = job.eta(now)
        pace = sum(w.fps for w in self.workers.values() if w.down_until <= now)
        unanalysed = job.total_frames - job.frames_done - job.recent.in_progress
        self.samples.append(Sample(now, eta and eta.status.value, eta and eta.seconds,
                                   unanalysed / pace if pace else math.inf))  # fmt: skip

    def run(self, until: Callable[[Sim], bool], limit: float = 100_000.0) -> None:
        """Step until ``until(self)`` or the job is finished (at most ``limit`` s)."""
        deadline = self.clock() + limit
        while self.finished is None and not until(self) and self.clock() < deadline:
            self.step()

    def running(self, start: float, end: float = math.inf) -> list[Sample]:
        """The samples in ``[start, end)`` taken while the job was still running."""
        finished = self.finished if self.finished is not None else math.inf
        return [s for s in self.samples if start <= s.t < min(end, finished)]

    def progress(self) -> float:
        return self.job().progress

    def left(self, at: float) -> float:
        """Real seconds from ``at`` to the end (after the run)."""
        assert self.finished is not None, "run the job to its end first"
        return self.finished - at


def store_on(store: JobStore, clock: Clock) -> JobStore:
    """The same Redis and prefix as ``store``, on ``clock``."""
    return JobStore(store.client, prefix=store.prefix, url=store.url, clock=clock)

"""Jobs and segments: what a job is, its states, and how it is split into time ranges.

A job is one finite source (a video file) analysed frame by frame. It is split into
segments of at most ``segment_seconds`` of video each, so that no broker message stays
unacknowledged for long (RabbitMQ cancels a consumer whose delivery stays unacked past
its ``consumer_timeout``, 30 min by default) and so that the work spreads over the fleet::

    split(total_frames=250, fps=25.0, segment_seconds=4.0)
    # [Segment(0, 0, 100), Segment(1, 100, 200), Segment(2, 200, 250)]
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

from .errors import FleetConfigError
from .eta import Eta, RecentFrames, estimate

PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
#: Every job state, in the order a dashboard lists them. ``pending``: accepted, not every
#: segment is in the broker yet (publishing runs in the background, or the broker is
#: down); ``queued``: every segment published, none started; ``running``: a worker
#: started one (publishing may still go on for a large job).
STATES = (PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
#: States a job never leaves.
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


class SegmentResult(enum.StrEnum):
    """How a worker's run of a segment ended (``fleet_worker_segments_total{result}``)."""

    DONE = "done"  #: analysed, results written, counted in the job
    FAILED = "failed"  #: the job failed on it (unreadable source, engine error, results)
    SKIPPED = "skipped"  #: not analysed (or stopped): the job had ended (cancelled, failed)


#: Segments one job may have: 11.5 days of video at the default 10 s segments. Each is a
#: broker message and an entry in memory at submit; a corrupt header or a typo'd length
#: must not make the API build (and publish) hundreds of millions of them.
MAX_SEGMENTS = 100_000

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: "$" allows a final "\n"


def is_job_id(job_id: str) -> bool:
    """Whether ``job_id`` has the form every job id has (see :func:`check_job_id`)."""
    return bool(_JOB_ID.fullmatch(job_id or ""))


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` when it is safe as a key and a file name; raise otherwise."""
    if not is_job_id(job_id):
        raise FleetConfigError(
            f"job id {job_id!r} is invalid: use 1–64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return job_id


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    """Frames ``[start, end)`` of a job's source."""

    index: int
    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def split(*, total_frames: int, fps: float, segment_seconds: float) -> list[Segment]:
    """Cut ``total_frames`` frames into segments of ``segment_seconds`` of video at most."""
    if total_frames < 1:
        raise FleetConfigError(f"a job needs at least one frame, got {total_frames}")
    if not (fps > 0 and segment_seconds > 0):
        raise FleetConfigError(
            f"fps ({fps}) and segment_seconds ({segment_seconds}) must be positive"
        )
    size = max(1, round(fps * segment_seconds))
    count = -(-total_frames // size)
    if count > MAX_SEGMENTS:
        raise FleetConfigError(
            f"{total_frames} frames make {count} segments of {segment_seconds:g} s, over the "
            f"limit of {MAX_SEGMENTS}: split the video into shorter files, or serve the API "
            "with a longer --segment-seconds"
        )
    return [
        Segment(index, start, min(start + size, total_frames))
        for index, start in enumerate(range(0, total_frames, size))
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A job as the store holds it (``GET /v1/jobs/{id}`` serves :meth:`as_dict`)."""

    id: str
    source: str
    state: str
    priority: int
    total_frames: int
    fps: float
    segment_frames: int
    segments: int
    created: float
    frames_done: int = 0
    segments_done: int = 0
    segments_published: int = 0
    redeliveries: int = 0
    started: float | None = None
    finished: float | None = None
    last_progress: float | None = None
    error: str | None = None
    result: str | None = None
    workers: tuple[str, ...] = ()
    #: While running: its recent rate's state (see :mod:`fleet.eta`).
    recent: RecentFrames = dataclasses.field(default_factory=RecentFrames)

    @property
    def progress(self) -> float:
        """Share of frames done, 0–1."""
        return self.frames_done / self.total_frames if self.total_frames else 0.0

    def eta(self, now: float) -> Eta | None:
        """The ETA of a running job at its recent rate (None when it is not running)."""
        if self.state != RUNNING:
            return None
        left = self.total_frames - self.frames_done
        return estimate(recent=self.recent, left=left, started=self.started, now=now)

    def eta_seconds(self, now: float) -> float | None:
        """Seconds left at the recent rate (None unless running with a known rate)."""
        eta = self.eta(now)
        return None if eta is None else eta.seconds

    def as_dict(self, now: float) -> dict[str, Any]:
        """The JSON the API serves: the record, ``progress``, and the ETA as
        ``eta_seconds`` (null unless known), ``eta_status`` (known, measuring, stalled;
        null unless running) and ``frames_per_second`` (the recent rate, null unless known)."""
        data = dataclasses.asdict(self)
        del data["recent"]
        data["workers"] = list(self.workers)
        data["progress"] = round(self.progress, 4)
        eta = self.eta(now)
        seconds = None if eta is None else eta.seconds
        rate = None if eta is None else eta.frames_per_second
        data["eta_seconds"] = None if seconds is None else round(seconds, 1)
        data["eta_status"] = None if eta is None else eta.status.value
        data["frames_per_second"] = None if rate is None else round(rate, 3)
        return data

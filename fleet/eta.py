"""A running job's ETA from its recent rate: frames analysed in the last minute.

The ETA used to be the job's average rate since it started. That is wrong exactly when it
matters: after a worker is killed and restarted the average still carries the outage (the
first ETAs after a restart read 796 s and 699 s for a 66 s remainder), and a job that
stopped moving kept a confident number. So:

* **Recent rate.** Workers report the frames they analyse every
  :data:`fleet.worker.PROGRESS_FRAMES` frames (or :data:`fleet.worker.PROGRESS_S` seconds)
  of a segment; the store adds them to the job's :data:`BUCKET_S`-second buckets (see
  :meth:`fleet.store.JobStore.progress`). The rate is the frames of the buckets in the
  last :data:`WINDOW_S` seconds ÷ the time they cover. Bounded state: at most
  ``WINDOW_S / BUCKET_S + 2`` buckets per job, older ones are dropped on write, and all
  of them when the job ends. A window (not an average since the start) forgets an outage
  within a minute; buckets (not one entry per report) keep the state the same size for 1
  worker or 100.
* **Left.** Frames not done = total − frames of finished segments − frames already
  analysed in running segments (a segment counts in ``frames_done`` only once its
  results are written, so without the last term the ETA overstates by up to one segment
  per worker).
* **No confident number without evidence.** :attr:`EtaStatus.MEASURING`: the job just
  started (or resumed), less than :data:`MIN_SPAN_S` seconds of rate so far;
  :attr:`EtaStatus.STALLED`: no frame analysed for :data:`STALL_S` seconds (its workers
  are down or stuck, or every worker is busy with other jobs). Both have no seconds; the
  API says which, ``fleet_job_eta_seconds`` has no series. Between the last frame and
  the stall verdict the rate falls (the window's time grows, its frames do not), so the
  ETA rises rather than stay at a number that is no longer true.
* **A resume starts a new measurement.** The first report after a stall drops the older
  buckets and marks the new origin; its own frames are not counted (they were done over
  an unknown time before it). A job's very first report counts from the job's start.

Example: 30 frames in the first 15 s of a job, 90 frames left::

    recent = RecentFrames(buckets=((0, 10), (1, 10), (2, 10)), since=0.0, last=15.0)
    estimate(recent=recent, left=90, started=0.0, now=15.0)
    # Eta(status=<EtaStatus.KNOWN: 'known'>, seconds=45.0, frames_per_second=2.0)

Clocks: the buckets are stamped with the reporting worker's wall clock and read with the
API's; hosts are expected to keep NTP time (a skew of seconds blurs the window's edge).
"""

from __future__ import annotations

import dataclasses
import enum
import math

#: Seconds of history the rate is measured over (and without a frame in it, a job is stalled).
WINDOW_S = 60.0
#: Width of one bucket of reported frames.
BUCKET_S = 5.0
#: Seconds of rate needed before an ETA is given (a job just started or resumed).
MIN_SPAN_S = 10.0
#: Seconds without a frame analysed after which a running job is stalled: 15 progress
#: reports missed by every worker on it (each reports at least every 2 s while it works).
STALL_S = 30.0


class EtaStatus(enum.StrEnum):
    """Why a running job has an ETA, or not."""

    KNOWN = "known"  #: a rate over at least MIN_SPAN_S seconds: the seconds are given
    MEASURING = "measuring"  #: just started or resumed: no rate yet
    STALLED = "stalled"  #: no frame analysed for STALL_S seconds


@dataclasses.dataclass(frozen=True, slots=True)
class RecentFrames:
    """What the store keeps per running job for its rate (bounded; see the module doc)."""

    #: (bucket, frames analysed in it); bucket ``b`` covers ``[b·BUCKET_S, (b+1)·BUCKET_S)``.
    buckets: tuple[tuple[int, int], ...] = ()
    #: When the current measurement began (the job's start, or a resume after a stall).
    since: float | None = None
    #: When a worker last reported frames analysed.
    last: float | None = None
    #: Frames already analysed in segments that are running (not yet in ``frames_done``).
    in_progress: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Eta:
    """A running job's ETA: ``seconds`` only when ``status`` is :attr:`EtaStatus.KNOWN`."""

    status: EtaStatus
    seconds: float | None = None
    frames_per_second: float | None = None


def bucket_of(when: float) -> int:
    """The bucket a report at ``when`` (seconds) is counted in."""
    return math.floor(when / BUCKET_S)


def estimate(*, recent: RecentFrames, left: int, started: float | None, now: float) -> Eta:
    """The ETA of a running job with ``left`` frames not done (``in_progress`` is
    subtracted here), from its ``recent`` frames, at ``now``."""
    first = bucket_of(now - WINDOW_S)
    frames = sum(count for bucket, count in recent.buckets if bucket >= first)
    since = recent.since if recent.since is not None else started if started is not None else now
    last = recent.last if recent.last is not None else since
    if now - last >= STALL_S:
        return Eta(EtaStatus.STALLED)
    # The window's frames cover [origin, now]: the whole window in steady state (its first
    # bucket starts up to BUCKET_S before now - WINDOW_S, and so do its frames), or less
    # when the job started or resumed inside it.
    span = now - max(first * BUCKET_S, since)
    if frames <= 0 or span < MIN_SPAN_S:
        return Eta(EtaStatus.MEASURING)
    rate = frames / span
    return Eta(EtaStatus.KNOWN, max(0, left - recent.in_progress) / rate, rate)

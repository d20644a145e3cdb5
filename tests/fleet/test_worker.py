"""The worker's segment runner with the store: progress reports (the job's recent rate, a
cancel's stop), and the heartbeat it sends — on a fake clock, with a fake runtime at the
engine seam (the real worker process is exercised by test_e2e and test_up)."""

from __future__ import annotations

import dataclasses
import itertools
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fleet.heartbeat import WorkerBeat
from fleet.metrics import WorkerMetrics
from fleet.model import CANCELLED, QUEUED, RUNNING, Job, SegmentResult
from fleet.results import Results
from fleet.store import JobStore
from fleet.worker import PROGRESS_FRAMES, PROGRESS_S, SegmentRunner
from tests.fleet.sim import Clock, store_on

SOURCE = "synthetic://64x48@10?seconds=10"  # 100 frames


class FakeRuntime:
    """The runtime's ``submit`` at the engine seam: each frame takes ``seconds`` on the
    fake clock; ``on_frame(n)`` runs as frame ``n`` is submitted."""

    def __init__(self, clock: Clock, seconds: float, on_frame: Any = None) -> None:
        self.clock, self.seconds, self.on_frame = clock, seconds, on_frame

    def submit(self, item: Any, timeout: float) -> Future[Any]:
        if self.on_frame is not None:
            self.on_frame(item.frame)
        self.clock.now += self.seconds
        item.result, item.image = {"frame": item.frame}, None
        done: Future[Any] = Future()
        done.set_result(item)
        return done


class Spy:
    """The real store, with every ``progress`` call recorded."""

    def __init__(self, store: JobStore) -> None:
        self.store, self.calls = store, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def progress(self, job_id: str, index: int, *, analysed: int, new: int) -> str | None:
        self.calls.append((self.store.clock(), analysed, new))
        return self.store.progress(job_id, index, analysed=analysed, new=new)


def _runner(store: JobStore, tmp_path: Path, clock: Clock, runtime: FakeRuntime,
            capacity: float = 0.0, registry: CollectorRegistry | None = None) -> SegmentRunner:  # fmt: skip
    metrics = WorkerMetrics(registry or CollectorRegistry())
    return SegmentRunner(name="w0", store=store, results=Results(tmp_path), runtime=runtime,
                         metrics=metrics, clock=clock, capacity=capacity)  # fmt: skip


def _job(store: JobStore, clock: Clock) -> Job:
    return store.create(Job(id="j", source=SOURCE, state=QUEUED, priority=0, total_frames=100,
                            fps=10.0, segment_frames=50, segments=2, created=clock()))  # fmt: skip


@pytest.mark.parametrize("seconds", [0.01, 0.5])
def test_a_segment_reports_every_frame_it_analyses_to_the_jobs_recent_rate(
    store: JobStore, tmp_path: Path, seconds: float
) -> None:
    """Every analysed frame is reported exactly once, at most PROGRESS_FRAMES frames or
    PROGRESS_S seconds apart (fast and slow frames), the last before the segment is
    counted done; the job's ETA then has a rate from those frames."""
    clock = Clock()
    spy = Spy(store_on(store, clock))
    _job(spy.store, clock)
    runner = _runner(spy, tmp_path, clock, FakeRuntime(clock, seconds))
    kwargs = {"job": "j", "start": 0, "end": 50, "source": SOURCE, "segments": 2}
    assert runner.run(index=0, **kwargs) == SegmentResult.DONE
    assert sum(new for _, _, new in spy.calls) == 50
    assert spy.calls[-1][1] == 50
    assert all(new <= PROGRESS_FRAMES for _, _, new in spy.calls)
    times = [t for t, _, _ in spy.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= max(PROGRESS_S + seconds, PROGRESS_FRAMES * seconds) + 1e-6
    job = spy.store.get("j")
    assert job.state == RUNNING and job.frames_done == 50 and job.recent.in_progress == 0
    assert sum(n for _, n in job.recent.buckets) == 50
    clock.now += 10  # more than MIN_SPAN_S of rate in total
    eta = job.eta(clock())
    assert eta is not None and eta.frames_per_second is not None and eta.frames_per_second > 0


def test_a_cancel_stops_a_running_segment_at_its_next_report(
    store: JobStore, tmp_path: Path
) -> None:
    """The progress report is the cancel check: a job cancelled while its segment runs is
    skipped within PROGRESS_FRAMES frames, and nothing is counted for it."""
    clock = Clock()
    spy = Spy(store_on(store, clock))
    _job(spy.store, clock)
    submitted: list[int] = []

    def cancel_at_10(frame: int) -> None:
        submitted.append(frame)
        if frame == 10:
            spy.store.cancel("j")

    registry = CollectorRegistry()
    runner = _runner(
        spy, tmp_path, clock, FakeRuntime(clock, 0.01, cancel_at_10), registry=registry
    )
    result = runner.run(job="j", index=0, start=0, end=50, source=SOURCE, segments=2)
    assert result == SegmentResult.SKIPPED
    assert len(submitted) <= 10 + PROGRESS_FRAMES
    job = spy.store.get("j")
    assert job.state == CANCELLED and job.frames_done == 0
    assert registry.get_sample_value("fleet_worker_segments_total", {"result": "skipped"}) == 1


def test_the_heartbeat_is_typed_and_carries_the_calibrated_capacity(
    store: JobStore, tmp_path: Path
) -> None:
    """The beat is a WorkerBeat (no untyped dict), and its capacity is the runner's own
    value (the worker read prometheus_client's private ``_value`` before); it survives
    the store and is read back equal."""
    clock = Clock()
    runner = _runner(store_on(store, clock), tmp_path, clock, FakeRuntime(clock, 0.01), 42.5)
    beat = runner.beat("127.0.0.1:9100", gpu=1)
    assert beat == WorkerBeat(name="w0", metrics="127.0.0.1:9100", gpu=1, busy=False,
                              job=None, frames_per_second=0.0,
                              capacity_frames_per_second=42.5)  # fmt: skip
    store.heartbeat(beat, ttl=60)
    (back,) = store.workers()
    assert dataclasses.replace(back, seen=0.0) == beat and back.seen > 0

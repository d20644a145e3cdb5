"""Layer (a): splitting, the Redis job store, idempotent results, finite sources."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from fleet.errors import (
    FleetConfigError,
    JobConflict,
    JobNotFound,
    SourceUnreadable,
    StoreUnavailable,
)
from fleet.heartbeat import WorkerBeat
from fleet.model import CANCELLED, PENDING, QUEUED, RUNNING, SUCCEEDED, Job, check_job_id, split
from fleet.results import Results
from fleet.sources import MAX_FRAME_PIXELS, probe, read
from fleet.store import JobStore
from inference.config import RuntimeConfig
from inference.media.video import to_rgb
from tests.conftest import free_port


def _job(
    job_id: str = "j1", source: str = "synthetic://64x48@10?seconds=3", segments: int = 3
) -> Job:
    return Job(
        id=job_id,
        source=source,
        state=QUEUED,
        priority=0,
        total_frames=30,
        fps=10.0,
        segment_frames=10,
        segments=segments,
        created=time.time(),
    )


def test_split_covers_every_frame_exactly_once() -> None:
    """Segments are contiguous, disjoint, cover [0, total) and hold at most fps × seconds."""
    for total, fps, seconds in [
        (1, 30.0, 10.0),
        (250, 25.0, 4.0),
        (1001, 29.97, 2.0),
        (7, 1.0, 1.0),
    ]:
        segments = split(total_frames=total, fps=fps, segment_seconds=seconds)
        frames = [f for s in segments for f in range(s.start, s.end)]
        assert frames == list(range(total))
        assert all(s.frames <= max(1, round(fps * seconds)) for s in segments)
        assert [s.index for s in segments] == list(range(len(segments)))


def test_split_and_ids_reject_bad_input_with_the_fix() -> None:
    """Zero frames, non-positive rates and unsafe ids fail with a message."""
    with pytest.raises(FleetConfigError, match="at least one frame"):
        split(total_frames=0, fps=10, segment_seconds=1)
    with pytest.raises(FleetConfigError, match="positive"):
        split(total_frames=10, fps=10, segment_seconds=0)
    for bad in ["", "../etc", "a/b", "x" * 65, "-lead"]:
        with pytest.raises(FleetConfigError, match="job id"):
            check_job_id(bad)
    assert check_job_id("cam1-2026.11_28") == "cam1-2026.11_28"


def test_store_round_trip_list_and_filter(store: JobStore) -> None:
    """A created job reads back identical; listing filters by state, newest first."""
    first = store.create(_job("a"))
    store.create(_job("b"))
    assert store.get("a") == first
    assert [j.id for j in store.jobs()] == ["b", "a"]
    store.cancel("b")
    assert [j.id for j in store.jobs(state=QUEUED)] == ["a"]
    assert [j.id for j in store.jobs(state=CANCELLED)] == ["b"]
    with pytest.raises(JobNotFound, match="GET /v1/jobs"):
        store.get("nope")


def test_store_jobs_reads_a_page_not_every_job(store: JobStore, monkeypatch) -> None:
    """``jobs(limit=1)`` after a submit storm reads one small page of ids (it read every
    job ever submitted); a state filter pages on past the first 500 to find older jobs."""
    for index in range(520):
        store.create(_job(f"j{index:04d}"))
    store.cancel("j0000")  # the oldest: on the second page
    ranges: list[tuple[int, int]] = []
    real = store.client.zrevrange

    def spy(key, start, end, *args, **kwargs):
        ranges.append((start, end))
        return real(key, start, end, *args, **kwargs)

    monkeypatch.setattr(store.client, "zrevrange", spy)
    assert [j.id for j in store.jobs(limit=1)] == ["j0519"]
    assert ranges == [(0, 0)]
    ranges.clear()
    assert [j.id for j in store.jobs(state=CANCELLED, limit=5)] == ["j0000"]
    assert ranges[:2] == [(0, 499), (500, 999)]
    assert len(store.jobs(limit=10_000)) == 520


def test_store_create_is_idempotent_per_id_and_refuses_a_different_source(store: JobStore) -> None:
    """Resubmitting an id with its source returns the stored job; another source conflicts."""
    store.create(_job("a"))
    store.complete_segment("a", 0, 10)
    again = store.create(_job("a"))
    assert again.frames_done == 10
    with pytest.raises(JobConflict, match="another id"):
        store.create(_job("a", source="synthetic://64x48@10?seconds=9"))


def test_a_redelivered_segment_counts_once(store: JobStore) -> None:
    """complete_segment for the same index twice adds its frames once; all-done only at the end."""
    store.create(_job("a"))
    assert store.start_segment("a", "w1", 0) == (RUNNING, False)
    assert store.complete_segment("a", 0, 10) == (RUNNING, False)
    assert store.start_segment("a", "w2", 0) == (RUNNING, True)
    assert store.complete_segment("a", 0, 10) == (RUNNING, False)
    store.complete_segment("a", 1, 10)
    assert store.complete_segment("a", 2, 10) == (RUNNING, True)
    job = store.get("a")
    assert (job.frames_done, job.segments_done, job.redeliveries) == (30, 3, 1)
    assert job.workers == ("w1", "w2")
    assert store.succeed("a", "/r/a.jsonl") == SUCCEEDED
    assert store.get("a").progress == 1.0


def test_terminal_states_are_final(store: JobStore) -> None:
    """A cancelled job stays cancelled: workers see it and a late success does not revive it."""
    store.create(_job("a"))
    assert store.cancel("a") == CANCELLED
    assert store.start_segment("a", "w1", 0) == (CANCELLED, False)
    assert store.succeed("a", "x") == CANCELLED
    assert store.fail("a", "boom") == CANCELLED
    assert store.start_segment("gone", "w1", 0) == (None, False)
    with pytest.raises(JobNotFound):
        store.cancel("gone")


def test_pending_until_every_segment_is_confirmed(store: JobStore) -> None:
    """A job stays pending until the broker confirmed all its segments, or it ended."""
    store.create(_job("a"))
    store.create(_job("b"))
    store.mark_published("a", 2, 3)
    assert store.pending() == ["a", "b"]
    store.mark_published("a", 3, 3)
    store.cancel("b")
    assert store.pending() == []


def test_a_pending_job_is_queued_once_published_unless_it_started_or_ended(
    store: JobStore,
) -> None:
    """State ``pending`` until the last segment is confirmed, then ``queued``; a job a
    worker started meanwhile stays ``running``, a cancelled one ``cancelled``."""
    for job_id in ("a", "b", "c"):
        store.create(dataclasses.replace(_job(job_id), state=PENDING))
    store.mark_published("a", 2, 3)
    assert store.get("a").state == PENDING
    store.mark_published("a", 3, 3)
    assert (store.get("a").state, store.get("a").segments_published) == (QUEUED, 3)
    assert store.start_segment("b", "w1", 0) == (RUNNING, False)
    store.mark_published("b", 3, 3)
    assert store.get("b").state == RUNNING
    store.cancel("c")
    store.mark_published("c", 3, 3)
    assert store.get("c").state == CANCELLED
    assert store.pending() == []


def test_redeliveries_count_segments_a_worker_started_before_only(store: JobStore) -> None:
    """The count is of reruns: a segment started a second time (its worker died) is one,
    a first start is none — whatever the broker's redelivered flag says. A broker
    restarted after a SIGKILL flags every message it recovers, and 11 of a job's 12
    segments were counted as redelivered though no worker had touched them."""
    store.create(_job("a"))
    assert [store.start_segment("a", "w1", index)[1] for index in (0, 1, 2)] == [False] * 3
    assert store.get("a").redeliveries == 0
    assert store.start_segment("a", "w2", 1) == (RUNNING, True)
    assert store.get("a").redeliveries == 1


def test_heartbeats_expire_by_themselves(store: JobStore) -> None:
    """A worker that stops beating drops out of the worker list after its TTL."""
    store.heartbeat(WorkerBeat(name="w1", metrics="127.0.0.1:1"), ttl=60)
    store.heartbeat(WorkerBeat(name="w2", metrics="127.0.0.1:2"), ttl=0.2)
    assert [w.name for w in store.workers()] == ["w1", "w2"]
    deadline = time.monotonic() + 10
    while len(store.workers()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [w.name for w in store.workers()] == ["w1"]
    store.forget_worker("w1")
    assert store.workers() == []


def test_store_down_says_what_to_do() -> None:
    """No Redis at the URL: StoreUnavailable naming the URL and the fix."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable, match=r"unreachable.*start Redis"):
        JobStore.connect(url, timeout=1.0)


def test_results_never_duplicate_a_redelivered_segment(tmp_path: Path) -> None:
    """Writing a segment twice (a redelivery) and assembling twice gives each line once."""
    results = Results(tmp_path)
    results.write_segment("j", 1, [{"frame": 2}, {"frame": 3}])
    results.write_segment("j", 0, [{"frame": 0}, {"frame": 1}])
    results.write_segment("j", 1, [{"frame": 2}, {"frame": 3}])
    results.assemble("j", 2)
    path = results.assemble("j", 2)
    frames = [json.loads(line)["frame"] for line in path.read_text().splitlines()]
    assert frames == [0, 1, 2, 3]


def test_a_killed_write_leaves_no_part(tmp_path: Path) -> None:
    """A temporary file from a killed attempt is not a part: assembling says what is missing."""
    results = Results(tmp_path)
    results.write_segment("j", 0, [{"frame": 0}])
    results.part("j", 1).with_name(".part-000001.jsonl.999.tmp").write_text('{"frame": 1')
    with pytest.raises(Exception, match=r"\[1\] are missing"):
        results.assemble("j", 2)
    assert not results.path("j").exists()


def test_synthetic_clip_is_finite_and_deterministic() -> None:
    """The clip has fps × seconds frames; a range reads back the same pixels every time."""
    assert probe("synthetic://64x48@10?seconds=3") == (30, 10.0)
    first = [(i, to_rgb(f)) for i, _, f in read("synthetic://64x48@10?seconds=3", 5, 8)]
    again = [(i, to_rgb(f)) for i, _, f in read("synthetic://64x48@10?seconds=3", 5, 8)]
    assert [i for i, _ in first] == [5, 6, 7]
    assert first[0][1].shape == (48, 64, 3)
    assert all((a[1] == b[1]).all() for a, b in zip(first, again, strict=True))
    assert not (first[0][1] == first[1][1]).all(), "the pattern moves"


def test_video_file_probe_and_segment_read(tmp_path: Path) -> None:
    """A real encoded file: probe finds its frames; a segment decodes exactly its range."""
    from inference.media.video import Recorder

    path = tmp_path / "clip.mp4"
    recorder = Recorder(str(path), width=64, height=48, fps=10)
    for _, _, frame in read("synthetic://64x48@10?seconds=2", 0, 20):
        recorder.add(to_rgb(frame))
    recorder.close()
    total, fps = probe(str(path))
    assert (total, fps) == (20, 10.0)
    assert [i for i, _, _ in read(str(path), 15, 25)] == [15, 16, 17, 18, 19]


def test_frames_over_the_pixel_cap_are_refused_from_the_header(tmp_path: Path) -> None:
    """A job's frames may have at most ``max_pixels`` (default: /v1/infer's 40 Mpx): probe
    and read refuse from the container header, before a frame is decoded, and say the
    size, the cap and the fix. (A 12000×12000 video took a worker to 2.2 GB before.)"""
    from inference.media.video import Recorder

    assert MAX_FRAME_PIXELS == RuntimeConfig().max_image_pixels == 40_000_000
    path = tmp_path / "clip.mp4"
    recorder = Recorder(str(path), width=64, height=48, fps=10)
    for _, _, frame in read("synthetic://64x48@10?seconds=1", 0, 10):
        recorder.add(to_rgb(frame))
    recorder.close()
    cap = 64 * 48 - 1
    with pytest.raises(
        SourceUnreadable, match=r"has 64×48 frames \(3,072 pixels\), over the 3,071 pixels"
    ):
        probe(str(path), max_pixels=cap)
    frames = read(str(path), 0, 10, max_pixels=cap)
    with pytest.raises(SourceUnreadable, match="scale the video down first"):
        next(frames)
    assert probe(str(path), max_pixels=64 * 48) == (10, 10.0)


def test_synthetic_clips_over_the_pixel_cap_are_refused_at_parse() -> None:
    """synthetic:// sizes are checked against the same cap (8K, 33 Mpx, fits the default)."""
    assert probe("synthetic://7680x4320@1?seconds=2") == (2, 1.0)
    with pytest.raises(SourceUnreadable, match="7680×4320 frames"):
        probe("synthetic://7680x4320@1?seconds=2", max_pixels=8_000_000)
    with pytest.raises(SourceUnreadable, match="over the 1,000,000 pixels"):
        next(read("synthetic://1920x1080@1?seconds=2", 0, 1, max_pixels=1_000_000))


def test_unreadable_sources_fail_with_a_clear_error(tmp_path: Path) -> None:
    """Missing files, garbage files and live URLs: SourceUnreadable saying why."""
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(SourceUnreadable, match="no such video file"):
        probe(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceUnreadable, match="cannot read video"):
        probe(str(garbage))
    with pytest.raises(SourceUnreadable, match="not a finite source"):
        probe("rtsp://cam/1")
    with pytest.raises(SourceUnreadable, match="cannot"):
        list(read(str(garbage), 0, 5))


def test_an_id_with_a_trailing_newline_is_refused() -> None:
    """``$`` matches before a final newline: "cam1\\n" passed as a safe id and became a
    results file and directory named with a newline."""
    for bad in ["cam1\n", "cam1\r\n", "cam1\n\n"]:
        with pytest.raises(FleetConfigError, match="job id"):
            check_job_id(bad)


def test_a_store_url_that_is_not_redis_fails_at_start_up_with_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--store http://… was redis-py's ValueError traceback from `jobs serve` and `worker`."""
    from stack.cli import main

    with pytest.raises(FleetConfigError, match=r"--store 'http://127.0.0.1:6379'.*redis://"):
        JobStore.connect("http://127.0.0.1:6379")
    assert main(["jobs", "serve", "--store", "http://127.0.0.1:6379", "--port", "0"]) == 2
    assert "loglog jobs serve: --store" in capsys.readouterr().err


def test_a_broker_url_that_is_not_amqp_fails_at_start_up() -> None:
    """`jobs serve --broker redis://…` started, accepted every job and published none of
    them (the worker already refused the same URL at start-up)."""
    from fleet.celeryapp import make_app

    with pytest.raises(FleetConfigError, match="AMQP URL"):
        make_app("redis://127.0.0.1:6379/0")
    make_app("amqp://guest:guest@127.0.0.1:5672//")  # the supported form still builds


def test_the_store_password_never_reaches_messages() -> None:
    """redis://:secret@host in --store: the "unreachable" error (printed by `jobs serve`,
    logged by workers, served as the API's 503) shows the URL without the password."""
    from tests.conftest import free_port

    with pytest.raises(StoreUnavailable) as caught:
        JobStore.connect(f"redis://:s3cret@127.0.0.1:{free_port()}/0", timeout=1.0)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)

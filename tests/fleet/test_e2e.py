"""Reliability, end to end: a private RabbitMQ node, the real Redis, worker processes.

Each test uses its own queue and key prefix; the node is shared by the module (it takes
15–20 s to start here) and the outage test stops and restarts it.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from pathlib import Path

import pytest

from fleet.store import JobStore
from tests.fleet.harness import Fleet, metric, private_redis_server, result_frames, wait_for
from tests.fleet.rabbit import PrivateRabbit, available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="rabbitmq-server is not installed (make deps)"),
]


def test_sigkill_mid_segment_is_redelivered_and_every_frame_lands_once(fleet: Fleet) -> None:
    """Worker A is SIGKILLed part-way through a segment (some of its frames analysed, the
    segment not finished); worker B gets that segment again and the job finishes with
    frames 0…N-1 each exactly once. With prefetch 1, A held exactly one unacknowledged
    segment, so exactly one redelivery is counted."""
    fleet.segment_seconds = 3.0  # 30 frames a segment: long enough to land inside one
    with fleet.api() as api:
        fleet.start_worker("a")
        metrics_addr = fleet.wait_worker("a").metrics
        job = api.post(
            "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=36", "id": "kill1"}
        ).json()
        assert job["state"] == "pending" and job["segments"] == 12  # published in the background

        def mid_segment() -> bool:
            body = (
                urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
            )
            frames = metric(body, "fleet_worker_frames_total") or 0
            return metric(body, "fleet_worker_busy") == 1 and 3 <= frames % 30 <= 24

        wait_for("worker a to be part-way through a segment", mid_segment, every=0.01)
        fleet.kill("a")
        assert api.get("/v1/jobs/kill1").json()["segments_done"] < 12
        fleet.start_worker("b")
        done = fleet.wait_state(api, "kill1", ("succeeded", "failed"))
        assert done["state"] == "succeeded", done
        assert result_frames(done["result"]) == list(range(360))
        assert done["frames_done"] == 360 and done["progress"] == 1.0
        assert done["redeliveries"] == 1
        assert "b" in done["workers"]
        # B's own metrics count the redelivery (http_sd lists where to scrape them).
        targets = api.get("/v1/sd/workers").json()
        assert [t["labels"]["worker"] for t in targets] == ["b"]
        body = (
            urllib.request.urlopen(f"http://{targets[0]['targets'][0]}/metrics", timeout=10)
            .read()
            .decode()
        )
        assert metric(body, "fleet_worker_redeliveries_total") == 1.0
        assert "inference_stage_duration_seconds_bucket" in body


def test_unreadable_source_fails_alone_and_cancel_stops_queued_segments(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A job whose file turns unreadable fails with a clear error while the others run;
    a cancelled job's queued segments are skipped (no part file); a restarted API serves
    the same states."""
    from fleet.sources import read
    from inference.media.video import Recorder, to_rgb

    video = tmp_path / "clip.mp4"
    recorder = Recorder(str(video), width=64, height=48, fps=10)
    for _, _, frame in read("synthetic://64x48@10?seconds=2", 0, 20):
        recorder.add(to_rgb(frame))
    recorder.close()
    with fleet.api() as api:
        missing = api.post("/v1/jobs", json={"source": str(tmp_path / "nope.mp4")})
        assert missing.status_code == 422 and "no such video file" in missing.json()["error"]
        assert api.post("/v1/jobs", json={"source": str(video), "id": "bad"}).status_code == 202
        video.write_bytes(b"\x00 truncated by a failing disk" * 50)  # unreadable after acceptance
        assert (
            api.post(
                "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=2", "id": "good"}
            ).status_code
            == 202
        )
        assert (
            api.post(
                "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=30", "id": "big"}
            ).status_code
            == 202
        )
        cancelled = api.delete("/v1/jobs/big").json()
        assert cancelled["state"] == "cancelled"
        fleet.start_worker("c")
        bad = fleet.wait_state(api, "bad", ("failed", "succeeded"))
        good = fleet.wait_state(api, "good", ("failed", "succeeded"))
    assert bad["state"] == "failed"
    assert "cannot" in bad["error"] and "clip.mp4" in bad["error"], bad["error"]
    assert good["state"] == "succeeded" and result_frames(good["result"]) == list(range(20))
    # Every segment of "big" was delivered and skipped: the queue drains, nothing is written.
    with fleet.api() as api:  # a restarted API: same states from the store
        wait_for(
            "big's 30 segments to drain",
            lambda: metric(api.get("/metrics").text, "fleet_backlog_segments") == 0,
        )
        states = {j["id"]: j["state"] for j in api.get("/v1/jobs").json()["jobs"]}
        assert states == {"bad": "failed", "good": "succeeded", "big": "cancelled"}
        assert api.get("/v1/jobs?state=cancelled").json()["jobs"][0]["frames_done"] == 0
        assert api.get("/v1/jobs?state=bogus").status_code == 400
        text = api.get("/metrics").text
        assert 'fleet_jobs{state="failed"} 1.0' in text
        assert metric(text, "fleet_broker_up") == 1.0
    assert not (fleet.results_dir / "big").exists()


def test_concurrent_publishers_send_each_segment_once(fleet: Fleet) -> None:
    """The request thread and the republish loop publishing the same job at once put each
    segment in the queue once (they used to both read 'published: 0')."""
    import threading

    from fleet.errors import BrokerUnavailable

    dispatcher = fleet.dispatcher()
    job = fleet.store.create(dispatcher_job(dispatcher, "twice", segments=40))
    start = threading.Barrier(4)

    def publish() -> None:
        start.wait()
        with contextlib.suppress(BrokerUnavailable):
            dispatcher.publish(job)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert fleet.store.get("twice").segments_published == 40
    assert dispatcher.backlog() == (40, 0)


def dispatcher_job(dispatcher, job_id: str, segments: int):  # type: ignore[no-untyped-def]
    """A queued job of ``segments`` one-frame segments (stored, not yet published)."""
    from fleet.model import QUEUED, Job

    return Job(id=job_id, source=f"synthetic://64x48@10?seconds={segments / 10:g}", state=QUEUED,
               priority=0, total_frames=segments, fps=10.0, segment_frames=1,
               segments=segments, created=time.time())  # fmt: skip


def test_broker_down_20s_then_back_loses_no_job(fleet: Fleet, rabbit: PrivateRabbit) -> None:
    """The broker stops for 20 s under load: the API reports it down, accepts a job it
    cannot publish yet, and once the broker is back the worker and the API reconnect and
    both jobs finish, every frame once."""
    with fleet.api() as api:
        fleet.start_worker("d")
        fleet.wait_worker("d")
        api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=15", "id": "before"})
        wait_for("progress before the outage",
                 lambda: api.get("/v1/jobs/before").json()["segments_done"] >= 1)  # fmt: skip
        rabbit.stop()
        down_at = time.monotonic()
        assert metric(api.get("/metrics").text, "fleet_broker_up") == 0.0
        during = api.post(
            "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=3", "id": "during"}
        )
        assert during.status_code == 202 and during.json()["segments_published"] == 0
        assert metric(api.get("/metrics").text, "fleet_segments_unpublished") >= 3
        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # the outage itself is the test
        rabbit.start()
        for job, frames in (("before", 150), ("during", 30)):
            body = fleet.wait_state(api, job, ("succeeded", "failed"), timeout=240)
            assert body["state"] == "succeeded", (body, fleet.log("d"))
            assert result_frames(body["result"]) == list(range(frames))
        assert metric(api.get("/metrics").text, "fleet_broker_up") == 1.0


def test_redis_refusing_writes_mid_job_loses_no_segment(
    rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    """A private Redis refuses every write for 6 s (maxmemory reached, noeviction) while a
    worker runs a job: the segments it could not record go back to the queue — they were
    acknowledged as failed and lost before, the job stuck in running — and once Redis
    takes writes again the job finishes with every frame once."""
    if rabbit.proc is None or rabbit.proc.poll() is not None:
        rabbit.start()
    redis = contextlib.ExitStack()
    url = redis.enter_context(private_redis_server(tmp_path, "--maxmemory-policy", "noeviction"))
    store = wait_for("the private redis", lambda: _connect(url), timeout=30)
    fleet = Fleet(rabbit.url, store, tmp_path / "fleet", segment_seconds=2.0)
    try:
        with fleet.api() as api:
            fleet.start_worker("r")
            fleet.wait_worker("r")
            api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=60", "id": "oom"})
            wait_for("the first segments", lambda: store.get("oom").segments_done >= 2)
            store.client.config_set("maxmemory", 1)
            time.sleep(6)  # the outage itself is the test: several segments end inside it
            store.client.config_set("maxmemory", 0)
            body = fleet.wait_state(api, "oom", ("succeeded", "failed"), timeout=120)
            assert body["state"] == "succeeded", (body, fleet.log("r"))
            assert result_frames(body["result"]) == list(range(600))
    finally:
        fleet.close()
        redis.close()


def _connect(url: str) -> JobStore | None:
    from fleet.errors import StoreUnavailable

    try:
        return JobStore.connect(url, prefix="oom", timeout=0.5)
    except StoreUnavailable:
        return None


def test_results_that_cannot_be_written_fail_the_job_with_the_reason(fleet: Fleet) -> None:
    """--results-dir is a file (or read-only, or full): the job fails saying where and why;
    it used to stay "running" forever (the OSError was acknowledged as a failed task)."""
    fleet.results_dir.parent.mkdir(parents=True, exist_ok=True)
    fleet.results_dir.write_text("a file where the results directory should be")
    with fleet.api() as api:
        fleet.start_worker("w")
        fleet.wait_worker("w")
        api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=2", "id": "nowrite"})
        body = fleet.wait_state(api, "nowrite", ("succeeded", "failed"), timeout=120)
        assert body["state"] == "failed", (body, fleet.log("w"))
        assert str(fleet.results_dir) in body["error"] and "--results-dir" in body["error"]

"""Bounded everywhere, end to end: a private RabbitMQ node, the real Redis, worker processes.

- a legal 100,000-segment job is accepted at once and published in the background, while
  other submits are answered and published meanwhile (it held the publish lock for 424 s);
- a worker's memory stays under twice its baseline on frames over the pixel cap (refused
  from the header: 12000×12000 took a worker to 10.7×) and on the largest allowed frames
  (8K synthetic: 3.6× before);
- a broker SIGKILLed mid-job counts only segments a worker had started as redelivered
  (11 of 12 before: a restarted broker flags every message it recovers).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fleet.access import SourcePolicy
from fleet.api import create_app
from fleet.dispatch import PUBLISH_CHUNK, Dispatcher
from fleet.model import TERMINAL, Job
from fleet.store import JobStore
from tests.conftest import run_code
from tests.fleet.harness import Fleet, result_frames, served, wait_for
from tests.fleet.rabbit import PrivateRabbit

pytestmark = pytest.mark.slow

#: 10⁶ one-second frames in 10 s segments: 100,000 segments, the most a job may have.
HUGE = "synthetic://64x48@1?seconds=1000000"
SMALL = "synthetic://64x48@10?seconds=3"


def _call(method: str, url: str, body: dict | None = None) -> tuple[int, dict, float]:
    """(status, JSON answer, seconds it took); a 30 s hang guard, never a timing assert."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    began = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read()), time.monotonic() - began


def _drop_queue(dispatcher: Dispatcher) -> None:
    with dispatcher.app.connection_for_write() as conn:
        conn.default_channel.queue_delete(dispatcher.queue)


def test_a_huge_job_is_published_in_the_background_and_other_submits_go_first(
    fleet: Fleet,
) -> None:
    """POST of a 100,000-segment job answers at once (``pending``); eight submits sent
    right after it are answered at once too, and published — ``queued`` — while the huge
    job is still being published, a chunk at a time. Cancelling it stops its publishing."""
    dispatcher = Dispatcher(
        fleet.dispatcher().app, fleet.store, queue=fleet.queue, segment_seconds=10.0
    )
    app = create_app(dispatcher, publish_interval=0.3, policy=SourcePolicy(file_dirs=()))
    try:
        with served(app) as api:
            status, huge, took = _call("POST", f"{api}/v1/jobs", {"source": HUGE, "id": "huge"})
            assert (status, huge["state"], huge["segments"]) == (202, "pending", 100_000)
            print(f"\nPOST of the 100,000-segment job answered in {took:.2f}s")
            answers: list[tuple[int, dict, float]] = []
            threads = [
                threading.Thread(
                    target=lambda i=i: answers.append(
                        _call("POST", f"{api}/v1/jobs", {"source": SMALL, "id": f"s{i}"})
                    )
                )
                for i in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(a[0] for a in answers) == [202] * 8
            print(
                f"8 concurrent small POSTs: slowest answered in {max(a[2] for a in answers):.2f}s"
            )

            def small_ones_queued() -> list[Job] | None:
                jobs = [fleet.store.get(f"s{i}") for i in range(8)]
                return jobs if all(job.state == "queued" for job in jobs) else None

            began = time.monotonic()
            for job in wait_for("the small jobs to be published", small_ones_queued, 120):
                assert job.segments_published == job.segments == 1
            meanwhile = fleet.store.get("huge").segments_published
            print(f"small jobs published {time.monotonic() - began:.2f}s later; the huge job "
                  f"had {meanwhile} of 100,000 segments out")  # fmt: skip
            assert 0 < meanwhile < 100_000 and fleet.store.get("huge").state == "pending"

            at_cancel = fleet.store.get("huge").segments_published
            assert _call("DELETE", f"{api}/v1/jobs/huge")[1]["state"] == "cancelled"
            with dispatcher._publishing:  # a chunk already under way ends first
                stopped_at = fleet.store.get("huge").segments_published
            assert stopped_at <= at_cancel + PUBLISH_CHUNK
            time.sleep(1.0)  # a publisher still at it would add hundreds a second
            assert fleet.store.get("huge").segments_published == stopped_at
    finally:
        _drop_queue(dispatcher)


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for {pid}")


def _write_video(path: Path, width: int, height: int, frames: int) -> None:
    """A motion-JPEG AVI of ``frames`` grey frames, written by PyAV in a child process (the
    encoder needs ~1 GB for 48 Mpx frames; this process stays small)."""
    result = run_code(
        f"""
        import av
        with av.open({str(path)!r}, "w") as out:
            stream = out.add_stream("mjpeg", rate=1)
            stream.width, stream.height, stream.pix_fmt = {width}, {height}, "yuvj420p"
            frame = av.VideoFrame({width}, {height}, "yuvj420p")
            for plane in frame.planes:
                plane.update(bytes([128]) * plane.buffer_size)
            for index in range({frames}):
                frame.pts = index
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _finished(store: JobStore, job_id: str) -> Job | None:
    job = store.get(job_id)
    return job if job.state in TERMINAL else None


def test_a_workers_memory_stays_bounded_on_huge_frames(fleet: Fleet) -> None:
    """A 2 MB video of three 8000×6000 frames (48 Mpx, over the 40 Mpx cap) is refused
    at submit (422, from the header); accepted by an API with a larger cap, the worker
    fails the job with the cap in the error, from the header, before decoding. An 8K
    synthetic clip (33 Mpx, allowed) succeeds. The worker's peak RSS stays under twice
    its baseline throughout (before: 2.2 GB for 12000×12000, 692 MB for the 8K clip)."""
    video = fleet.tmp / "huge-frames.avi"
    _write_video(video, 8000, 6000, 3)
    assert video.stat().st_size < 5_000_000
    with fleet.api() as api:
        refused = api.post("/v1/jobs", json={"source": str(video), "id": "refused"})
        assert refused.status_code == 422, refused.text
        assert (
            "8000×6000 frames (48,000,000 pixels), over the 40,000,000" in refused.json()["error"]
        )
    permissive = Dispatcher(
        fleet.dispatcher().app, fleet.store, queue=fleet.queue, segment_seconds=10.0,
        max_frame_pixels=10**9,  # an API configured with a larger cap than its workers
    )  # fmt: skip
    try:
        worker = fleet.start_worker("m")
        fleet.wait_worker("m")
        permissive.publish(permissive.submit("synthetic://64x48@10?seconds=2", job_id="warm"))
        assert wait_for("the warm-up job", lambda: _finished(fleet.store, "warm")).state == (
            "succeeded"
        )
        baseline = _status_mb(worker.pid, "VmHWM")
        permissive.publish(permissive.submit(str(video), job_id="big"))
        big = wait_for("the huge-frame job", lambda: _finished(fleet.store, "big"), 300)
        assert big.state == "failed" and "over the 40,000,000 pixels" in (big.error or ""), big
        permissive.publish(permissive.submit("synthetic://7680x4320@1?seconds=3", job_id="8k"))
        eight_k = wait_for("the 8K job", lambda: _finished(fleet.store, "8k"), 300)
        assert eight_k.state == "succeeded", (eight_k, fleet.log("m"))
        peak = _status_mb(worker.pid, "VmHWM")
        print(f"\nworker peak RSS {peak:.0f} MB against a baseline of {baseline:.0f} MB")
        assert peak < 2 * baseline, f"peak {peak:.0f} MB, baseline {baseline:.0f} MB"
    finally:
        _drop_queue(permissive)


def test_a_broker_sigkill_mid_job_counts_no_unstarted_segment_as_redelivered(
    fleet: Fleet, rabbit: PrivateRabbit
) -> None:
    """The broker is SIGKILLed after the first segment of 12 is done and started again;
    the job finishes with every frame once, and only segments a worker had started before
    the kill are counted as redelivered: the one running, and one finished whose ack the
    broker had not yet written (measured here: 1 or 2). A restarted broker flags every
    message it recovers, and 11 of 12 used to be counted."""
    started_key = f"{fleet.store.prefix}:job:kill:started"
    with fleet.api() as api:
        fleet.start_worker("r")
        fleet.wait_worker("r")
        twelve = {"source": "synthetic://64x48@10?seconds=12", "id": "kill"}  # 1 s segments
        assert api.post("/v1/jobs", json=twelve).status_code == 202
        wait_for("one segment done", lambda: fleet.store.get("kill").segments_done >= 1)
        rabbit.kill()
        # +1: a message the worker received just before the kill may not be in the set yet.
        could_rerun = len(fleet.store.client.smembers(started_key)) + 1
        rabbit.start()
        done = fleet.wait_state(api, "kill", ("succeeded", "failed"), timeout=240)
        assert done["state"] == "succeeded", (done, fleet.log("r"))
        assert result_frames(done["result"]) == list(range(120))
        print(f"\nredeliveries {done['redeliveries']}, segments started before the kill "
              f"{could_rerun - 1}")  # fmt: skip
        assert done["redeliveries"] <= could_rerun < 6, done

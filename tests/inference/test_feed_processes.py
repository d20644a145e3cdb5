"""Decode processes for real: frames through shared memory, a decode process killed or
killed again, logs from inside one, and nothing left behind after a stop or a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from inference.errors import SourceError
from loglog.testing import capture
from tests.conftest import ROOT, free_port, until

pytestmark = pytest.mark.slow

GUARD = 60.0  # hang guard: the machine is shared and loaded


def _video(path: Path, frames: int) -> str:
    from inference.media.video import Recorder

    recorder = Recorder(str(path), width=64, height=48, fps=25)
    for index in range(frames):
        recorder.add(np.full((48, 64, 3), (index * 7) % 256, np.uint8))
    recorder.close()
    return str(path)


def _state(runtime, stream: str) -> dict:
    return {d["id"]: d for d in runtime.streams.list()}[stream]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _results(path: Path, stream: str) -> list[int]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(line["frame"] for line in lines if line["stream"] == stream)


def test_streams_run_in_a_decode_process_and_every_frame_arrives_once(make_runtime, tmp_path):
    """A file and a live stream in one decode process: the file's frames all arrive, each
    once, in the engine's results; decode and preprocess are accounted for every frame
    (their histograms and counters moved); the process runs apart from this one."""
    video = _video(tmp_path / "v.mp4", 120)
    results = tmp_path / "results.jsonl"
    runtime = make_runtime(
        decode_processes=1, source_dirs=(str(tmp_path),), results_path=str(results)
    )
    runtime.streams.add(video, "file")
    runtime.streams.add("synthetic://64x48@20", "cam")
    until(lambda: _state(runtime, "file")["state"] == "ended", GUARD, "the file to end")
    until(lambda: len(_results(results, "file")) == 120, GUARD, "the file's results")
    assert _results(results, "file") == list(range(120))
    assert runtime.feed is not None and runtime.feed.pids()[0] != os.getpid()
    decode = runtime.pipeline.stages["decode"].ledger.snapshot()
    preprocess = runtime.pipeline.stages["preprocess"].ledger.snapshot()
    assert decode.items >= 120 and preprocess.items >= 120 and preprocess.busy > 0
    text = generate_latest(runtime.registry).decode()
    assert "inference_decode_processes 1.0" in text
    assert 'inference_decode_process_heartbeat_age_seconds{process="0"}' in text
    assert _state(runtime, "cam")["state"] == "running"
    # Admission takes the streams' frames out of what it offers HTTP: they must be
    # counted as they arrive from the process (frames_in stayed 0, so /v1/profile said
    # stream_items_per_s 0.0 with 45 frames/s of streams and loadgen's 1.5x overshot).
    assert runtime.pipeline.frames_in.value >= 120


def test_a_source_that_cannot_be_opened_fails_the_request_as_on_a_thread(make_runtime, tmp_path):
    """A file that is no video is refused by add() with the usual message; the decode
    process keeps serving the next stream."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    runtime = make_runtime(decode_processes=1, source_dirs=(str(tmp_path),))
    with pytest.raises(SourceError, match="cannot open source"):
        runtime.streams.add(str(bad), "bad")
    assert runtime.streams.add("synthetic://64x48@10", "ok")["state"] == "running"
    until(lambda: _state(runtime, "ok")["frames"] > 3, GUARD, "frames after a failed open")


def test_a_row_freed_by_an_ended_stream_is_safe_for_the_next_one(make_runtime, tmp_path):
    """A file ends, its row in the decode process goes to a new stream, then the ended
    one is deleted: the close meant for it must not stop the new stream (messages carry
    the stream's token, not only its row)."""
    video = _video(tmp_path / "v.mp4", 10)
    runtime = make_runtime(decode_processes=1, source_dirs=(str(tmp_path),))
    runtime.streams.add(video, "short")
    until(lambda: _state(runtime, "short")["state"] == "ended", GUARD, "the file to end")
    until(lambda: runtime.feed.streams_running() == 0, GUARD, "its row to be released")
    runtime.streams.add("synthetic://64x48@20", "next")
    until(lambda: _state(runtime, "next")["frames"] > 0, GUARD, "frames")
    runtime.streams.remove("short")
    before = _state(runtime, "next")["frames"]
    until(lambda: _state(runtime, "next")["frames"] > before + 10, GUARD, "frames after")
    assert _state(runtime, "next")["state"] == "running"


def test_a_killed_decode_process_is_restarted_counted_and_its_streams_go_on(make_runtime, tmp_path):
    """SIGKILL the decode process mid-stream: a new one takes over, the death is counted
    in inference_decode_process_restarts_total and logged, the live stream keeps running
    (its frame numbers go on), and the file resumes where the engine's copy ended — every
    frame in the results exactly once."""
    video = _video(tmp_path / "v.mp4", 200)
    results = tmp_path / "results.jsonl"
    runtime = make_runtime(
        decode_processes=1, source_dirs=(str(tmp_path),), results_path=str(results),
        stream_buffer=2,
    )  # fmt: skip
    runtime.drills.start("decode", 15, 600)  # ~60 frames/s: the kill lands mid-file
    with capture("info") as records:
        runtime.streams.add(video, "file")
        runtime.streams.add("synthetic://64x48@20", "cam")
        until(lambda: _state(runtime, "file")["frames"] >= 30, GUARD, "the file under way")
        first = runtime.feed.pids()[0]
        os.kill(first, signal.SIGKILL)
        until(lambda: runtime.feed.pids()[0] != first, GUARD, "a new decode process")
        cam_before = _state(runtime, "cam")["frames"]
        until(lambda: _state(runtime, "file")["state"] != "running", GUARD, "the file to end")
        until(lambda: _state(runtime, "cam")["frames"] > cam_before + 5, GUARD, "cam frames")
        runtime.drills.stop_all()
    assert _state(runtime, "file")["state"] == "ended", _state(runtime, "file")
    until(lambda: len(_results(results, "file")) >= 200, GUARD, "the file's results")
    assert _results(results, "file") == list(range(200))
    assert _state(runtime, "cam")["state"] == "running"
    cam = _results(results, "cam")
    assert len(cam) == len(set(cam)), "live frame numbers go on, never repeat"
    text = generate_latest(runtime.registry).decode()
    assert "inference_decode_process_restarts_total 1.0" in text
    deaths = [r for r in records if r.message.startswith("decode process died")]
    assert deaths and deaths[0].fields["exit"] == "killed by SIGKILL"
    # Nothing of the dead process stays "in progress" in the ledgers.
    assert runtime.pipeline.stages["decode"].ledger.snapshot().inflight <= 1


def test_a_decode_process_that_keeps_dying_fails_its_streams_clearly(
    make_runtime, tmp_path, monkeypatch
):
    """Past the restart limit the process is not started again: its streams fail with a
    message that says how often it died and what to do, instead of a crash loop."""
    from inference.feed import process

    monkeypatch.setattr(process, "RESTART_LIMIT", 1)
    runtime = make_runtime(decode_processes=1)
    runtime.streams.add("synthetic://64x48@20", "cam")
    for _ in range(2):
        until(lambda: _state(runtime, "cam")["frames"] > 0, GUARD, "frames")
        pid = runtime.feed.pids()[0]
        os.kill(pid, signal.SIGKILL)
        until(
            lambda pid=pid: (
                runtime.feed.pids()[0] != pid or _state(runtime, "cam")["state"] == "failed"
            ),
            GUARD,
            "a restart or the end",
        )
    until(lambda: _state(runtime, "cam")["state"] == "failed", GUARD, "the stream to fail")
    error = _state(runtime, "cam")["error"]
    assert "decode process 0 died 2 times within 60 s (last: killed by SIGKILL)" in error
    assert "add the stream again" in error


def test_records_logged_in_a_decode_process_reach_the_engines_sinks(make_runtime):
    """The decode process logs through loglog into a pipe to the engine, which hands the
    records to its own sinks (here: the capture list), marked with the process."""
    with capture("info") as records:
        runtime = make_runtime(decode_processes=1)
        runtime.streams.add("synthetic://64x48@10", "cam")
        until(
            lambda: any(r.message == "decode process ready" for r in records),
            GUARD,
            "the decode process's record",
        )
    ready = next(r for r in records if r.message == "decode process ready")
    assert ready.fields["decode_process"] == 0
    assert ready.fields["pid"] == runtime.feed.pids()[0] != os.getpid()


def _shm() -> set[str]:
    return {name for name in os.listdir("/dev/shm")} if os.path.isdir("/dev/shm") else set()


def _ours(names: set[str]) -> set[str]:
    """Entries a shared-memory scheme of ours would leave (named segments, semaphores)."""
    return {n for n in names if "loglog" in n or n.startswith(("psm_", "sem.mp", "wnsm_"))}


def test_stop_ends_every_decode_process_and_leaves_no_shared_memory(make_runtime):
    before = _ours(_shm())
    runtime = make_runtime(decode_processes=2)
    for index in range(3):
        runtime.streams.add("synthetic://64x48@10", f"s{index}")
    until(lambda: len(runtime.feed.pids()) == 2, GUARD, "two decode processes")
    pids = runtime.feed.pids()
    maps = Path(f"/proc/{pids[0]}/maps").read_text()
    assert "memfd:loglog-feed" in maps and "/dev/shm/" not in maps
    runtime.stop()
    until(lambda: not any(_alive(pid) for pid in pids), GUARD, "the decode processes to end")
    assert _ours(_shm()) == before


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def test_a_sigkilled_server_leaves_no_decode_process_and_no_shared_memory(tmp_path):
    """SIGKILL `loglog serve` while its decode processes work: they see the engine's pipe
    close and exit on their own; nothing is left in /dev/shm (the regions have no name)."""
    config = tmp_path / "serve.yaml"
    config.write_text("decode_processes: 2\ncalibration_seconds: 0.1\n")
    port = free_port()
    before = _ours(_shm())
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "serve", "--port", str(port), "--config",
             str(config), "--demo-streams", "3", "--demo-source", "synthetic://64x48@10"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:

            def streams() -> int:
                with urllib.request.urlopen(f"{url}/v1/streams", timeout=2) as response:
                    return sum(s["frames"] > 0 for s in json.load(response))

            until(lambda: streams() == 3, 120, "three streams decoding")
            workers = _children(server.pid)
            assert len(workers) == 2, workers
            server.send_signal(signal.SIGKILL)
            server.wait(30)
            until(lambda: not any(_alive(pid) for pid in workers), GUARD, "orphans to exit")
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(30)
    assert _ours(_shm()) == before

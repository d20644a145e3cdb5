"""Accounting across the process boundary, without processes: calls reported late,
shared threads, drills mirrored, frames handed to the mailbox by a decode process."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from inference.analysis.bottleneck import SATURATION, StageWindow
from inference.analysis.shared import fuse
from inference.analysis.stats import StageLedger
from inference.core.drills import Drills
from inference.feed.drills import DrillBoard
from inference.metrics import RuntimeMetrics
from inference.types import Item


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Remote:
    """Calls running in a 'decode process': started, maybe ended, maybe reported."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float | bool | None]] = []

    def __call__(self, now: float):
        for call in self.calls:
            if not call["reported"]:
                yield call["started"], call["ended"]


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from("serta"), st.floats(0.0, 2.0)), max_size=60))
def test_busy_never_goes_backwards_while_remote_calls_run_end_and_are_reported(steps):
    """Remote calls start (s), end (e), are reported (r) in any order the pipes allow,
    with time passing (t) and other snapshots (a) in between: busy — a Prometheus counter
    — never decreases, a call counts in flight only while it runs, and once everything is
    reported busy equals the calls' summed durations exactly."""
    clock, remote = _Clock(), _Remote()
    ledger = StageLedger(clock)
    ledger.remote = remote
    last = 0.0
    for op, seconds in steps:
        if op == "s":
            remote.calls.append({"started": clock.now, "ended": None, "reported": False})
        elif op == "e":
            running = [c for c in remote.calls if c["ended"] is None]
            if running:
                running[0]["ended"] = clock.now
        elif op == "r":
            done = [c for c in remote.calls if c["ended"] is not None and not c["reported"]]
            if done:
                call = done[0]
                ledger.add_call(
                    call["started"],
                    call["ended"],
                    ok=1,
                    then=lambda c=call: c.update(reported=True),
                )
        else:
            clock.now += seconds
        snap = ledger.snapshot()
        assert snap.busy >= last - 1e-9, (op, snap.busy, last)
        last = snap.busy
        running = [c for c in remote.calls if c["ended"] is None]
        assert snap.inflight == len(running)
        if running:
            assert snap.oldest_age == clock.now - min(c["started"] for c in running)
    for call in remote.calls:
        if call["ended"] is None:
            call["ended"] = clock.now
        if not call["reported"]:
            ledger.add_call(
                call["started"], call["ended"], ok=1, then=lambda c=call: c.update(reported=True)
            )
    total = sum(c["ended"] - c["started"] for c in remote.calls)
    snap = ledger.snapshot()
    assert abs(snap.busy - total) < 1e-9 and snap.items == len(remote.calls) and snap.inflight == 0


def _windows(decode: float, preprocess: float) -> list[StageWindow]:
    return [StageWindow("decode", 10, decode, 4), StageWindow("preprocess", 10, preprocess, 4)]


def test_shared_stream_threads_that_are_saturated_name_the_larger_stage():
    """Four stream threads in decode processes, busy 70 % decoding and 25 % preprocessing:
    saturated together, so decode shows their combined 95 % and the verdict can name it;
    a drilled preprocess taking most of their time is the one raised instead."""
    fused = fuse(_windows(0.7, 0.25), {"decode": 28.0, "preprocess": 10.0}, 10.0, 4, SATURATION)
    assert [w.utilization for w in fused] == [0.95, 0.25]
    fused = fuse(_windows(0.1, 0.85), {"decode": 4.0, "preprocess": 34.0}, 10.0, 4, SATURATION)
    assert [w.utilization for w in fused] == [0.1, 0.95]


def test_shared_stream_threads_with_room_left_change_nothing():
    """Below saturation together (or on threads: no remote streams), windows stay as
    they are: a half-busy stream thread is headroom, not a bottleneck."""
    windows = _windows(0.3, 0.2)
    assert fuse(windows, {"decode": 12.0, "preprocess": 8.0}, 10.0, 4, SATURATION) == windows
    assert fuse(windows, {"decode": 40.0, "preprocess": 0.0}, 10.0, 0, SATURATION) == windows


def test_a_drill_is_mirrored_to_the_board_and_applied_per_item_there():
    """A preprocess drill started on the engine's Drills reaches the shared board; a
    decode process's call then waits the drill's delay (on its own sleep), never past
    the drill's end; stop_all ends a wait in progress at its next tick."""
    drills = Drills(RuntimeMetrics(CollectorRegistry()))
    board = DrillBoard.create()
    try:
        drills.subscribe(board.mirror(drills))
        assert board.pause("preprocess") == 0.0
        drills.start("preprocess", 40, 30)
        slept: list[float] = []
        waited = board.pause("preprocess", sleep=lambda s: (slept.append(s), time.sleep(s)))
        assert 0.035 <= waited < 1.0 and sum(slept) >= 0.035
        assert board.pause("decode") == 0.0
        drills.start("decode", 60_000, 30)
        stops = iter([None, None])

        def sleep_then_stop(seconds: float) -> None:
            if next(stops, "stop") is None:
                time.sleep(seconds)
            else:
                drills.stop_all()

        waited = board.pause("decode", sleep=sleep_then_stop)
        assert waited < 5.0, "stop_all must cut a hung drill short"
        assert board.pause("decode") == 0.0
    finally:
        board.close()


class _FakeRemote:
    """The surface StreamManager uses of a RemoteSource, recording what it is told."""

    def __init__(self, live: bool) -> None:
        self.width, self.height, self.fps, self.late = 64, 48, 10.0, 0
        self.live = live
        self.inlet = None
        self.credits = 0
        self.closed = False

    def start(self, inlet) -> None:
        self.inlet = inlet

    def taken(self) -> None:
        self.credits += 1

    def close(self) -> None:
        self.closed = True


class _Feed:
    def __init__(self) -> None:
        self.opened: list[_FakeRemote] = []

    def open(self, spec, stream_id):
        self.opened.append(_FakeRemote(spec.live))
        return self.opened[-1]


@pytest.mark.slow
def test_frames_from_a_decode_process_go_through_the_same_mailbox(make_runtime, tmp_path):
    """A decode process's frames reach the stream's mailbox through the inlet: a file
    stream's reader never waits there (the process sends only on credit) and every frame
    ingest takes returns one credit; a live stream drops its oldest frame when behind,
    counted; failed frames count as produced, not delivered; removal closes the stream."""
    from inference.core.streams import StreamManager
    from inference.media.access import SourcePolicy

    runtime = make_runtime(decode_processes=0, queue_capacity=2)
    feed = _Feed()
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not opened: the fake feed opens it")
    manager = StreamManager(
        runtime.pipeline, runtime.metrics, runtime.drills, max_streams=4, buffer=2,
        feed=feed, policy=SourcePolicy(file_dirs=(str(tmp_path),)),
    )  # fmt: skip
    try:
        manager.add(str(video), "file")
        manager.add("synthetic://64x48@10", "cam")
        file, cam = feed.opened
        shape = runtime.info.input_shape

        def item(stream: str, index: int) -> Item:
            tensor = np.zeros(shape, np.float32)
            frame = Item(stream, index, tensor=tensor)
            frame.stage_ms["preprocess"] = 0.1
            return frame

        runtime.pipeline.set_workers("infer", 0)  # the pipeline is full: ingest blocks

        def send() -> None:
            for index in range(12):  # far over the mailbox and queues: must not block
                file.inlet.frame(item("file", index), 0)

        reader = threading.Thread(target=send, daemon=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the decode process's reader waited on a mailbox"
        with manager._cond:  # ingest cannot take meanwhile (the lock is re-entrant)
            for index in range(4):  # live: the two oldest go
                cam.inlet.frame(item("cam", index), 3)
            cam.inlet.frame(item("cam", 4), 3, deliver=False)
        runtime.pipeline.set_workers("infer", 1)
        deadline = time.monotonic() + 30
        while (file.credits < 12 or cam.credits < 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert file.credits == 12 and cam.credits == 2  # every take answered
        described = {d["id"]: d for d in manager.list()}
        assert described["cam"]["frames"] == 5
        assert described["cam"]["dropped"] == {"late": 3, "behind": 2}
        cam.inlet.end("decoder exploded", crashed=True)
        assert {d["id"]: d["state"] for d in manager.list()}["cam"] == "failed"
        manager.remove("file")
        assert file.closed
    finally:
        manager.stop_all()

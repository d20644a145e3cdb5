"""The core without hardware or sleeping: the real pipeline, monitor and verdict, driven by
a fake engine (the hardware seam) and a fake clock. Time passes only when the test or
the engine says so, so utilization, in-flight ages and stalls are exact numbers."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inference.analysis.calibration import Calibration
from inference.analysis.tracing import Tracing
from inference.core.drills import Drills
from inference.core.monitor import Monitor
from inference.core.pipeline import Pipeline
from inference.core.stages import Encode
from inference.metrics import RuntimeMetrics
from inference.types import EngineInfo, Item

SHAPE = (3, 4, 4)
GUARD = 30.0  # hang guard for waits on real threads (the machine is loaded)


class FakeClock:
    """Seconds that move only when advanced."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeEngine:
    """Takes ``per_item`` fake seconds per item; when ``hold`` is set, blocks in ``run``
    (a hung engine call) until ``release`` is set, announcing it with ``entered``."""

    def __init__(self, clock: FakeClock, per_item: float = 0.004) -> None:
        self.clock = clock
        self.per_item = per_item
        self.batches: list[int] = []
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(len(batch))
        if self.hold:
            self.entered.set()
            assert self.release.wait(GUARD), "the test never released the engine"
        else:
            self.clock.advance(self.per_item * len(batch))
        return {"logits": np.tile(np.arange(10, dtype=np.float32), (len(batch), 1))}

    def describe(self) -> EngineInfo:
        return EngineInfo("fake", "fake", "x", SHAPE, "float32", ("logits",), "cpu")


class Core:
    """A pipeline, its monitor and its registry around a fake engine and clock."""

    def __init__(self, *, per_item: float = 0.004, max_batch: int = 8) -> None:
        self.clock = FakeClock()
        self.engine = FakeEngine(self.clock, per_item)
        self.registry = CollectorRegistry()
        self.metrics = RuntimeMetrics(self.registry)
        self.drills = Drills(self.metrics, clock=self.clock, sleep=self.clock.advance)
        self.pipeline = Pipeline(
            engine=self.engine,
            calibration=Calibration("fake", {1: per_item, 8: per_item * 8}),
            metrics=self.metrics,
            tracing=Tracing(0.0),
            drills=self.drills,
            encode=Encode(None),
            max_batch=max_batch,
            max_wait=0.0,
            queue_capacity=64,
            clock=self.clock,
        )
        self.monitor = Monitor(
            self.pipeline, self.metrics, interval=1.0, window=10.0, cpu_busy=lambda: 0.2
        )

    def start(self, *stages: str) -> None:
        for stage in stages or ("decode", "preprocess", "infer", "postprocess", "encode"):
            self.pipeline.set_workers(stage, 1)

    def item(self, index: int = 0) -> Item:
        item = Item("test", index, tensor=np.zeros(SHAPE, np.float32))
        item.future = Future()
        return item

    def run(self, count: int) -> None:
        """Push ``count`` items through, one at a time (so timings are exact)."""
        for index in range(count):
            item = self.item(index)
            assert self.pipeline.submit(item, timeout=GUARD)
            item.future.result(GUARD)

    def scrape(self) -> dict[tuple[str, str], float]:
        text = generate_latest(self.registry).decode()
        return {
            (sample.name, sample.labels.get("stage") or sample.labels.get("older_than", "")):
                sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }  # fmt: skip

    def stop(self) -> None:
        self.engine.release.set()
        self.pipeline.stop(timeout=GUARD)


@pytest.fixture
def core():
    made: list[Core] = []

    def make(**options: float) -> Core:
        made.append(Core(**options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for c in made:
        c.stop()


def test_busy_time_and_utilization_are_exact_on_a_fake_clock(core):
    """Ten items at 4 ms of engine time each: infer is busy exactly 40 ms out of the 40 ms
    that passed (utilization 1.0), the other stages took no time at all."""
    c = core()
    c.start()
    c.monitor.sample()
    c.run(10)
    c.monitor.sample()
    infer = c.pipeline.stages["infer"].ledger.snapshot()
    assert infer.items == 10 and infer.calls == 10
    assert infer.busy == pytest.approx(0.04)
    assert infer.engine_seconds == pytest.approx(0.04) and infer.expected_seconds == pytest.approx(
        0.04
    )
    windows = {w.name: w for w in c.monitor.stages}
    assert windows["infer"].utilization == pytest.approx(1.0)
    assert windows["preprocess"].utilization == 0.0
    assert c.monitor.latest.engine_efficiency == pytest.approx(1.0)
    assert c.scrape()[("inference_stage_busy_seconds_total", "infer")] == pytest.approx(0.04)


def test_items_waiting_together_are_batched_up_to_max_batch(core):
    """Eight items queued before infer starts leave in one batch of eight; a ninth waits
    for the next batch."""
    c = core(max_batch=8)
    items = [c.item(i) for i in range(9)]
    for item in items:
        assert c.pipeline.queues["infer"].put(item, timeout=GUARD)
    c.start("infer", "postprocess", "encode")
    for item in items:
        assert item.future.result(GUARD).result["top"][0]["class"] == 9
    assert c.engine.batches == [8, 1]
    infer = c.pipeline.stages["infer"].ledger.snapshot()
    assert infer.calls == 2 and infer.items == 9
    assert infer.busy == pytest.approx(0.036)


def test_a_hung_call_is_in_flight_busy_and_stalled_before_it_finishes(core):
    """The engine hangs on one item. While it hangs — before anything finishes — the
    scrape shows it in flight with its age, busy time grows with it, and the verdict
    names infer as stalled in words, exports it, and claims no headroom. When it
    finishes, the stall clears and busy time did not go backwards."""
    c = core()
    c.start()
    c.run(20)  # a normal history: 4 ms per call
    c.monitor.sample()
    busy_before = c.scrape()[("inference_stage_busy_seconds_total", "infer")]
    c.engine.hold = True
    stuck = c.item(99)
    assert c.pipeline.submit(stuck, timeout=GUARD)
    assert c.engine.entered.wait(GUARD)
    c.clock.advance(42.0)

    scraped = c.scrape()
    assert scraped[("inference_stage_inflight", "infer")] == 1
    assert scraped[("inference_stage_oldest_inflight_seconds", "infer")] == pytest.approx(42.0)
    assert scraped[("inference_stage_busy_seconds_total", "infer")] == pytest.approx(
        busy_before + 42.0
    )
    assert scraped[("inference_stage_inflight", "postprocess")] == 0
    result = c.monitor.sample()
    assert result.bottleneck == "infer" and result.stalled == ("infer",)
    assert (
        "infer is stalled (hung, not slow): one item has been in progress for 42 s" in result.reason
    )
    assert "p99 is 4 ms" in result.reason
    assert "Headroom" not in result.advice and "No headroom" in result.advice
    report = c.monitor.report()
    assert report["verdict"]["stalled"] == ("infer",)
    assert [s["stalled"] for s in report["stages"]] == [False, False, True, False, False]
    scraped = c.scrape()
    assert scraped[("inference_stage_stalled", "infer")] == 1
    assert scraped[("inference_pipeline_bottleneck", "infer")] == 1
    assert scraped[("inference_pipeline_bottleneck", "input")] == 0
    during = scraped[("inference_stage_busy_seconds_total", "infer")]

    c.engine.hold = False
    c.engine.release.set()
    stuck.future.result(GUARD)
    after = c.scrape()
    assert after[("inference_stage_busy_seconds_total", "infer")] >= during
    assert after[("inference_stage_inflight", "infer")] == 0
    assert after[("inference_stage_oldest_inflight_seconds", "infer")] == 0
    c.run(5)
    assert c.monitor.sample().stalled == ()
    assert c.scrape()[("inference_stage_stalled", "infer")] == 0


def test_a_stall_is_named_within_the_threshold_not_before(core):
    """With a 4 ms normal call, a call in progress for 2.9 s is not yet a stall; at 3 s
    it is (the floor): the verdict needs no completion to change its mind."""
    c = core()
    c.start()
    c.run(10)
    c.monitor.sample()
    c.engine.hold = True
    assert c.pipeline.submit(c.item(1), timeout=GUARD)
    assert c.engine.entered.wait(GUARD)
    c.clock.advance(2.9)
    assert c.monitor.sample().stalled == ()
    c.clock.advance(0.1)
    assert c.monitor.sample().stalled == ("infer",)


def test_a_slow_engine_is_slow_not_stalled(core):
    """An engine at 30 ms per item keeps finishing items: infer is the bottleneck, slow
    but moving, never stalled."""
    c = core(per_item=0.03)
    c.start()
    c.monitor.sample()
    c.run(30)
    result = c.monitor.sample()
    assert result.bottleneck == "infer" and result.stalled == ()
    assert "slow but moving" in result.reason and "p99 30 ms" in result.reason


def test_engine_efficiency_excludes_a_drill_on_infer(core):
    """A 30 ms/item drill on infer makes each call 34 ms, but the engine itself still ran
    at its calibrated 4 ms: engine efficiency stays 1.0 and the advice names the drill,
    not contention."""
    c = core()
    c.start()
    c.monitor.sample()
    c.drills.start("infer", 30, 3600)
    c.run(20)
    result = c.monitor.sample()
    infer = c.pipeline.stages["infer"].ledger.snapshot()
    assert infer.busy == pytest.approx(20 * 0.034)
    assert infer.drilled == pytest.approx(20 * 0.030)
    assert result.engine_efficiency == pytest.approx(1.0)
    assert result.bottleneck == "infer"
    assert "drill" in result.advice and "contention" not in result.advice


def test_requests_in_flight_are_counted_by_age_at_scrape_time(core):
    """An item stuck in the pipeline for 5 s counts as in flight and older than 1 s (an
    SLO miss already); once it finishes it no longer does."""
    import time

    c = core()
    c.start()
    c.engine.hold = True
    stuck = c.item(1)
    stuck.created = time.monotonic() - 5.0
    assert c.pipeline.submit(stuck, timeout=GUARD)
    assert c.engine.entered.wait(GUARD)
    scraped = c.scrape()
    assert scraped[("inference_requests_inflight", "0")] == 1
    assert scraped[("inference_requests_inflight", "1")] == 1
    assert scraped[("inference_requests_inflight", "10")] == 0
    c.engine.hold = False
    c.engine.release.set()
    stuck.future.result(GUARD)
    assert c.scrape()[("inference_requests_inflight", "0")] == 0


def test_an_error_in_a_stage_fails_the_item_and_leaves_nothing_in_flight(core):
    """A stage that raises fails its item with that error, counts it, and holds nothing
    in flight afterwards."""
    c = core()
    c.pipeline.stages["postprocess"].call = _raise
    c.start()
    bad = c.item()
    assert c.pipeline.submit(bad, timeout=GUARD)
    with pytest.raises(RuntimeError, match="boom"):
        bad.future.result(GUARD)
    ledger = c.pipeline.stages["postprocess"].ledger.snapshot()
    assert ledger.inflight == 0 and ledger.errors == 1 and ledger.items == 0
    assert c.scrape()[("inference_stage_errors_total", "postprocess")] == 1


def _raise(items):
    raise RuntimeError("boom")


def test_an_http_body_is_decoded_in_the_timed_decode_stage(core):
    """A request carrying an encoded body enters at decode: the decode stage's workers
    load it, its time is in stage_ms, and a hung decode is named stalled like any stage."""
    import io

    from inference.server.bodies import request_item

    c = core()
    decode = c.pipeline.stages["decode"].call
    armed, entered, release = threading.Event(), threading.Event(), threading.Event()

    def decode_or_hang(items):
        if armed.is_set():
            entered.set()
            assert release.wait(GUARD)
        return decode(items)

    c.pipeline.stages["decode"].call = decode_or_hang  # a decoder that can hang on demand
    c.start()
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(SHAPE, np.float32))
    item = request_item(buffer.getvalue(), "application/x-npy")
    item.future = Future()
    assert c.pipeline.submit(item, timeout=GUARD)
    done = item.future.result(GUARD)
    assert set(done.stage_ms) == {"decode", "preprocess", "infer", "postprocess", "encode"}
    assert c.pipeline.stages["decode"].ledger.snapshot().items == 1

    c.monitor.sample()
    armed.set()
    stuck = request_item(buffer.getvalue(), "application/x-npy")
    stuck.future = Future()
    assert c.pipeline.submit(stuck, timeout=GUARD)
    assert entered.wait(GUARD)
    c.clock.advance(10.0)
    result = c.monitor.sample()
    assert result.stalled == ("decode",) and "decode is stalled" in result.reason
    release.set()
    assert stuck.future.result(GUARD).result is not None


def test_loglog_profile_names_a_hang_from_two_scrapes(core):
    """`loglog profile` reads the same in-flight numbers from /metrics: with one call
    stuck for 42 s between two scrapes, its verdict names infer stalled, and its table
    shows the call in flight with its age."""
    from inference.tools.profile import from_scrapes, judge, render

    def samples(c: Core) -> dict:
        text = generate_latest(c.registry).decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    c = core()
    c.start()
    c.run(20)
    c.engine.hold = True
    assert c.pipeline.submit(c.item(1), timeout=GUARD)
    assert c.engine.entered.wait(GUARD)
    c.clock.advance(40.0)
    first = samples(c)
    c.clock.advance(2.0)
    data = from_scrapes(first, samples(c), 2.0)
    result = judge(data)
    assert result.bottleneck == "infer" and result.stalled == ("infer",)
    assert (
        "infer is stalled (hung, not slow): one item has been in progress for 42 s" in result.reason
    )
    (infer,) = [row for row in data["rows"] if row["stage"] == "infer"]
    assert infer["inflight"] == 1 and infer["oldest_inflight_s"] == pytest.approx(42.0)
    assert infer["utilization"] == pytest.approx(1.0)
    assert "Bottleneck: infer (STALLED)" in render(data, result)


def test_a_streams_hung_decoder_is_in_progress_in_the_decode_stage_and_named_stalled(
    core, monkeypatch
):
    """A stream decodes through the decode stage's own loop on its thread (take = read a
    packet, call = decode it): while its decoder hangs on a packet, the decode stage holds
    that call in progress, the stream's thread counts as a decode worker, and the verdict
    names decode stalled. (Before, a stream's frame was accounted only once decoded, so a
    hung stream decoder was invisible.)"""
    import time

    from inference.core import streams as streams_module
    from inference.core.streams import StreamManager
    from inference.media.sources import Frame

    c = core()
    entered, release = threading.Event(), threading.Event()

    class HangingSource:
        """The media seam: three packets, the second one's decoding hangs."""

        fps, width, height, late = 30.0, 16, 16, 0

        def __init__(self) -> None:
            self.packets = 0

        def read(self, stop):
            if stop() or self.packets >= 3:
                return None
            self.packets += 1
            return self.packets

        def decode(self, packet):
            if packet == 2:
                entered.set()
                assert release.wait(GUARD), "the test never released the decoder"
            c.clock.advance(0.001)
            return [Frame(np.zeros((16, 16, 3), np.uint8), packet - 1, None, None, 0.0)]

    monkeypatch.setattr(streams_module, "open_source", lambda spec: HangingSource())
    manager = StreamManager(c.pipeline, c.metrics, c.drills, max_streams=2, buffer=4)
    c.start()
    try:
        manager.add("synthetic://16x16@30", "s")
        assert entered.wait(GUARD)
        c.monitor.sample()
        c.clock.advance(60.0)
        verdict = c.monitor.sample()
        decode = c.pipeline.stages["decode"].ledger.snapshot()
        assert decode.inflight == 1 and decode.oldest_age >= 60.0
        assert c.pipeline.sourced("decode") == 1
        assert verdict is not None and verdict.stalled == ("decode",), verdict
        release.set()
        deadline = time.monotonic() + GUARD  # the source ends after its third packet
        while manager.list()[0]["state"] != "ended" and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert manager.list()[0]["frames"] == 3
        assert c.pipeline.frames_in.value == 3
        assert c.pipeline.stages["decode"].ledger.snapshot().items == 3
        assert c.pipeline.sourced("decode") == 0  # its thread left the stage's workers
    finally:
        release.set()
        manager.stop_all()

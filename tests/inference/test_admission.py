"""Admission control on a fake clock: deadlines, refusals with Retry-After, streams first,
late requests dropped before the engine, and counts that add up exactly."""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import Future

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from httpkit.connections import PRIORITY_PATHS, concurrency_guard
from inference.analysis.calibration import Calibration
from inference.analysis.stats import StageLedger
from inference.analysis.tracing import Tracing
from inference.core.admission import MAX_RETRY_AFTER, Admission, admission_for
from inference.core.drills import Drills
from inference.core.pipeline import Pipeline
from inference.core.queues import StageQueue
from inference.core.service import ServiceModel
from inference.core.stages import Encode
from inference.errors import InputError, ShedError
from inference.metrics import RuntimeMetrics
from inference.types import Item
from tests.inference.test_core import GUARD, SHAPE, FakeClock, FakeEngine


class Served:
    """A pipeline around a fake engine, its admission control, all on one fake clock.
    No worker runs until ``start()``: the test decides when anything is served."""

    def __init__(self, *, per_item: float = 0.1, capacity: int = 64) -> None:
        self.clock = FakeClock()
        self.engine = FakeEngine(self.clock, per_item)
        self.metrics = RuntimeMetrics(CollectorRegistry())
        self.pipeline = Pipeline(
            engine=self.engine,
            calibration=Calibration("fake", {1: per_item, 8: per_item * 8}),
            metrics=self.metrics,
            tracing=Tracing(0.0),
            drills=Drills(self.metrics, clock=self.clock, sleep=self.clock.advance),
            encode=Encode(None),
            max_batch=8,
            max_wait=0.0,
            queue_capacity=capacity,
            clock=self.clock,
            deadline_clock=self.clock,
        )
        self.admission = admission_for(
            self.pipeline, latency_slo=1.0, default_timeout=0.8, max_timeout=30.0
        )

    def item(self) -> Item:
        return Item("http", 0, tensor=np.zeros(SHAPE, np.float32))

    def submit(self, timeout: float = 1.0) -> Future[Item]:
        return self.admission.submit(self.item(), self.clock() + timeout)

    def start(self) -> None:
        for stage in ("decode", "preprocess", "infer", "postprocess", "encode"):
            self.pipeline.set_workers(stage, 1)

    def counted(self, name: str, reason: str | None = None) -> float:
        labels = {"reason": reason} if reason else {}
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def stop(self) -> None:
        self.pipeline.stop(timeout=GUARD)


@pytest.fixture
def served():
    made: list[Served] = []

    def make(**options: float) -> Served:
        made.append(Served(**options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for s in made:
        s.stop()


def test_a_request_whose_deadline_passes_in_a_queue_never_reaches_the_engine(served):
    """Three requests admitted with a 1 s deadline wait while nothing is served; 2 s pass.
    When the workers start, the first queue drops all three: each caller gets a 503
    (reason expired), the engine never runs, and the counts say so."""
    s = served()
    futures = [s.submit(1.0) for _ in range(3)]
    s.clock.advance(2.0)
    s.start()
    for future in futures:
        with pytest.raises(ShedError) as caught:
            future.result(GUARD)
        assert caught.value.reason == "expired" and caught.value.status == 503
        assert "X-Request-Timeout" in str(caught.value)
    assert s.engine.batches == []
    assert s.counted("inference_requests_shed_total", "expired") == 3
    assert s.counted("inference_requests_admitted_total") == 3
    assert s.admission.inflight == 0


def test_a_request_served_in_time_is_answered(served):
    """The same pipeline with time to spare: admitted, run, answered (the control)."""
    s = served()
    s.start()
    done = s.submit(1.0).result(GUARD)
    assert done.result is not None and s.engine.batches == [1]
    assert s.counted("inference_requests_shed_total", "expired") == 0


def test_a_request_that_cannot_meet_its_deadline_is_refused_at_once_with_retry_after(served):
    """The engine takes 0.1 s per item (its calibration: 10/s) and nothing is served yet.
    With a 1 s deadline, requests are admitted while 0.1 s + ahead ÷ 10/s is within 60 %
    of it: six are. The seventh is refused at once (reason predicted_wait, naming the
    setting and the header). One with 0.05 s left can never be met (one item alone takes
    0.1 s): it is told so, and to send a longer deadline, not to retry (red26; it was told
    to retry after 2 s, when the same request would be refused again)."""
    s = served(per_item=0.1)
    for _ in range(6):
        s.submit(1.0)
    with pytest.raises(ShedError) as refused:
        s.submit(1.0)
    assert refused.value.reason == "predicted_wait" and refused.value.retry_after == 1
    assert "request_timeout_s" in str(refused.value) and "X-Request-Timeout" in str(refused.value)
    assert refused.value.limit == "request_timeout_s"
    with pytest.raises(ShedError) as short:
        s.submit(0.05)
    assert short.value.retry_after == MAX_RETRY_AFTER and "alone" in str(short.value)
    assert s.counted("inference_requests_admitted_total") == 6
    assert s.counted("inference_requests_shed_total", "predicted_wait") == 2
    assert s.admission.inflight == 6


def test_requests_that_expire_anyway_make_admission_more_careful_until_answers_return(served):
    """Three admitted requests expire in their queue (the prediction was optimistic): the
    share of the deadline a prediction may use is cut from 60 % to 60 % × 0.75³ ≈ 25 %, so
    with a 1 s deadline only two requests are admitted now (0.1 s and 0.2 s predicted)
    where six were; each request answered grows the share back by 2 points."""
    s = served(per_item=0.1)
    queue = s.pipeline.queues["preprocess"]  # where tensors enter
    for _ in range(3):
        s.submit(1.0)
    s.clock.advance(2.0)
    assert queue.get_up_to(8, 0) == []  # all three dropped, each caller answered 503
    assert s.admission.share == pytest.approx(0.6 * 0.75**3)
    admitted = 0
    with pytest.raises(ShedError):
        for _ in range(10):
            s.submit(1.0)
            admitted += 1
    assert admitted == 2
    for item in queue.get_up_to(8, 0):
        item.future.set_result(item)
    assert s.admission.share == pytest.approx(0.6 * 0.75**3 + 0.04)


def test_after_an_overload_the_share_grows_back_with_time_and_a_lone_request_is_tried(served):
    """Expiries cut the share to its floor (15 %). With nothing in flight a request that
    could make it alone is admitted even so (progress); after 5 s without expiries the
    share is back at 60 %, so a 0.5× load 10 s after an overload is not refused."""
    s = served(per_item=0.1)
    queue = s.pipeline.queues["preprocess"]
    for _ in range(8):  # eight expiries: 0.6 × 0.75⁸ < 0.15
        s.submit(10.0)
        s.clock.advance(11.0)
        queue.get_up_to(8, 0)
    assert s.admission.share == pytest.approx(0.15)
    s.submit(0.5)  # alone: 0.1 s predicted, past 15 % of 0.5 s but within it
    (item,) = queue.get_up_to(1, 0)
    item.future.set_result(item)
    s.clock.advance(5.0)
    for _ in range(6):
        s.submit(1.0)
    assert s.admission.share == pytest.approx(0.6)


def test_what_was_just_served_is_a_floor_under_the_modelled_rate(served):
    """The model says 5/s (0.2 s per item), but 20 requests were answered in the last
    2 s: 10/s is used. Once the window holds nothing, the model's rate is back."""
    s = served(per_item=0.2)
    queue = s.pipeline.queues["preprocess"]
    s.clock.advance(2.0)
    for _ in range(20):
        s.submit(10.0)
        (item,) = queue.get_up_to(1, 0)
        item.future.set_result(item)
        s.clock.advance(0.09)
    assert s.admission.http_rate() == pytest.approx(10.0)
    s.clock.advance(3.0)
    assert s.admission.http_rate() == pytest.approx(5.0)


def test_a_full_queue_is_a_refusal_not_a_wait(served):
    """Two places in the first queue: the third request is refused (queue_full) at once,
    and is not counted as admitted."""
    s = served(per_item=0.0001, capacity=2)
    s.submit(10.0)
    s.submit(10.0)
    with pytest.raises(ShedError) as full:
        s.submit(10.0)
    assert full.value.reason == "queue_full" and full.value.limit == "queue_capacity"
    assert s.counted("inference_requests_admitted_total") == 2
    assert s.counted("inference_requests_shed_total", "queue_full") == 1
    assert s.admission.inflight == 2


def _frame(index: int) -> Item:
    return Item("cam", index)


def _request(deadline: float | None = None) -> Item:
    item = Item("http", 0, deadline=deadline)
    item.future = Future()
    return item


def test_stream_frames_go_first_and_requests_never_take_their_room():
    """A queue of 2 filled by requests refuses a third request but still takes frames;
    frames come out before the requests that were there first."""
    clock = FakeClock()
    queue = StageQueue("preprocess", 2, RuntimeMetrics(CollectorRegistry()), clock=clock)
    first, second = _request(), _request()
    assert queue.put(first, 0) and queue.put(second, 0)
    assert not queue.put(_request(), 0)
    frames = [_frame(1), _frame(2)]
    assert all(queue.put(frame, 0) for frame in frames)
    assert queue.get_up_to(3, 0) == [*frames, first]
    assert queue.get(0) is second


def test_a_queue_drops_only_requests_that_can_no_longer_finish():
    """With 0.3 s still needed after this queue, a request due in 0.2 s is dropped and
    handed to on_expired; one due in 0.5 s and a frame (no deadline) are taken."""
    clock = FakeClock()
    queue = StageQueue("infer", 8, RuntimeMetrics(CollectorRegistry()), clock=clock)
    queue.reserve = 0.3
    dropped: list[Item] = []
    queue.on_expired = dropped.extend
    late, fine, frame = _request(clock() + 0.2), _request(clock() + 0.5), _frame(0)
    for item in (late, fine, frame):
        assert queue.put(item, 0)
    assert queue.get_up_to(8, 0) == [frame, fine]
    assert dropped == [late] and len(queue) == 0


def test_late_requests_leave_even_while_frames_fill_every_batch():
    """Streams keep a batch full of frames: a request whose deadline passed must still be
    answered (dropped) when a batch is taken, not wait until the streams pause."""
    clock = FakeClock()
    queue = StageQueue("infer", 8, RuntimeMetrics(CollectorRegistry()), clock=clock)
    dropped: list[Item] = []
    queue.on_expired = dropped.extend
    late, waiting = _request(clock() + 0.1), _request(clock() + 5.0)
    for item in (late, waiting, _frame(0), _frame(1)):
        assert queue.put(item, 0)
    clock.advance(0.2)
    assert [item.frame for item in queue.get_up_to(2, 0)] == [0, 1]
    assert dropped == [late] and queue.requests() == 1


def _model(
    clock: FakeClock,
    frames: list[int],
    per_item: float = 0.1,
    ledgers: dict[str, StageLedger] | None = None,
) -> ServiceModel:
    ledgers = ledgers or {stage: StageLedger(clock) for stage in ("decode", "preprocess", "infer")}
    return ServiceModel(
        ledgers,
        workers=lambda stage: 1,
        frames=lambda: frames[0],
        shared=frozenset({"preprocess", "infer"}),
        batch_wait=lambda: 0.0,
        initial={"infer": (per_item, per_item)},
        clock=clock,
    )


def test_the_streams_frames_come_out_of_the_http_capacity():
    """The engine serves 10 items/s. Streams bringing 8 frames/s leave 2/s for HTTP; at
    12 frames/s nothing is left, and a request is refused at once saying the streams take
    it all; when they stop, the next window gives HTTP the whole engine back."""
    clock, frames = FakeClock(), [0]
    model = _model(clock, frames)
    assert model.http_rate == pytest.approx(10.0)
    frames[0] += 8
    clock.advance(1.0)
    model.refresh()
    assert model.frame_rate == pytest.approx(8.0) and model.http_rate == pytest.approx(2.0)
    frames[0] += 12  # 12 frames in the next second: more than the engine's 10
    clock.advance(1.0)
    model.refresh()
    assert model.http_rate == 0.0
    admission = Admission(
        model,
        lambda item: True,
        RuntimeMetrics(CollectorRegistry()),
        latency_slo=1.0,
        default_timeout=0.8,
        max_timeout=30.0,
        clock=clock,
    )
    with pytest.raises(ShedError) as refused:
        admission.submit(Item("http", 0), admission.deadline(None))
    assert "streams take the whole capacity" in str(refused.value)
    assert refused.value.retry_after == 30
    clock.advance(1.0)  # the streams were deleted: no frames in this window
    model.refresh()
    assert model.http_rate == pytest.approx(10.0)


def test_measured_service_times_replace_the_calibrated_guess():
    """Calibration said 0.1 s per item; the ledgers then measure decode at 0.05 s per item
    and infer at 0.02 s (batches of 5 in 0.1 s). One refresh moves infer halfway (0.06 s:
    16.7/s), below decode's 20/s: the slowest stage sets the rate. Each stage's reserve
    is the per-call time of the stages from it to the end."""
    clock = FakeClock()
    ledgers = {stage: StageLedger(clock) for stage in ("decode", "preprocess", "infer")}
    model = _model(clock, [0], ledgers=ledgers)
    decode, infer = ledgers["decode"], ledgers["infer"]
    for _ in range(4):
        token, _ = decode.enter(1)
        clock.advance(0.05)
        decode.leave(token, clock(), ok=1)
        token, _ = infer.enter(5)
        clock.advance(0.1)
        infer.leave(token, clock(), ok=5)
    model.refresh(force=True)
    assert model.per_item["decode"] == pytest.approx(0.05)
    assert model.per_item["infer"] == pytest.approx((0.1 + 0.02) / 2)  # blended once
    assert model.http_rate == pytest.approx(1 / 0.06)
    assert model.reserves["infer"] == pytest.approx(model.per_call["infer"])
    assert model.reserves["decode"] == pytest.approx(0.05 + (0.1 + 0.1) / 2)
    assert model.floor == model.reserves["decode"]


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("submit"), st.floats(0.01, 3.0)),
            st.tuples(st.just("advance"), st.floats(0.0, 1.0)),
            st.tuples(st.just("serve"), st.integers(1, 4)),
        ),
        max_size=60,
    )
)
def test_counts_add_up_exactly_whatever_happens(ops):
    """Any sequence of arrivals (any deadline), time passing and a server taking requests
    from its queue: offered = admitted + refused, and admitted = answered + expired +
    still in flight — exactly, from the exported counters."""
    s = Served(per_item=0.1, capacity=5)
    queue = s.pipeline.queues["preprocess"]  # where tensors enter
    offered = answered = 0
    try:
        for op, value in ops:
            if op == "submit":
                offered += 1
                try:
                    s.submit(float(value))
                except ShedError as exc:
                    assert exc.reason in ("predicted_wait", "queue_full")
            elif op == "advance":
                s.clock.advance(float(value))
            else:
                for item in queue.get_up_to(int(value), 0):
                    assert item.future is not None
                    item.future.set_result(item)
                    answered += 1
        admitted = s.counted("inference_requests_admitted_total")
        refused = sum(
            s.counted("inference_requests_shed_total", reason)
            for reason in ("predicted_wait", "queue_full")
        )
        expired = s.counted("inference_requests_shed_total", "expired")
        assert admitted + refused == offered
        assert admitted == answered + expired + s.admission.inflight
        assert s.admission.inflight == len(queue)
    finally:
        s.stop()


def header_admission(clock: FakeClock) -> Admission:
    """An idle admission with a 1 s SLO, a 0.8 s default deadline and a 30 s maximum: what
    the X-Request-Timeout tests read deadlines from."""
    return Admission(
        _model(clock, [0]),
        lambda item: True,
        RuntimeMetrics(CollectorRegistry()),
        latency_slo=1.0,
        default_timeout=0.8,
        max_timeout=30.0,
        clock=clock,
    )


@settings(max_examples=100, deadline=None)
@given(seconds=st.floats(min_value=1e-3, max_value=1e6, allow_nan=False))
def test_the_timeout_header_sets_the_deadline_capped_at_the_maximum(seconds):
    """Any positive number of seconds in X-Request-Timeout moves the deadline by that
    much, up to max_request_timeout_s; without the header the default applies."""
    clock = FakeClock()
    admission = header_admission(clock)
    assert admission.deadline(repr(seconds)) - clock() == pytest.approx(min(seconds, 30.0))
    assert admission.deadline(None) - clock() == pytest.approx(0.8)


@pytest.mark.parametrize("header", ["soon", "", "-1", "0", "nan", "inf", "1e400", "0x10"])
def test_a_bad_timeout_header_is_a_400_naming_it(header):
    clock = FakeClock()
    admission = header_admission(clock)
    with pytest.raises(InputError, match="X-Request-Timeout") as caught:
        admission.deadline(header)
    assert caught.value.status == 400


class _State:
    def __init__(self, connections: int, tasks: int) -> None:
        self.connections = set(range(connections))
        self.tasks = set(range(tasks))


def _call(app, path: str, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers, body


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_past_max_connections_requests_get_a_503_naming_it_but_the_probes_are_served():
    """Six connections open with a limit of 4: an inference request gets a 503 with
    Retry-After and a body naming max_connections (counted); /metrics, /healthz, /readyz
    and /v1/profile are served anyway. Under the limit everything is served."""
    limited: list[int] = []
    guarded = concurrency_guard(_ok, _State(6, 2), 4, lambda: limited.append(1))
    status, headers, body = _call(guarded, "/v1/infer")
    assert status == 503 and headers["retry-after"] == "1"
    assert b"max_connections" in body and limited == [1]
    for path in PRIORITY_PATHS:
        assert _call(guarded, path, "GET")[0] == 200
    assert _call(concurrency_guard(_ok, _State(4, 4), 4), "/v1/infer")[0] == 200


def test_an_unmeasured_pipeline_admits_on_its_calibration():
    """Before anything was measured only the engine's calibration is known: 0.05 s per
    item, so the predicted answer is its per-call time (nothing ahead)."""
    s = Served(per_item=0.05)
    try:
        assert s.admission.predicted() == pytest.approx(0.05)
        assert math.isfinite(s.admission.model.http_rate)
        described = s.admission.describe()
        assert described["http_capacity_items_per_s"] == pytest.approx(20.0)
        assert s.counted("inference_admission_capacity_items_per_second") == pytest.approx(20.0)
        assert described["request_timeout_s"] == 0.8
    finally:
        s.stop()


def test_the_streams_rate_is_what_their_sources_decode_dropped_or_not(served):
    """A live stream that falls behind drops frames before the pipeline takes them; what
    it asks of the engine is every frame its source decodes. Three decoded frames count
    three, though none was handed to a queue."""
    s = served()
    packets, done = iter(range(3)), threading.Event()

    def take() -> list[Item]:
        packet = next(packets, None)
        if packet is None:
            done.set()
            return []
        return [_frame(packet)]

    dropped: list[Item] = []
    stage = s.pipeline.source_stage(take, lambda items: items, dropped.append, dropped.append)
    s.pipeline.run_stage(stage, done)  # a stream's thread: the decode stage's loop
    assert s.pipeline.frames_in.value == 3 and len(dropped) == 3


def test_a_request_refused_past_max_connections_is_read_to_its_end_before_the_answer():
    """The guard answers with Connection: close. Closing with the body still unread makes
    the kernel reset the connection, and a client still sending never reads the 503: the
    body is read (and dropped) first."""
    events: list[str] = []
    chunks = [(b"x" * 1000, True), (b"y" * 1000, True), (b"z" * 10, False)]

    async def receive() -> dict:
        body, more = chunks.pop(0)
        events.append("read")
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(message: dict) -> None:
        events.append(message["type"])

    guarded = concurrency_guard(_ok, _State(9, 1), 4)
    scope = {"type": "http", "method": "POST", "path": "/v1/infer", "headers": []}
    asyncio.run(guarded(scope, receive, send))
    assert events == ["read", "read", "read", "http.response.start", "http.response.body"]

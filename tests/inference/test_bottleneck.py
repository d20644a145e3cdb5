"""The verdict: saturated stage with pressure in front and idle behind; else the input."""

from __future__ import annotations

from inference.analysis.bottleneck import StageWindow, verdict


def _stages(**overrides):
    base = {
        "decode": StageWindow("decode", 90, 0.05, 3),
        "preprocess": StageWindow("preprocess", 90, 0.2, 1, 0.0),
        "infer": StageWindow("infer", 90, 0.5, 1, 0.0),
        "postprocess": StageWindow("postprocess", 90, 0.01, 1, 0.0),
        "encode": StageWindow("encode", 90, 0.01, 1, 0.0),
    }
    base.update(overrides)
    return list(base.values())


def test_nothing_saturated_means_the_offered_load_is_the_limit():
    """Low utilization everywhere: bottleneck 'input', headroom reported."""
    result = verdict(_stages(), delivered_per_s=90, capacity_per_s=180, engine_efficiency=0.98)
    assert result.bottleneck == "input"
    assert result.pipeline_efficiency == 0.5
    assert "Headroom: about 90" in result.advice


def test_a_saturated_stage_with_a_full_queue_is_named_and_infer_is_starved():
    """preprocess busy 100 % with its queue full, infer idle: preprocess, engine starved."""
    stages = _stages(
        preprocess=StageWindow("preprocess", 50, 1.0, 1, 1.0, 2.0),
        infer=StageWindow("infer", 50, 0.3, 1, 0.0),
    )
    result = verdict(stages, delivered_per_s=50, capacity_per_s=180, engine_efficiency=1.0)
    assert result.bottleneck == "preprocess"
    assert result.engine_starved
    assert "Add preprocess workers (now 1)" in result.advice


def test_in_decode_processes_the_advice_is_more_decode_processes_not_workers():
    """Streams preprocessed in decode processes: more preprocess threads would not help
    them, so the advice names `decode_processes` (it said "Add preprocess workers")."""
    stages = _stages(
        preprocess=StageWindow("preprocess", 50, 1.0, 3, 1.0, 2.0),
        infer=StageWindow("infer", 50, 0.3, 1, 0.0),
    )
    result = verdict(
        stages, delivered_per_s=50, capacity_per_s=180, engine_efficiency=1.0, decode_processes=1
    )
    assert result.bottleneck == "preprocess"
    assert "Add preprocess workers" not in result.advice
    assert "in 1 decode process:" in result.advice and "raise `decode_processes`" in result.advice
    decode = _stages(
        decode=StageWindow("decode", 40, 1.0, 3), infer=StageWindow("infer", 40, 0.2, 1)
    )
    result = verdict(
        decode, delivered_per_s=40, capacity_per_s=180, engine_efficiency=1.0, decode_processes=2
    )
    assert result.bottleneck == "decode"
    assert "in 2 decode processes:" in result.advice


def test_upstream_stages_blocked_by_backpressure_do_not_steal_the_verdict():
    """Two stages look busy; the one with a full input and an empty output queue wins."""
    stages = _stages(
        preprocess=StageWindow("preprocess", 60, 0.85, 1, 1.0),
        infer=StageWindow("infer", 60, 0.99, 1, 1.0),
        postprocess=StageWindow("postprocess", 60, 0.02, 1, 0.0),
    )
    result = verdict(stages, delivered_per_s=60, capacity_per_s=180, engine_efficiency=1.0)
    assert result.bottleneck == "infer"
    assert not result.engine_starved


def test_a_saturated_engine_below_its_calibration_with_busy_cores_is_called_contention():
    """infer saturated, running at 60 % of its calibrated speed, the host's CPUs 95 % busy:
    the advice says CPU contention."""
    stages = _stages(infer=StageWindow("infer", 100, 1.0, 1, 0.9))
    result = verdict(
        stages, delivered_per_s=100, capacity_per_s=170, engine_efficiency=0.6, cpu_busy=0.95
    )
    assert result.bottleneck == "infer"
    assert "CPU contention" in result.advice


def test_a_slow_engine_on_idle_cores_is_not_called_contention():
    """The same slow engine with the cores 30 % busy: throttling or the engine, not
    contention, and no advice to move to a GPU."""
    stages = _stages(infer=StageWindow("infer", 100, 1.0, 1, 0.9))
    result = verdict(
        stages, delivered_per_s=100, capacity_per_s=170, engine_efficiency=0.6, cpu_busy=0.3
    )
    assert "contention" in result.advice and "not contention" in result.advice
    assert "GPU" not in result.advice.split("—")[0]


def test_a_drilled_slow_stage_is_called_slow_and_the_drill_is_named():
    """infer saturated with most of its busy time in a drill: the verdict calls it slow
    but moving and the advice points at the drill, not at the hardware."""
    stages = _stages(infer=StageWindow("infer", 30, 1.0, 1, 0.9, drilled_share=0.9, p99_s=0.24))
    result = verdict(stages, delivered_per_s=30, capacity_per_s=170, engine_efficiency=1.0)
    assert result.bottleneck == "infer" and not result.stalled
    assert "slow but moving" in result.reason and "p99 240 ms" in result.reason
    assert "DELETE /v1/drills" in result.advice and "contention" not in result.advice


def test_a_hung_stage_is_stalled_named_first_and_no_headroom_is_claimed():
    """postprocess holds one item for 42 s with a 4 ms p99 and reads idle elsewhere: the
    verdict names it stalled in words and claims no headroom."""
    stages = _stages(
        postprocess=StageWindow(
            "postprocess", 0.0, 1.0, 1, 1.0, inflight=1, oldest_inflight_s=42.0,
            p50_s=0.002, p99_s=0.004,
        ),
        infer=StageWindow("infer", 0.0, 0.0, 1, 0.0),
    )  # fmt: skip
    result = verdict(stages, delivered_per_s=0.0, capacity_per_s=180, engine_efficiency=None)
    assert result.bottleneck == "postprocess" and result.stalled == ("postprocess",)
    assert (
        "postprocess is stalled (hung, not slow): one item has been in progress for 42 s; "
        "p99 is 4 ms" in result.reason
    )
    assert "Headroom" not in result.advice and "No headroom" in result.advice


def test_a_long_call_of_a_slow_stage_is_not_a_stall():
    """A stage whose normal call takes 2 s has a call in progress for 20 s: 10× its
    median, below the 50× needed to call it hung."""
    stages = _stages(
        infer=StageWindow("infer", 0.5, 1.0, 1, 1.0, inflight=8, oldest_inflight_s=20.0, p50_s=2.0)
    )
    result = verdict(stages, delivered_per_s=0.5, capacity_per_s=1.0, engine_efficiency=1.0)
    assert result.stalled == () and result.bottleneck == "infer"


def test_decode_saturated_sources_are_named():
    """Sources busy all the time with empty queues downstream: decode."""
    stages = _stages(decode=StageWindow("decode", 20, 0.97, 2))
    result = verdict(stages, delivered_per_s=20, capacity_per_s=180, engine_efficiency=1.0)
    assert result.bottleneck == "decode"
    assert "decode in real time" in result.advice


def test_an_unknown_cpu_load_is_never_read_as_not_contention():
    """`loglog profile` without the agent's numbers (cpu_busy None) used to advise "not
    contention — the device is throttled … check the GPU throttle reasons" on a CPU-only
    host under load: unknown is said to be unknown, contention is not ruled out."""
    stages = _stages(infer=StageWindow("infer", 100, 1.0, 1, 0.9))
    for gpu in (None, False, True):
        result = verdict(
            stages, delivered_per_s=100, capacity_per_s=170, engine_efficiency=0.6, gpu=gpu
        )
        assert "not contention" not in result.advice
        assert "CPU load is unknown" in result.advice and "not ruled out" in result.advice
        assert ("GPU" in result.advice) == bool(gpu), result.advice


def test_gpu_causes_are_named_only_for_a_gpu_engine():
    """A slow engine on idle cores: a GPU engine is pointed at its throttle reasons, a CPU
    engine (or one whose device is unknown) never; a hung infer call names XIDs only on a
    GPU."""
    slow = _stages(infer=StageWindow("infer", 100, 1.0, 1, 0.9))
    hung = _stages(infer=StageWindow("infer", 0.0, 1.0, 1, 1.0, inflight=1, oldest_inflight_s=60))
    for gpu in (None, False, True):
        advice = verdict(
            slow, delivered_per_s=100, capacity_per_s=170, engine_efficiency=0.6,
            cpu_busy=0.3, gpu=gpu,
        ).advice  # fmt: skip
        assert "not contention" in advice
        assert ("GPU is throttled" in advice) == bool(gpu), advice
        stalled = verdict(
            hung, delivered_per_s=0, capacity_per_s=170, engine_efficiency=None, gpu=gpu
        ).advice
        assert ("XID" in stalled) == bool(gpu), stalled


def test_a_queue_past_its_capacity_reads_full_not_over_100_percent():
    """Depth can pass queue_capacity (frames fill their lane to it while HTTP requests wait
    in theirs); the verdict said "input queue 101% full", now "input queue full"."""
    stages = _stages(
        preprocess=StageWindow("preprocess", 50, 1.0, 1, 1.01, 2.0),
        infer=StageWindow("infer", 50, 0.3, 1, 0.0),
    )
    result = verdict(stages, delivered_per_s=50, capacity_per_s=180, engine_efficiency=1.0)
    assert result.bottleneck == "preprocess"
    assert "input queue full" in result.reason and "101%" not in result.reason
    half = _stages(
        preprocess=StageWindow("preprocess", 50, 1.0, 1, 0.5, 2.0),
        infer=StageWindow("infer", 50, 0.3, 1, 0.0),
    )
    assert (
        "input queue 50% full"
        in verdict(half, delivered_per_s=50, capacity_per_s=180, engine_efficiency=1.0).reason
    )

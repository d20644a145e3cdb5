"""The verdict: saturated stage with pressure in front and idle behind; else the input."""

from __future__ import annotations

from inference.bottleneck import StageWindow, verdict


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


def test_a_saturated_engine_below_its_calibration_is_called_contention():
    """infer saturated while running at 60 % of its calibrated speed: advice says so."""
    stages = _stages(infer=StageWindow("infer", 100, 1.0, 1, 0.9))
    result = verdict(stages, delivered_per_s=100, capacity_per_s=170, engine_efficiency=0.6)
    assert result.bottleneck == "infer"
    assert "CPU contention" in result.advice


def test_decode_saturated_sources_are_named():
    """Sources busy all the time with empty queues downstream: decode."""
    stages = _stages(decode=StageWindow("decode", 20, 0.97, 2))
    result = verdict(stages, delivered_per_s=20, capacity_per_s=180, engine_efficiency=1.0)
    assert result.bottleneck == "decode"
    assert "decode in real time" in result.advice

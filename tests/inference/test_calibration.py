"""Capacity calibration: the engine alone, per batch size; interpolation between sizes."""

from __future__ import annotations

import pytest

from inference.analysis.calibration import Calibration, batch_sizes, calibrate
from inference.engines import load_engine


def test_batch_sizes_cover_powers_of_two_and_the_maximum():
    """Calibrated sizes: 1, 2, 4, … up to max_batch, and max_batch itself."""
    assert batch_sizes(1) == [1]
    assert batch_sizes(8) == [1, 2, 4, 8]
    assert batch_sizes(12) == [1, 2, 4, 8, 12]


def test_latency_is_interpolated_and_extrapolated_conservatively():
    """Between calibrated sizes latency is linear; past the largest, per-item cost stays."""
    calibration = Calibration("m", {1: 0.010, 4: 0.016})
    assert calibration.latency(1) == pytest.approx(0.010)
    assert calibration.latency(2) == pytest.approx(0.012)
    assert calibration.capacity(4) == pytest.approx(250.0)
    assert calibration.latency(8) == pytest.approx(0.032)
    assert calibration.best_capacity(8) == pytest.approx(250.0)


def test_the_calibrated_batch_policy_batches_only_as_far_as_it_pays():
    """GPU-like scaling: the largest batch wins. CPU-like (no gain past 1): batch 1, so the
    batcher adds no latency for nothing. Near-ties go to the smaller batch."""
    gpu = Calibration("m", {1: 0.010, 2: 0.011, 4: 0.013, 8: 0.017})
    assert gpu.best_batch(8) == 8 and gpu.best_batch(4) == 4
    cpu = Calibration("m", {1: 0.0060, 2: 0.0125, 4: 0.026, 8: 0.053})
    assert cpu.best_batch(8) == 1
    flat = Calibration("m", {1: 0.0100, 2: 0.0199, 4: 0.0396})  # batch 4 only 1 % better
    assert flat.best_batch(4) == 1, "within 2 % of the best: prefer less latency"


def test_calibrating_the_real_engine_gives_a_plausible_capacity():
    """ONNX Runtime on the default model: each size measured, capacity = size ÷ latency."""
    engine = load_engine(threads=1)
    seen: list[int] = []
    calibration = calibrate(
        engine, [1, 2], seconds=0.2, progress=lambda size, rate: seen.append(size)
    )
    assert seen == [1, 2]
    assert set(calibration.seconds_per_batch) == {1, 2}
    for size, seconds in calibration.seconds_per_batch.items():
        assert 0.0005 < seconds < 5.0
        assert calibration.capacity(size) == pytest.approx(size / seconds)


class _FakeEngine:
    """An engine whose batch takes whatever the script says, on a fake clock."""

    def __init__(self, clock: list[float], per_round: dict[int, list[float]]) -> None:
        self.clock, self.per_round, self.calls = clock, per_round, 0
        self.timed: dict[int, int] = {}

    def describe(self):
        from inference.types import EngineInfo

        return EngineInfo(
            name="fake", kind="fake", device="cpu", input_name="x", input_shape=(2,),
            input_dtype="float32", output_names=("y",), threads=1, max_batch=None,
        )  # fmt: skip

    def run(self, batch):
        size = len(batch)
        script = self.per_round[size]
        self.calls += 1
        # Every 3 calls move to the next entry: warm-up, then one entry per round.
        index = min(len(script) - 1, self.timed.get(size, 0) // 3)
        self.timed[size] = self.timed.get(size, 0) + 1
        self.clock[0] += script[index]
        return {"y": batch}


def test_calibration_reports_the_median_and_the_spread_of_its_rounds():
    """Three rounds at 10, 12 and 8 ms per batch: capacity is the median (100 items/s),
    the range 83–125 items/s, the spread (125 − 83) ÷ 100 = 0.42."""
    clock = [0.0]
    engine = _FakeEngine(clock, {1: [0.010, 0.010, 0.012, 0.008]})
    calibration = calibrate(
        engine, [1], seconds=0.0, warmup=3, min_runs=3, repeats=3, clock=lambda: clock[0]
    )
    assert calibration.capacity(1) == pytest.approx(100.0)
    low, median, high = calibration.capacity_range(1)
    assert (low, median, high) == pytest.approx((1 / 0.012, 100.0, 125.0))
    assert calibration.spread(1) == pytest.approx((125 - 1 / 0.012) / 100)


def test_the_spread_is_exported_next_to_the_capacity():
    from prometheus_client import CollectorRegistry

    from inference.analysis.calibration import export
    from inference.metrics import RuntimeMetrics

    registry = CollectorRegistry()
    calibration = Calibration("m", {1: 0.010}, rounds={1: (0.012, 0.010, 0.008)})
    export(calibration, RuntimeMetrics(registry))
    value = registry.get_sample_value
    assert value(
        "inference_model_capacity_items_per_second", {"model": "m", "batch_size": "1"}
    ) == pytest.approx(100)
    assert value(
        "inference_model_capacity_range_items_per_second",
        {"model": "m", "batch_size": "1", "bound": "min"},
    ) == pytest.approx(1 / 0.012)
    assert value(
        "inference_model_capacity_range_items_per_second",
        {"model": "m", "batch_size": "1", "bound": "max"},
    ) == pytest.approx(125)
    assert value("inference_model_capacity_spread_ratio", {"model": "m", "batch_size": "1"}) == pytest.approx(0.4167, abs=1e-3)  # fmt: skip


def test_a_hand_built_calibration_has_no_spread_and_repeats_must_be_positive():
    calibration = Calibration("m", {1: 0.010})
    assert calibration.capacity_range(1) == pytest.approx((100, 100, 100))
    assert calibration.spread(1) == 0
    with pytest.raises(ValueError, match="repeats"):
        calibrate(_FakeEngine([0.0], {1: [0.01]}), [1], repeats=0)

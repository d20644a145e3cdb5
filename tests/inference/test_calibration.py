"""Capacity calibration: the engine alone, per batch size; interpolation between sizes."""

from __future__ import annotations

import pytest

from inference.calibration import Calibration, batch_sizes, calibrate
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

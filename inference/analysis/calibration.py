"""Capacity calibration: the engine alone, timed at each batch size in use.

Before serving, each batch size is run on a fixed tensor (warm-up, then about
``seconds`` of timed runs, split into ``repeats`` rounds that visit every size in turn)
with the engine's configured threads. The result is the model-only capacity — items/s
the model delivers when nothing else limits it — which is the denominator of both
efficiencies. It is the **median** of the rounds, and their min and max are kept: on a
shared machine calibration moves by ±5–10 % between restarts (168–188 items/s measured
here), so an efficiency change smaller than the spread is not a regression. Latency
between calibrated sizes is interpolated linearly; past the largest it is extrapolated at
the largest size's per-item cost (conservative: batching does not speed up further).
"""

from __future__ import annotations

import bisect
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from ..types import Engine

if TYPE_CHECKING:
    from ..metrics import RuntimeMetrics


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Measured seconds per batch at each calibrated batch size (the median of the
    rounds), and each size's (min, max) seconds per batch over the rounds."""

    model: str
    seconds_per_batch: dict[int, float]
    flops_per_item: int | None = None
    peak_flops: float | None = None
    rounds: dict[int, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    def capacity_range(self, batch_size: int) -> tuple[float, float, float]:
        """(lowest, median, highest) items/s a calibrated size reached over the rounds.

        A size calibrated in one round (or built by hand) has no spread: all three equal.
        """
        median = self.capacity(batch_size)
        seconds = self.rounds.get(batch_size)
        if not seconds:
            return median, median, median
        return batch_size / max(seconds), median, batch_size / min(seconds)

    def spread(self, batch_size: int) -> float:
        """(highest − lowest) ÷ median capacity over the rounds: 0.08 means ±4 %."""
        low, median, high = self.capacity_range(batch_size)
        return (high - low) / median

    def latency(self, batch_size: int) -> float:
        """Expected engine seconds for a batch of ``batch_size``."""
        sizes = sorted(self.seconds_per_batch)
        if batch_size in self.seconds_per_batch:
            return self.seconds_per_batch[batch_size]
        if batch_size < sizes[0]:
            return self.seconds_per_batch[sizes[0]] * batch_size / sizes[0]
        if batch_size > sizes[-1]:
            last = sizes[-1]
            return self.seconds_per_batch[last] * batch_size / last
        index = bisect.bisect_left(sizes, batch_size)
        low, high = sizes[index - 1], sizes[index]
        weight = (batch_size - low) / (high - low)
        return self.seconds_per_batch[low] * (1 - weight) + self.seconds_per_batch[high] * weight

    def capacity(self, batch_size: int) -> float:
        """Model-only items/s at ``batch_size``."""
        return batch_size / self.latency(batch_size)

    def best_capacity(self, max_batch: int) -> float:
        """The most items/s any batch size up to ``max_batch`` reaches."""
        return max(self.capacity(size) for size in range(1, max_batch + 1))

    def best_batch(self, max_batch: int, tolerance: float = 0.02) -> int:
        """The smallest calibrated batch size within ``tolerance`` of the best capacity up
        to ``max_batch``: batching only as far as it pays. On a GPU capacity grows with
        the batch, so this is the largest; on a CPU it is often 1 (measured here: batch 8
        delivers 8 % less than batch 1), and batching would only add latency."""
        sizes = [size for size in sorted(self.seconds_per_batch) if size <= max_batch] or [1]
        best = max(self.capacity(size) for size in sizes)
        return next(size for size in sizes if self.capacity(size) >= best * (1 - tolerance))


def batch_sizes(max_batch: int) -> list[int]:
    """Powers of two up to ``max_batch``, and ``max_batch`` itself."""
    sizes = {1, max_batch}
    size = 2
    while size < max_batch:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def calibrate(
    engine: Engine,
    sizes: Iterable[int],
    *,
    seconds: float = 1.0,
    warmup: int = 3,
    min_runs: int = 3,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    flops_per_item: int | None = None,
    peak_flops: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Calibration:
    """Time ``engine`` alone at each batch size: ``repeats`` rounds of about
    ``seconds / repeats`` each (and at least ``min_runs`` runs), the sizes interleaved so a
    burst of load elsewhere hits them alike; ``progress(size, items_per_s)`` reports each
    size's median once its rounds are done."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    info = engine.describe()
    rng = np.random.default_rng(0)
    order = list(sizes)
    batches = {
        size: rng.random((size, *info.input_shape)).astype(info.input_dtype) for size in order
    }
    for size in order:
        for _ in range(warmup):
            engine.run(batches[size])
    rounds: dict[int, list[float]] = {size: [] for size in order}
    for _ in range(repeats):
        for size in order:
            batch, runs = batches[size], 0
            started = clock()
            while runs < min_runs or clock() - started < seconds / repeats:
                engine.run(batch)
                runs += 1
            rounds[size].append((clock() - started) / runs)
    measured = {size: statistics.median(values) for size, values in rounds.items()}
    if progress is not None:
        for size in order:
            progress(size, size / measured[size])
    return Calibration(
        info.name, measured, flops_per_item, peak_flops,
        rounds={size: tuple(values) for size, values in rounds.items()},
    )  # fmt: skip


def export(calibration: Calibration, metrics: RuntimeMetrics) -> None:
    """Set the capacity gauges: the median per size, its range and its spread."""
    model = calibration.model
    for size in calibration.seconds_per_batch:
        low, median, high = calibration.capacity_range(size)
        metrics.model_capacity_items_per_second.labels(model, str(size)).set(median)
        ranges = metrics.model_capacity_range_items_per_second
        ranges.labels(model, str(size), "min").set(low)
        ranges.labels(model, str(size), "max").set(high)
        metrics.model_capacity_spread_ratio.labels(model, str(size)).set(calibration.spread(size))

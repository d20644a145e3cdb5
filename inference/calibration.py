"""Capacity calibration: the engine alone, timed at each batch size in use.

Before serving, each batch size is run on a fixed tensor (warm-up, then about
``seconds`` of timed runs) with the engine's configured threads. The result is the
model-only capacity — items/s the model delivers when nothing else limits it — which is
the denominator of both efficiencies. Latency between calibrated sizes is interpolated
linearly; past the largest it is extrapolated at the largest size's per-item cost
(conservative: batching does not speed up further).
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from collections.abc import Callable, Iterable

import numpy as np

from .types import Engine


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Measured seconds per batch at each calibrated batch size."""

    model: str
    seconds_per_batch: dict[int, float]
    flops_per_item: int | None = None
    peak_flops: float | None = None

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
    clock: Callable[[], float] = time.perf_counter,
    flops_per_item: int | None = None,
    peak_flops: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Calibration:
    """Time ``engine`` alone at each batch size; ``progress(size, items_per_s)`` reports."""
    info = engine.describe()
    rng = np.random.default_rng(0)
    measured: dict[int, float] = {}
    for size in sizes:
        batch = rng.random((size, *info.input_shape)).astype(info.input_dtype)
        for _ in range(warmup):
            engine.run(batch)
        runs = 0
        started = clock()
        while runs < min_runs or clock() - started < seconds:
            engine.run(batch)
            runs += 1
        measured[size] = (clock() - started) / runs
        if progress is not None:
            progress(size, size / measured[size])
    return Calibration(info.name, measured, flops_per_item, peak_flops)

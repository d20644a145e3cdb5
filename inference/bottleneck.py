"""The bottleneck verdict: which stage limits throughput now, in plain words.

With bounded queues and backpressure a pipeline settles into a recognisable shape: the
slowest stage is busy all the time, the queue in front of it is full or growing, the
queues after it are empty and the stages after it idle (starved). Stages before it block
on a full queue, which is not busy time, so their utilization drops. The verdict looks
for that shape: among stages whose utilization is at least ``saturation``, the one with
the most pressure in front (input queue full or growing) and the least behind (output
queue empty). When nothing is saturated, throughput is set by the offered load
(``input``); infer then waits for work — "engine starved" — and the spare capacity is
headroom. This module is pure: the server's monitor and ``loglog profile`` (from
/metrics or Prometheus) feed it the same numbers.
"""

from __future__ import annotations

import dataclasses

SATURATION = 0.8


@dataclasses.dataclass(frozen=True)
class StageWindow:
    """What one stage did over a window."""

    name: str
    items_per_s: float
    utilization: float  # busy ÷ (wall × workers), 0–1
    workers: int
    queue_fill: float | None = None  # input queue depth ÷ capacity (None: decode)
    queue_growth: float = 0.0  # input queue depth change per second


@dataclasses.dataclass(frozen=True)
class Verdict:
    bottleneck: str  # a stage name, or "input"
    engine_starved: bool
    reason: str
    advice: str
    delivered_per_s: float
    capacity_per_s: float
    pipeline_efficiency: float | None
    engine_efficiency: float | None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def verdict(
    stages: list[StageWindow],
    *,
    delivered_per_s: float,
    capacity_per_s: float,
    engine_efficiency: float | None,
    saturation: float = SATURATION,
) -> Verdict:
    """Name the stage that limits throughput; ``stages`` in pipeline order."""
    by_name = {stage.name: stage for stage in stages}
    pipeline_efficiency = delivered_per_s / capacity_per_s if capacity_per_s > 0 else None
    best: tuple[float, StageWindow] | None = None
    for index, stage in enumerate(stages):
        if stage.utilization < saturation:
            continue
        after = stages[index + 1].queue_fill if index + 1 < len(stages) else 0.0
        before = stage.queue_fill if stage.queue_fill is not None else 0.5
        growth = 0.25 if stage.queue_growth > 0 else 0.0
        score = stage.utilization + before + growth - (after or 0.0)
        if best is None or score > best[0]:
            best = (score, stage)
    infer = by_name.get("infer")
    starved = bool(
        infer is not None
        and infer.utilization < 0.5
        and (infer.queue_fill or 0.0) < 0.1
        and (best is None or best[1].name != "infer")
    )
    share = f"{pipeline_efficiency:.0%}" if pipeline_efficiency is not None else "an unknown share"
    delivered = f"{delivered_per_s:.1f} items/s of {capacity_per_s:.1f} model-only"
    if best is None:
        headroom = max(0.0, capacity_per_s - delivered_per_s)
        return Verdict(
            "input",
            starved,
            f"No stage is saturated: the offered load sets throughput ({delivered}, {share}"
            " of model capacity)."
            + (" The engine is starved: infer waits for work." if starved else ""),
            f"Headroom: about {headroom:.0f} more items/s fit before the model is the limit.",
            delivered_per_s,
            capacity_per_s,
            pipeline_efficiency,
            engine_efficiency,
        )
    stage = best[1]
    fill = "" if stage.queue_fill is None else f", input queue {stage.queue_fill:.0%} full"
    reason = (
        f"{stage.name} is the bottleneck (utilization {stage.utilization:.0%} over "
        f"{stage.workers} worker{'s' if stage.workers != 1 else ''}{fill}); the pipeline "
        f"delivers {share} of model capacity ({delivered})."
    )
    return Verdict(
        stage.name,
        starved,
        reason,
        _advice(stage, engine_efficiency),
        delivered_per_s,
        capacity_per_s,
        pipeline_efficiency,
        engine_efficiency,
    )


def _advice(stage: StageWindow, engine_efficiency: float | None) -> str:
    if stage.name == "infer":
        if engine_efficiency is not None and engine_efficiency < 0.8:
            return (
                f"The engine runs at {engine_efficiency:.0%} of its calibrated speed: other "
                "stages compete for its cores (CPU contention) or the device is throttled. "
                "Give the engine fewer threads than cores, or move it to a GPU."
            )
        return (
            "The model itself is the limit — the best case for the pipeline. To go faster: "
            "a larger max batch if capacity grows with it, a GPU/TensorRT engine, or a "
            "smaller model."
        )
    if stage.name == "decode":
        return (
            "Sources cannot decode in real time: lower resolution or frame rate, use fewer "
            "streams per server, or hardware decoding."
        )
    cheaper = " (e.g. a smaller input resolution)" if stage.name == "preprocess" else ""
    return (
        f"Add {stage.name} workers (now {stage.workers}) if cores are free, or make the "
        f"stage cheaper{cheaper}."
    )

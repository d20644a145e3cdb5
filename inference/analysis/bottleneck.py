"""The bottleneck verdict: which stage limits throughput now, in plain words.

With bounded queues and backpressure a pipeline settles into a recognisable shape: the
slowest stage is busy all the time, the queue in front of it is full or growing, the
queues after it are empty and the stages after it idle (starved). Stages before it block
on a full queue, which is not busy time, so their utilization drops. The verdict looks
for that shape: among stages whose utilization is at least ``saturation``, the one with
the most pressure in front (input queue full or growing) and the least behind (output
queue empty). When nothing is saturated, throughput is set by the offered load
(``input``); infer then waits for work — "engine starved" — and the spare capacity is
headroom.

Before any of that, the verdict looks for a *stalled* stage: one whose oldest call in
progress has run far longer than the stage's normal (median) duration — at least
:data:`STALL_MIN_S`, and :data:`STALL_FACTOR` times the median. A stalled stage is hung,
not slow: it is named first, said to be stalled in words, and no headroom is claimed
while it lasts (nothing comes out). A slow stage still finishes items: it shows as
saturated and is called the bottleneck, "slow but moving".

This module is pure, and its advice is the one advice of the product: the server's monitor
(``GET /v1/profile``) and ``loglog profile`` (from /metrics or Prometheus) feed
:func:`verdict` the same numbers — the host's CPU busy share, each stage's drilled share and
whether the engine runs on a GPU — so they say the same thing. A number that is not known
(``None``) is said to be unknown, never read as its healthy value: an unknown CPU load is
not "not contention", an unknown device gets no GPU advice.
"""

from __future__ import annotations

import dataclasses

from ..types import ENGINE_STAGE, SPECS

SATURATION = 0.8
#: A call in progress this long (seconds) at least, before its stage counts as stalled …
STALL_MIN_S = 3.0
#: … and this many times the stage's median call duration.
STALL_FACTOR = 50.0
#: The host's CPUs count as busy (contention possible) above this share.
CPU_BUSY = 0.8


@dataclasses.dataclass(frozen=True)
class StageWindow:
    """What one stage did over a window."""

    name: str
    items_per_s: float
    utilization: float  # busy ÷ (wall × workers), 0–1
    workers: int
    queue_fill: float | None = None  # input queue depth ÷ capacity (None: decode)
    queue_growth: float = 0.0  # input queue depth change per second
    inflight: int = 0  # items in progress now
    oldest_inflight_s: float = 0.0  # age of the oldest call in progress (0: idle)
    p50_s: float | None = None  # the stage's normal call duration (recent median)
    p99_s: float | None = None
    drilled_share: float = 0.0  # share of the busy time spent in drill delays

    @property
    def stalled(self) -> bool:
        """Hung: the oldest call in progress is far older than a normal one."""
        return self.oldest_inflight_s >= stall_threshold(self.p50_s)


def stall_threshold(p50_s: float | None) -> float:
    """Seconds a call may run before its stage counts as stalled."""
    return max(STALL_MIN_S, STALL_FACTOR * (p50_s or 0.0))


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
    #: Stages that are stalled (hung), most stuck first; empty when everything moves.
    stalled: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def verdict(
    stages: list[StageWindow],
    *,
    delivered_per_s: float,
    capacity_per_s: float,
    engine_efficiency: float | None,
    saturation: float = SATURATION,
    cpu_busy: float | None = None,
    gpu: bool | None = None,
    decode_processes: int = 0,
) -> Verdict:
    """Name the stage that limits throughput; ``stages`` in pipeline order. ``cpu_busy``
    is the host's CPU busy share (None: unknown), which decides whether a slow engine
    is called contention; ``gpu`` whether the engine runs on a GPU (None: unknown), which
    decides whether GPU causes are named."""
    by_name = {stage.name: stage for stage in stages}
    pipeline_efficiency = delivered_per_s / capacity_per_s if capacity_per_s > 0 else None
    stalled = sorted(
        (stage for stage in stages if stage.stalled),
        key=lambda stage: stage.oldest_inflight_s,
        reverse=True,
    )
    if stalled:
        return _stalled(
            stalled, delivered_per_s, capacity_per_s, pipeline_efficiency, engine_efficiency, gpu
        )
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
    infer = by_name.get(ENGINE_STAGE)
    starved = bool(
        infer is not None
        and infer.utilization < 0.5
        and (infer.queue_fill or 0.0) < 0.1
        and (best is None or best[1].name != ENGINE_STAGE)
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
    # Depth can pass queue_capacity: frames fill their lane up to it while HTTP requests
    # wait in their own (inference/core/queues.py), so 101 % is "full", not a broken gauge.
    fill = (
        ""
        if stage.queue_fill is None
        else ", input queue full"
        if stage.queue_fill >= 1.0
        else f", input queue {stage.queue_fill:.0%} full"
    )
    p99 = "" if stage.p99_s is None else f", p99 {_duration(stage.p99_s)}"
    reason = (
        f"{stage.name} is the bottleneck, slow but moving ({stage.items_per_s:.1f} items/s, "
        f"utilization {stage.utilization:.0%} over {stage.workers} "
        f"worker{'s' if stage.workers != 1 else ''}{fill}{p99}); the pipeline "
        f"delivers {share} of model capacity ({delivered})."
    )
    return Verdict(
        stage.name,
        starved,
        reason,
        advice(stage, engine_efficiency, cpu_busy, gpu, decode_processes),
        delivered_per_s,
        capacity_per_s,
        pipeline_efficiency,
        engine_efficiency,
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds * 1000:.0f} ms"


def _stalled(
    stalled: list[StageWindow],
    delivered_per_s: float,
    capacity_per_s: float,
    pipeline_efficiency: float | None,
    engine_efficiency: float | None,
    gpu: bool | None,
) -> Verdict:
    """The verdict while a stage is hung: name it, say so, claim no headroom."""
    stage = stalled[0]
    age = _duration(stage.oldest_inflight_s)
    held = (
        f"one item has been in progress for {age}"
        if stage.inflight <= 1
        else f"{stage.inflight} items are in progress, the oldest for {age}"
    )
    normal = (
        "no call has finished yet to compare with"
        if stage.p99_s is None
        else f"p99 is {_duration(stage.p99_s)}"
    )
    others = f" Also stalled: {', '.join(s.name for s in stalled[1:])}." if stalled[1:] else ""
    reason = (
        f"{stage.name} is stalled (hung, not slow): {held}; {normal}. The pipeline "
        f"delivers {delivered_per_s:.1f} items/s while it lasts.{others}"
    )
    spec = SPECS.get(stage.name)
    if spec is not None and spec.batched:
        cause = "a hung engine call" + (
            " (check the GPU's XID and throttling alerts)" if gpu else ""
        )
    elif spec is not None and spec.sourced:
        cause = "a source or decoder that blocks"
    else:
        cause = f"a {stage.name} call that blocks (a lock, an I/O call without timeout)"
    advice = (
        "No headroom while a stage is stalled: nothing gets through it. Check `GET "
        "/v1/drills` first (a drill with a long delay looks exactly like this; `DELETE "
        f"/v1/drills` ends it). Otherwise suspect {cause}: capture the stacks (`py-spy dump "
        "--pid <server pid>`), then restart the server."
    )
    return Verdict(
        stage.name,
        False,
        reason,
        advice,
        delivered_per_s,
        capacity_per_s,
        pipeline_efficiency,
        engine_efficiency,
        tuple(s.name for s in stalled),
    )


def advice(
    stage: StageWindow,
    engine_efficiency: float | None,
    cpu_busy: float | None,
    gpu: bool | None,
    decode_processes: int = 0,
) -> str:
    """What to do about ``stage`` being the bottleneck — the one advice function behind
    ``GET /v1/profile`` and ``loglog profile``. A drill is named as the cause first; a slow
    engine is contention only when the CPUs are known to be busy, "not contention" only
    when they are known not to be, and GPU causes are named only for a GPU engine."""
    if stage.drilled_share >= 0.5:
        return (
            f"A drill makes {stage.name} slow ({stage.drilled_share:.0%} of its busy time is "
            "drill delay): `DELETE /v1/drills` ends it. The stage itself is not the cause."
        )
    spec = SPECS.get(stage.name)
    if spec is not None and spec.batched:
        if engine_efficiency is not None and engine_efficiency < 0.8:
            return _slow_engine(engine_efficiency, cpu_busy, gpu)
        faster = "a larger GPU or a TensorRT engine" if gpu else "a GPU/TensorRT engine"
        return (
            "The model itself is the limit — the best case for the pipeline. To go faster: "
            f"a larger max batch if capacity grows with it, {faster}, or a smaller model."
        )
    cheaper = spec.cheaper if spec is not None else ""
    if decode_processes > 0 and spec is not None and spec.remote:
        # Streams' decode and preprocess run in decode processes, not on the stage's
        # worker threads: more threads would not help the streams.
        return (
            f"Streams decode and preprocess in {decode_processes} decode "
            f"process{'es' if decode_processes != 1 else ''}: raise `decode_processes` if "
            f"cores are free, or make the stage cheaper{cheaper}; lower resolution or frame "
            "rate, or use fewer streams per server."
        )
    if spec is not None and spec.sourced:
        return (
            "Sources cannot decode in real time: lower resolution or frame rate, use fewer "
            "streams per server, or hardware decoding."
        )
    return (
        f"Add {stage.name} workers (now {stage.workers}) if cores are free, or make the "
        f"stage cheaper{cheaper}."
    )


def _slow_engine(engine_efficiency: float, cpu_busy: float | None, gpu: bool | None) -> str:
    """The engine runs below its calibrated speed: contention, or the device, or unknown."""
    speed = f"The engine runs at {engine_efficiency:.0%} of its calibrated speed"
    device = (
        "the GPU is throttled (power, thermal: check its throttle reasons) or the engine "
        "itself slowed"
        if gpu
        else "the engine itself slowed (CPU frequency scaling, a changed thread count, or "
        "another process pinned to its cores)"
    )
    if cpu_busy is None:
        return (
            f"{speed}; the host's CPU load is unknown (give `loglog profile` --agent URL or "
            "--prometheus URL), so CPU contention is not ruled out: check `top` for other "
            f"busy processes first; otherwise {device}. Restart to recalibrate if the "
            "hardware changed."
        )
    if cpu_busy >= CPU_BUSY:
        gpu_move = "" if gpu else ", or move the engine to a GPU"
        return (
            f"{speed} with the host's CPUs {cpu_busy:.0%} busy: other stages or processes "
            "compete for its cores (CPU contention). Give the engine fewer threads than "
            f"cores or move other work off this host{gpu_move}."
        )
    return (
        f"{speed} while the host's CPUs are {cpu_busy:.0%} busy: not contention — {device}. "
        "Restart to recalibrate if the hardware changed."
    )

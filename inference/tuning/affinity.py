"""Give a single-threaded CPU engine a core of its own.

On a small host the engine's thread shares cores with decode, preprocess and the HTTP
event loop; each time the scheduler puts one of them on the engine's core the engine
stalls, and it ran at 70 % of its calibrated speed in the server (2 cores, JPEG at
saturation, /v1/profile). Pinning the ``infer`` workers to one core and every other
thread of the server to the rest delivered 83 instead of 72–76 items/s in the same
benchmark (``bench/http_bench.py``, 2 runs each, README "HTTP path").

Decided once at set-up (:func:`plan`); applied by each stage thread to itself with
``sched_setaffinity(0, …)``, which on Linux sets the calling thread only; ``loglog serve``
also confines its main thread (the event loop, and the threads it starts later: stream
decoders, the start-up thread) to the other cores. Threads started before that (the
logger's) keep every core. Calibration runs on the engine's core. The engine's core is
the highest-numbered usable one that no other engine on the host has claimed
(:mod:`inference.feed.claims`: several servers, or fleet workers, on one host used to pin
their engines to the same core); with every usable core claimed, the engine runs unpinned.

Only when it clearly applies: a CPU engine with one intra-op thread and one ``infer``
worker, at least two usable cores, Linux. A GPU engine or a multi-threaded CPU engine is
left to the scheduler (pinning ONNX Runtime's own pool threads would need its affinity
options; not done). When a config reload gives ``infer`` more workers, they all get
every core back (:meth:`~inference.core.pipeline.Pipeline.set_workers`): several engine
threads on one core would only take turns.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Set

from ..types import ENGINE_STAGE, EngineInfo


@dataclasses.dataclass(frozen=True)
class CorePlan:
    """Which cores the engine's workers use, and which everything else uses."""

    engine: frozenset[int]
    others: frozenset[int]

    @property
    def every(self) -> frozenset[int]:
        return self.engine | self.others

    def for_stage(self, stage: str, infer_workers: int) -> frozenset[int]:
        """Where a worker of ``stage`` runs: infer alone on the engine's core, unless
        there are several infer workers (then anywhere); every other stage off it."""
        if stage != ENGINE_STAGE:
            return self.others
        return self.engine if infer_workers <= 1 else self.every

    def describe(self) -> str:
        return f"engine on core {_cores(self.engine)}, other threads on {_cores(self.others)}"


def allowed_cores() -> frozenset[int] | None:
    """The cores this process may run on, or None where the OS cannot say (not Linux)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None or not hasattr(os, "sched_setaffinity"):
        return None
    return frozenset(getter(0))


def plan(
    info: EngineInfo,
    pin: bool,
    allowed: Set[int] | None,
    infer_workers: int = 1,
    engine_core: int | None = None,
) -> CorePlan | None:
    """The pinning for ``info`` (None: none) when ``pin`` is asked for (``pin_engine``);
    the engine gets ``engine_core`` (default: the highest allowed — the runtime passes the
    one it claimed host-wide, inference/feed/claims.py)."""
    if not pin or allowed is None or len(allowed) < 2 or infer_workers != 1:
        return None
    if info.device != "cpu" or info.threads != 1:
        return None
    engine = max(allowed) if engine_core is None or engine_core not in allowed else engine_core
    return CorePlan(frozenset({engine}), frozenset(allowed) - {engine})


def pin_current_thread(cores: Set[int], thread_id: int = 0) -> str | None:
    """Run the calling thread (or the one whose native id is ``thread_id``) on ``cores``
    only; the reason it could not, or None."""
    try:
        os.sched_setaffinity(thread_id, cores)
    except (OSError, AttributeError, ValueError) as exc:
        # A cpuset changed under us (container resized): keep running unpinned.
        return f"{type(exc).__name__}: {exc}"
    return None


def _cores(cores: Set[int]) -> str:
    return ",".join(str(core) for core in sorted(cores))

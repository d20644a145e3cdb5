"""The vocabulary of the runtime: items, stages, engines.

::

    HTTP body ─▶ [q] ─decode─┐ (workers)
    stream source ─decode────┴▶ [q] ─preprocess─▶ [q] ─batcher─▶ infer ─▶ [q] ─postprocess─▶
    (a thread per stream)         (workers)        (engine)  [q] ─encode─▶ (results)

An :class:`Item` is one frame or one request travelling through the pipeline. A stage is
a plain callable from a list of items to a list of items (per-item stages receive one
item; ``infer`` receives a batch); the runtime times it. An engine is anything with
``run(batch)`` and ``describe()``.

:data:`PIPELINE` is the one list of stages, and a :class:`StageSpec` everything about
one (its callable's factory, histogram band, batched flag, drill point, roles): every
other stage list (names, queues, the stages after each, config validation, drills,
buckets) is derived from it, and no other module compares stage names.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from .core.stages import StageKit


@dataclasses.dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of the pipeline: everything the runtime needs to know about it.

    Every stage has an input queue and workers running the same stage loop
    (:meth:`inference.core.pipeline.Pipeline.run_stage`). The rest of the runtime asks the spec,
    never the stage's name, what a stage does.
    """

    name: str
    #: Builds the stage's callable once, at set-up, from the pipeline's parts.
    factory: Callable[[StageKit], Stage]
    #: (low, high) seconds where its duration histogram resolves p50 and p99 to ±10 %
    #: (inference/metrics.py turns it into bucket bounds).
    band: tuple[float, float]
    #: Takes its input from the batcher (up to ``max_batch`` items per call): the engine's
    #: stage, the one calibration measured.
    batched: bool = False
    #: Drill point: a drill on this stage sleeps inside its timed region, per item of a
    #: call, so it looks exactly like a slow stage (inference/core/drills.py).
    drill: bool = True
    #: Stream sources run it too, on threads of their own (take = read the next packet,
    #: call = decode): its queue only holds HTTP bodies, and those threads are workers.
    sourced: bool = False
    #: Decode processes (inference/feed) run it for their streams, in PIPELINE order.
    remote: bool = False
    #: How the stage could be made cheaper, for the bottleneck advice ("" if no hint).
    cheaper: str = ""


# The factories import the stage callables when the pipeline is built: inference.core.stages
# imports this module, so this one cannot import it at the top.
def _decode(kit: StageKit) -> Stage:
    from .core.stages import Decode

    return Decode(kit.preprocess)


def _preprocess(kit: StageKit) -> Stage:
    return kit.preprocess


def _infer(kit: StageKit) -> Stage:
    from .core.stages import Infer

    return Infer(kit.engine, on_done=kit.on_infer)


def _postprocess(kit: StageKit) -> Stage:
    return kit.postprocess


def _encode(kit: StageKit) -> Stage:
    return kit.encode


#: The pipeline, in order: the one place that names stages. Stream sources decode on
#: their own threads and enter at the stage after ``decode``; HTTP bodies enter the
#: ``decode`` queue. Bands: see inference/metrics.py (measured on a 2-core CPU).
PIPELINE: tuple[StageSpec, ...] = (
    StageSpec("decode", _decode, (0.001, 0.05), sourced=True, remote=True),
    StageSpec(
        "preprocess",
        _preprocess,
        (0.0001, 0.003),
        remote=True,
        cheaper=" (e.g. a smaller input resolution)",
    ),
    StageSpec("infer", _infer, (0.001, 0.1), batched=True),
    StageSpec("postprocess", _postprocess, (0.00002, 0.001)),
    StageSpec("encode", _encode, (0.00002, 0.002)),
)
STAGES: tuple[str, ...] = tuple(spec.name for spec in PIPELINE)
#: name → spec.
SPECS: dict[str, StageSpec] = {spec.name: spec for spec in PIPELINE}
#: The queue in front of each stage (named after it).
QUEUES: dict[str, str] = {name: name for name in STAGES}
#: stage → the stage after it (None for the last).
NEXT: dict[str, str | None] = dict(zip(STAGES, (*STAGES[1:], None), strict=True))
#: The engine's stage (the batched one).
ENGINE_STAGE: str = next(spec.name for spec in PIPELINE if spec.batched)
#: The stage HTTP bodies enter and stream sources run on their own threads.
SOURCE_STAGE: str = next(spec.name for spec in PIPELINE if spec.sourced)
#: The last stage: what it finishes is delivered.
LAST_STAGE: str = STAGES[-1]
#: The stages a decode process runs for each of its streams, in order.
REMOTE_STAGES: tuple[str, ...] = tuple(spec.name for spec in PIPELINE if spec.remote)
#: Stages a drill may slow.
DRILL_STAGES: tuple[str, ...] = tuple(spec.name for spec in PIPELINE if spec.drill)


@dataclasses.dataclass(slots=True, eq=False)
class Item:
    """One frame of a stream, or one HTTP request, and everything measured about it."""

    stream: str
    frame: int
    pts: float | None = None
    #: The decoded picture: an ``av.VideoFrame`` or an HWC uint8 array.
    image: Any = None
    #: The model input (C, H, W float32), set by preprocess or given by the request.
    tensor: np.ndarray | None = None
    outputs: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    created: float = dataclasses.field(default_factory=time.monotonic)
    #: Wall-clock capture time of a live frame (for lag); None for files and requests.
    captured: float | None = None
    stage_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    span: Any = None  # the item's OpenTelemetry span when sampled
    trace_id: str | None = None
    future: Future[Item] | None = None  # set for HTTP requests
    #: Monotonic time by which an HTTP request must be answered (None: no deadline, as
    #: for stream frames); a queue drops the item rather than start it too late.
    deadline: float | None = None
    error: BaseException | None = None
    enqueued: float = 0.0  # when it entered its current queue
    #: An HTTP body still to decode, and its media kind ("image" or "npy"); the decode
    #: stage turns it into ``image`` or ``tensor``.
    payload: bytes | None = None
    payload_kind: str = ""
    #: The request's Content-Type, which sharpens decode errors (the bytes pick the decoder).
    payload_type: str = ""
    #: A stream's packet still to decode (what its source read; the decode call turns it
    #: into frames).
    packet: Any = None


#: A stage: takes a list of items (one for per-item stages, a batch for infer), returns it.
Stage = Callable[[list[Item]], list[Item]]


@dataclasses.dataclass(frozen=True, slots=True)
class EngineInfo:
    """What an engine says about itself (``describe()``)."""

    name: str  # model name, used as the ``model`` label
    kind: str  # "onnxruntime", "tensorrt", "torch"
    input_name: str
    input_shape: tuple[int, ...]  # per item, e.g. (3, 224, 224)
    input_dtype: str
    output_names: tuple[str, ...]
    device: str  # "cpu" or the GPU's name
    threads: int = 1
    max_batch: int | None = None  # engines built for a fixed maximum (TensorRT profiles)
    #: The precision the engine computes in ("fp32", "fp16", "bf16"): the MFU peak is
    #: looked up for it. None: not stated (then the fp16 peak, as before).
    precision: str | None = None
    #: FLOPs per item counted by the engine from its own model (the torch engine); None
    #: when the runtime should count them from the .onnx file, or nobody can.
    flops_per_item: int | None = None

    def batch_limit(self, max_batch: int) -> int:
        """``max_batch``, capped by the engine's own maximum when it was built for one."""
        return min(max_batch, self.max_batch) if self.max_batch else max_batch


class Engine(Protocol):
    """Runs a batch: ``run`` takes (N, *input_shape) and returns outputs by name."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def describe(self) -> EngineInfo: ...

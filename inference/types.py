"""The vocabulary of the runtime: items, stages, engines.

::

    HTTP body ─▶ [q] ─decode─┐ (workers)
    stream source ─decode────┴▶ [q] ─preprocess─▶ [q] ─batcher─▶ infer ─▶ [q] ─postprocess─▶
    (a thread per stream)         (workers)        (engine)  [q] ─encode─▶ (results)

An :class:`Item` is one frame or one request travelling through the pipeline. A stage is
a plain callable from a list of items to a list of items (per-item stages receive one
item; ``infer`` receives a batch); the runtime times it. An engine is anything with
``run(batch)`` and ``describe()``.

:data:`PIPELINE` is the one list of stages: every other stage list (names, queues, the
stages after each, config validation, drills) is derived from it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np


@dataclasses.dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of the pipeline, as the runtime builds it.

    Every stage has an input queue and workers running the same stage loop. ``batched``
    stages take their input from a batcher (up to ``max_batch`` items per call) instead of
    one item at a time.
    """

    name: str
    batched: bool = False


#: The pipeline, in order. Stream sources decode on their own threads and enter at the
#: stage after ``decode``; HTTP bodies enter the ``decode`` queue.
PIPELINE: tuple[StageSpec, ...] = (
    StageSpec("decode"),
    StageSpec("preprocess"),
    StageSpec("infer", batched=True),
    StageSpec("postprocess"),
    StageSpec("encode"),
)
STAGES: tuple[str, ...] = tuple(spec.name for spec in PIPELINE)
#: The queue in front of each stage (named after it).
QUEUES: dict[str, str] = {name: name for name in STAGES}
#: stage → the stage after it (None for the last).
NEXT: dict[str, str | None] = dict(zip(STAGES, (*STAGES[1:], None), strict=True))


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

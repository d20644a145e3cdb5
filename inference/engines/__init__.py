"""Engines behind one protocol (see inference.types.Engine), chosen by the model file.

``.onnx`` → ONNX Runtime (CUDA provider when present, else CPU);
``.engine`` / ``.plan`` / ``.trt`` → TensorRT (the ``gpu`` extra). No model → the default
CNN, built locally.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError
from ..model import default_model_path
from ..types import Engine

_TENSORRT_SUFFIXES = (".engine", ".plan", ".trt")


def load_engine(
    model: str | os.PathLike[str] | None = None,
    *,
    kind: str = "auto",
    threads: int | None = None,
    providers: list[str] | None = None,
) -> Engine:
    """Load ``model`` (a path, or None for the default model) into an engine.

    Raises :class:`ModelError` with what to do when the file is missing or unusable.
    """
    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        raise ModelError(
            f"model file {str(path)!r} does not exist: pass an .onnx file or a TensorRT "
            "engine with --model, or leave it out to serve the built-in default model"
        )
    if kind == "auto":
        kind = "tensorrt" if path.suffix in _TENSORRT_SUFFIXES else "onnxruntime"
    if kind == "onnxruntime":
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, threads=threads, providers=providers)
    if kind == "tensorrt":
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(path)
    raise ModelError(f"unknown engine kind {kind!r}: use auto, onnxruntime or tensorrt")


def default_threads() -> int:
    """Intra-op threads for a CPU engine: all cores but one, which the other stages need
    (measured here: 1 engine thread on 2 cores delivered 0.99 of capacity, 2 threads 0.87)."""
    return max(1, (os.cpu_count() or 2) - 1)

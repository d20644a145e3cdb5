"""Engines behind one protocol (see inference.types.Engine), chosen by the model file.

``.onnx`` → ONNX Runtime (CUDA provider when present, else CPU);
``.engine`` / ``.plan`` / ``.trt`` → TensorRT (the ``gpu`` extra);
``.pt`` / ``.ts`` / ``.pt2`` → PyTorch (the ``torch`` extra; CUDA when visible, else CPU).
No model → the default CNN, built locally (:mod:`.model`; in PyTorch with ``kind="torch"``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError
from ..types import Engine
from .model import default_model_path

_TENSORRT_SUFFIXES = (".engine", ".plan", ".trt")
_TORCH_SUFFIXES = (".pt", ".ts", ".pt2")  # kept equal to inference.engines.torch.SUFFIXES
KINDS = ("auto", "onnxruntime", "tensorrt", "torch")


def load_engine(
    model: str | os.PathLike[str] | None = None,
    *,
    kind: str = "auto",
    threads: int | None = None,
    providers: list[str] | None = None,
    precision: str = "auto",
) -> Engine:
    """Load ``model`` (a path, or None for the default model) into an engine.

    ``kind`` is ``auto`` (by file type), ``onnxruntime``, ``tensorrt`` or ``torch``;
    ``precision`` (``auto``, ``fp32``, ``fp16``, ``bf16``) applies to the torch engine.
    Raises :class:`ModelError` with what to do when the file is missing or unusable.
    """
    if kind not in KINDS:
        raise ModelError(f"unknown engine kind {kind!r}: use {', '.join(KINDS)}")
    if kind == "torch" and model is None:
        from .torch import TorchEngine

        return TorchEngine(None, precision=precision, threads=threads)
    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        raise ModelError(
            f"model file {str(path)!r} does not exist: pass an .onnx file, a TensorRT "
            "engine or a PyTorch .pt/.pt2 file with --model, or leave it out to serve the "
            "built-in default model"
        )
    if kind == "auto":
        kind = (
            "tensorrt"
            if path.suffix in _TENSORRT_SUFFIXES
            else "torch"
            if path.suffix in _TORCH_SUFFIXES
            else "onnxruntime"
        )
    if kind == "onnxruntime":
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, threads=threads, providers=providers)
    if kind == "tensorrt":
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(path)
    if path.suffix == ".onnx":
        raise ModelError(
            f"the torch engine cannot run {path.name}: leave --model out to run the built-in "
            "CNN in PyTorch, or pass a TorchScript (.pt/.ts) or torch.export (.pt2) file"
        )
    from .torch import TorchEngine

    return TorchEngine(path, precision=precision, threads=threads)


def default_threads() -> int:
    """Intra-op threads for a CPU engine: all cores but one, which the other stages need
    (measured here: 1 engine thread on 2 cores delivered 0.99 of capacity, 2 threads 0.87)."""
    return max(1, (os.cpu_count() or 2) - 1)

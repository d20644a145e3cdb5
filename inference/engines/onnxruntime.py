"""ONNX Runtime engine. The only module that imports ``onnxruntime``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EngineError, ModelError
from ..types import EngineInfo

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


class OnnxRuntimeEngine:
    """Runs a single-input ONNX model; CUDA when the provider is available, else CPU."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        from . import default_threads

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        available = ort.get_available_providers()
        chosen = providers or [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
        ]
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise ModelError(
                f"ONNX Runtime cannot load {str(self.path)!r}: {exc}. "
                "Check that it is a valid .onnx file (onnx.checker.check_model)."
            ) from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                f"the model has {len(inputs)} inputs ({names}); serve a model with one"
            )
        spec = inputs[0]
        shape = spec.shape[1:]
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise ModelError(
                f"input {spec.name!r} has shape {spec.shape}: every dimension but the batch "
                "must be fixed (export the model with a static image size)"
            )
        if spec.type not in _DTYPES:
            raise ModelError(
                f"input type {spec.type} is not supported: use float32, float16 or uint8"
            )
        fixed_batch = spec.shape[0] if isinstance(spec.shape[0], int) else None
        device = "cuda" if "CUDAExecutionProvider" in self._session.get_providers() else "cpu"
        self._info = EngineInfo(
            name=self.path.stem,
            kind="onnxruntime",
            input_name=spec.name,
            input_shape=tuple(int(d) for d in shape),
            input_dtype=_DTYPES[spec.type],
            output_names=tuple(o.name for o in self._session.get_outputs()),
            device=device,
            threads=options.intra_op_num_threads,
            max_batch=fixed_batch,
        )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            outputs = self._session.run(None, {self._info.input_name: batch})
        except Exception as exc:
            raise EngineError(
                f"ONNX Runtime failed on a batch of shape {batch.shape}: {exc}"
            ) from exc
        return dict(zip(self._info.output_names, outputs, strict=True))

    def describe(self) -> EngineInfo:
        return self._info

"""TensorRT engine (the ``gpu`` extra). The only module that imports ``tensorrt``.

Uses the TensorRT 10 name-based tensor API (``num_io_tensors``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with PyTorch CUDA tensors as device buffers
(GPU hosts that run TensorRT nearly always have PyTorch). Not exercised in CI, which has
no GPU: run ``pytest -m gpu`` on a GPU host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, ModelError
from ..types import EngineInfo


class TensorRTEngine:
    """Runs a serialized TensorRT engine with one input on GPU 0."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise ModelError(
                "TensorRT is not installed: in loglog's checkout, pip install '.[gpu]' on a host "
                "with an "
                "NVIDIA GPU, or serve the ONNX model instead"
            ) from exc
        try:
            import torch
        except ImportError as exc:
            raise ModelError(
                "the TensorRT engine uses PyTorch for GPU buffers: pip install torch"
            ) from exc
        if not torch.cuda.is_available():
            raise ModelError("TensorRT needs an NVIDIA GPU and driver; none is visible here")
        self.path = Path(path)
        self._torch = torch
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ModelError(
                f"TensorRT could not deserialize {str(self.path)!r}: it must be built by this "
                "TensorRT version for this GPU (trtexec --onnx=model.onnx --saveEngine=…)"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ModelError(f"the engine has {len(inputs)} inputs; serve an engine with one")
        self._input = inputs[0]
        self._outputs = [n for n in names if n != self._input]
        shape = tuple(engine.get_tensor_shape(self._input))
        max_batch = (
            shape[0] if shape[0] > 0 else engine.get_tensor_profile_shape(self._input, 0)[2][0]
        )
        self._stream = torch.cuda.Stream()
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input))).name
        self._info = EngineInfo(
            name=self.path.stem,
            kind="tensorrt",
            input_name=self._input,
            input_shape=tuple(int(d) for d in shape[1:]),
            input_dtype=dtype,
            output_names=tuple(self._outputs),
            device=torch.cuda.get_device_name(0),
            threads=1,
            max_batch=int(max_batch),
        )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch, engine, context = self._torch, self._engine, self._context
        try:
            device_input = torch.from_numpy(np.ascontiguousarray(batch)).cuda(non_blocking=True)
            context.set_input_shape(self._input, tuple(batch.shape))
            context.set_tensor_address(self._input, device_input.data_ptr())
            outputs: dict[str, Any] = {}
            for name in self._outputs:
                shape = tuple(context.get_tensor_shape(name))
                dtype = np.dtype(self._trt.nptype(engine.get_tensor_dtype(name)))
                buffer = torch.empty(shape, dtype=_torch_dtype(torch, dtype), device="cuda")
                context.set_tensor_address(name, buffer.data_ptr())
                outputs[name] = buffer
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 returned False")
            self._stream.synchronize()
            return {name: value.cpu().numpy() for name, value in outputs.items()}
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"TensorRT failed on a batch of shape {batch.shape}: {exc}") from exc

    def describe(self) -> EngineInfo:
        return self._info


def _torch_dtype(torch: Any, dtype: np.dtype[Any]) -> Any:
    return {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32,
            "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool}[dtype.name]  # fmt: skip

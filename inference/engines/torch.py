"""PyTorch engine (the ``torch`` extra). The only module that imports ``torch``.

Runs one of:

* the built-in CNN, defined here in PyTorch from :func:`inference.engines.model.default_weights`
  — the same parameters the ONNX file is built from, so both engines compute the same
  function (``model=None``);
* a TorchScript file (``.pt`` / ``.ts``, ``torch.jit.save``) or a ``torch.export``
  program (``.pt2``, ``torch.export.save``). The input shape per item comes from a
  ``loglog.json`` extra file (:func:`save_default_model` writes one); a ``.pt2`` without
  it falls back to the shapes recorded at export.

on CUDA when a GPU is visible, else on the CPU. Precision: ``fp32``, ``fp16`` or
``bf16``; ``auto`` is fp16 on CUDA (the dense tensor-core precision the MFU peak table is
for) and fp32 on the CPU. Inputs arrive as float32 and are cast on the device.

Timing. :meth:`TorchEngine.run` returns host arrays: the copy to the host waits until
the GPU has finished the batch, so a clock read around ``run`` (calibration does exactly
that) measures the GPU's work plus the transfers — never only the kernel launches.
:meth:`TorchEngine.device_seconds` times the kernels alone with CUDA events, which is how
the GPU proof separates transfer cost from compute.

FLOPs per item are counted from the module itself (``torch.utils.flop_counter``, 2 FLOPs
per multiply-add, convolutions and matrix products only — the same rule as
:mod:`inference.analysis.flops` for ONNX), so MFU works for any TorchScript or exported model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, ModelError
from ..types import EngineInfo
from .model import DEFAULT_NAME, INPUT_SHAPE, default_weights

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cuda", "cpu")
#: Files the torch engine loads: TorchScript (.pt, .ts) and torch.export (.pt2).
SUFFIXES = (".pt", ".ts", ".pt2")
#: The extra file inside a saved model that says what the input is.
METADATA = "loglog.json"
#: Elements per item a model may declare (1 GiB of fp32): the start-up probe allocates one
#: item, so a shape from a hostile or mistyped loglog.json must not size that allocation.
MAX_ITEM_ELEMENTS = 2**28


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ModelError(
            "PyTorch is not installed: in loglog's checkout, pip install '.[torch]' (CPU "
            "build) or a CUDA "
            "build of torch on a GPU host; or serve the ONNX model with --engine onnxruntime"
        ) from exc
    return torch


class TorchEngine:
    """Runs a PyTorch model on CUDA (when visible) or the CPU.

    >>> engine = TorchEngine()  # the built-in CNN, fp16 on a GPU, fp32 on a CPU
    >>> engine.run(np.zeros((2, 3, 224, 224), np.float32))["logits"].shape
    (2, 100)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        if device not in DEVICES:
            raise ModelError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        torch = _import_torch()
        self._torch = torch
        from . import default_threads

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError(
                "device cuda was asked for but PyTorch sees no CUDA GPU (a CPU-only build, "
                "or no driver): leave the device to auto (the CPU here), or install a CUDA "
                "build of torch"
            )
        if precision == "auto":
            precision = "fp16" if device == "cuda" else "fp32"
        self.precision = precision
        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            precision
        ]
        self._device = torch.device(device)
        thread_count = 1
        if device == "cpu":
            thread_count = threads or default_threads()
            torch.set_num_threads(thread_count)
        else:
            # cuDNN picks the fastest convolution per input shape on first sight of it;
            # calibration's warm-up runs absorb that one-time search.
            torch.backends.cudnn.benchmark = True
        self.path = Path(model) if model is not None else None
        if self.path is None:
            module = default_module(torch)
            meta: dict[str, Any] = {
                "name": DEFAULT_NAME,
                "input_name": "input",
                "input_shape": list(INPUT_SHAPE),
                "output_names": ["logits"],
            }
        else:
            module, meta = _load(torch, self.path, self._device)
        try:
            module = module.to(device=self._device, dtype=self._dtype)
        except Exception as exc:
            raise ModelError(
                f"cannot move the model to {device} in {precision}: {_short(exc)}. "
                "Try --precision fp32, or export the model again for this device."
            ) from exc
        self._channels_last = device == "cuda" and len(meta["input_shape"]) == 3
        if self._channels_last:
            # Tensor-core convolutions want NHWC; cuDNN converts NCHW weights otherwise.
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._outputs = tuple(meta.get("output_names") or ())
        self._shape = tuple(int(d) for d in meta["input_shape"])
        self._outputs = self._probe()
        device_name = torch.cuda.get_device_name(self._device) if device == "cuda" else "cpu"
        self._info = EngineInfo(
            name=str(meta.get("name") or (self.path.stem if self.path else DEFAULT_NAME)),
            kind="torch",
            input_name=str(meta.get("input_name") or "input"),
            input_shape=self._shape,
            input_dtype="float32",
            output_names=self._outputs,
            device=device_name,
            threads=thread_count,
            precision=precision,
            flops_per_item=self.count_flops(),
        )

    # -- running -------------------------------------------------------------------------

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for ``batch`` (N, *input_shape) as float32 host arrays, by name."""
        torch = self._torch
        try:
            with torch.inference_mode():
                outputs = self._module(self._to_device(batch))
                # .cpu() waits for the GPU: when run returns, the batch is done.
                return {
                    name: value.float().cpu().numpy()
                    for name, value in self._named(outputs).items()
                }
        except torch.cuda.OutOfMemoryError as exc:
            raise EngineError(
                f"the GPU ran out of memory on a batch of shape {batch.shape}: lower max_batch"
            ) from exc
        except Exception as exc:
            raise EngineError(
                f"PyTorch failed on a batch of shape {batch.shape}: {_short(exc)}"
            ) from exc

    def device_seconds(self, batch: np.ndarray, runs: int = 10, warmup: int = 2) -> float:
        """Seconds per batch of the model alone, the input already on the device.

        On CUDA the span is measured with CUDA events on the current stream (no host
        copies, no Python clock): the GPU's own time for ``runs`` forward passes.
        """
        torch = self._torch
        with torch.inference_mode():
            x = self._to_device(batch)
            for _ in range(warmup):
                self._module(x)
            if self._device.type != "cuda":
                started = time.perf_counter()
                for _ in range(runs):
                    self._module(x)
                return (time.perf_counter() - started) / runs
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(runs):
                self._module(x)
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1000.0 / runs

    def _probe(self) -> tuple[str, ...]:
        """Run one zero item at start-up: a model that cannot take its declared input
        fails here, not on the first request; unnamed outputs get their names."""
        torch = self._torch
        example = np.zeros((1, *self._shape), dtype=np.float32)
        try:
            with torch.inference_mode():
                outputs = self._module(self._to_device(example))
            return tuple(self._named(outputs))
        except EngineError as exc:
            raise ModelError(str(exc)) from exc
        except Exception as exc:
            raise ModelError(
                f"the model fails on one item of shape {self._shape}: {_short(exc)}. Check "
                f"input_shape in {METADATA}, or the device and precision (--precision fp32)."
            ) from exc

    def count_flops(self) -> int | None:
        """Forward FLOPs for one item, counted by tracing the module's aten ops, or None
        when the module cannot be traced that way (then there is no MFU, never a guess)."""
        torch = self._torch
        try:
            from torch.utils.flop_counter import FlopCounterMode

            example = np.zeros((1, *self._shape), dtype=np.float32)
            counter = FlopCounterMode(display=False)
            with torch.inference_mode(), counter:
                self._module(self._to_device(example))
            total = int(counter.get_total_flops())
        except Exception:
            return None
        return total or None

    def describe(self) -> EngineInfo:
        return self._info

    # -- helpers -------------------------------------------------------------------------

    def _to_device(self, batch: np.ndarray) -> Any:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self._device, non_blocking=True).to(self._dtype)
        if self._channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _named(self, outputs: Any) -> dict[str, Any]:
        torch = self._torch
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if isinstance(outputs, dict):
            return dict(outputs)
        names = self._outputs or tuple(f"output{i}" for i in range(len(outputs)))
        if len(names) != len(outputs):
            raise EngineError(
                f"the model returned {len(outputs)} outputs but its metadata names "
                f"{len(names)} ({', '.join(names)}): fix output_names in {METADATA}"
            )
        return dict(zip(names, outputs, strict=True))


def _short(exc: BaseException) -> str:
    """The gist of a PyTorch error: TorchScript prepends both tracebacks to the message;
    its last line is the error itself."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:400]


def default_module(torch: Any | None = None) -> Any:
    """The built-in CNN as a ``torch.nn.Module`` (eval mode, fp32, CPU), with the same
    parameters as the ONNX default model."""
    torch = torch or _import_torch()
    nn = torch.nn
    weights = default_weights()
    layers: list[Any] = []
    for weight, bias, stride in weights.convs:
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, stride=stride, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))
        layers += [conv, nn.ReLU()]
    fc = nn.Linear(weights.fc_weight.shape[1], weights.fc_weight.shape[0])
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weights.fc_weight))
        fc.bias.copy_(torch.from_numpy(weights.fc_bias))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), fc]
    return nn.Sequential(*layers).eval()


def save_default_model(path: str | os.PathLike[str]) -> Path:
    """Write the built-in CNN as TorchScript (``.pt``/``.ts``) or a ``torch.export``
    program (``.pt2``, batch dimension dynamic), with its ``loglog.json`` metadata."""
    torch = _import_torch()
    target = Path(path)
    if target.suffix not in SUFFIXES:
        raise ModelError(f"save the model as one of {', '.join(SUFFIXES)}, not {target.name}")
    module = default_module(torch)
    meta = json.dumps(
        {
            "name": DEFAULT_NAME,
            "input_name": "input",
            "input_shape": list(INPUT_SHAPE),
            "output_names": ["logits"],
        }
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary keeps the suffix: torch.export.save insists on ".pt2".
    temporary = target.with_name(f".{target.stem}.tmp{target.suffix}")
    example = torch.zeros((2, *INPUT_SHAPE))
    if target.suffix == ".pt2":
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(temporary), extra_files={METADATA: meta})
    else:
        with _torchscript_allowed():
            scripted = torch.jit.trace(module, example)
            torch.jit.save(scripted, str(temporary), _extra_files={METADATA: meta})
    os.replace(temporary, target)  # atomic: a concurrent loader never sees half a file
    return target


def _load(torch: Any, path: Path, device: Any) -> tuple[Any, dict[str, Any]]:
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    extra = {METADATA: ""}
    try:
        if path.suffix == ".pt2":
            program = torch.export.load(str(path), extra_files=extra)
            if device.type != "cpu":
                # An exported graph may hold device constants that Module.to() would not
                # move; the pass rewrites them (PyTorch ≥ 2.6).
                program = torch.export.passes.move_to_device_pass(program, device)
            module = program.module()
            recorded = _exported_input_shape(program)
        else:
            with _torchscript_allowed():
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            recorded = None
    except Exception as exc:
        raise ModelError(
            f"PyTorch cannot load {str(path)!r}: {exc}. Save TorchScript with torch.jit.save "
            "(.pt/.ts) or a torch.export program with torch.export.save (.pt2)."
        ) from exc
    try:
        meta = json.loads(extra[METADATA]) if extra[METADATA] else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{METADATA} inside {str(path)!r} is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{METADATA} inside {str(path)!r} must be a JSON object")
    if "input_shape" not in meta and recorded is not None:
        meta["input_shape"] = list(recorded)
    shape = meta.get("input_shape")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ModelError(
            f"{str(path)!r} does not say its input shape per item: save it with "
            f'_extra_files={{"{METADATA}": \'{{"input_shape": [3, 224, 224]}}\'}} '
            "(inference.engines.torch.save_default_model shows how)"
        )
    elements = math.prod(shape)
    if elements > MAX_ITEM_ELEMENTS:
        raise ModelError(
            f"{METADATA} inside {str(path)!r} says input_shape {shape}: {elements} elements "
            f"per item, over the limit of {MAX_ITEM_ELEMENTS} (1 GiB of fp32 per item). Fix "
            "input_shape to the model's real input"
        )
    names = meta.get("output_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) and n for n in names)
    ):
        raise ModelError(
            f"{METADATA} inside {str(path)!r} has output_names {names!r}: use a list of "
            'non-empty strings, e.g. "output_names": ["logits"], or leave it out'
        )
    meta.setdefault("name", path.stem)
    return module, meta


@contextlib.contextmanager
def _torchscript_allowed() -> Iterator[None]:
    """TorchScript is deprecated from PyTorch 2.13 on, yet it is still what most saved
    models are: it stays supported here (``.pt2`` is the way forward), without the
    DeprecationWarning on every load."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def _exported_input_shape(program: Any) -> tuple[int, ...] | None:
    """The per-item shape of a torch.export program's only user input, when static."""
    try:
        names = list(program.graph_signature.user_inputs)
        if len(names) != 1:
            return None
        for node in program.graph.nodes:
            if node.op == "placeholder" and node.name == names[0]:
                dims = tuple(node.meta["val"].shape)[1:]
                return tuple(int(d) for d in dims)
    except Exception:
        return None
    return None

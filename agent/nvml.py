"""The NVML seam: the only module that imports ``pynvml`` (package nvidia-ml-py).

Everything NVML is reached through :class:`Nvml`, which wraps a module object — the real
``pynvml``, or :class:`agent.testing.FakeNvml` with the same surface — and translates its
errors by their code (``NVMLError.value``) into ours:

::

    NvmlError
    ├── NvmlUnavailable   no library / driver / permission: the agent runs without GPUs
    ├── Unsupported       this device does not support the call: omit the series
    └── GpuLost           the GPU fell off the bus: mark its data stale

"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from .metrics import THROTTLE_REASONS

# NVML return codes (nvml.h); the same numbers as pynvml.NVML_ERROR_*.
ERROR_UNINITIALIZED = 1
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_DRIVER_NOT_LOADED = 9
ERROR_TIMEOUT = 10
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15

_UNAVAILABLE = {
    ERROR_LIBRARY_NOT_FOUND: "library_not_found",
    ERROR_DRIVER_NOT_LOADED: "driver_not_loaded",
    ERROR_NO_PERMISSION: "no_permission",
}
_EXPLAIN = {
    "library_not_found": "NVML (libnvidia-ml.so) is missing: no NVIDIA driver on this machine",
    "driver_not_loaded": "the NVIDIA driver is not loaded",
    "no_permission": "no permission to open the GPU devices (give access to /dev/nvidia*)",
    "import_error": "the nvidia-ml-py package is missing: pip install nvidia-ml-py",
}


class NvmlError(Exception):
    """An NVML call failed; ``call`` names it, ``code`` is NVML's return code."""

    def __init__(self, call: str, code: int | None, message: str = "") -> None:
        super().__init__(message or f"{call} failed (NVML error {code})")
        self.call = call
        self.code = code


class NvmlUnavailable(NvmlError):
    """NVML cannot be used at all; ``reason`` is a bounded label value."""

    def __init__(self, reason: str, detail: str = "") -> None:
        text = _EXPLAIN.get(reason, f"NVML failed to initialise ({detail})")
        super().__init__("nvmlInit", None, text)
        self.reason = reason


class Unsupported(NvmlError):
    """The device does not support this call: the series is omitted, not zeroed."""


class GpuLost(NvmlError):
    """The GPU is gone (fell off the bus, or was reset)."""


def load_module() -> Any:
    """Import pynvml, or raise NvmlUnavailable('import_error')."""
    try:
        import pynvml
    except ImportError as exc:
        raise NvmlUnavailable("import_error", str(exc)) from exc
    return pynvml


@dataclasses.dataclass
class Device:
    """A GPU as the agent knows it."""

    index: int
    handle: Any
    uuid: str
    name: str


class Nvml:
    """Typed, translated access to an NVML module (real or fake)."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def call(self, name: str, *args: Any) -> Any:
        """Call ``module.<name>(*args)``, translating NVML errors."""
        try:
            return getattr(self.module, name)(*args)
        except Exception as exc:
            code = getattr(exc, "value", None)
            if code is None:
                raise NvmlError(name, None, f"{name}: {type(exc).__name__}: {exc}") from exc
            if code in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                raise Unsupported(name, code) from exc
            if code == ERROR_GPU_IS_LOST:
                raise GpuLost(name, code, f"{name}: the GPU is lost") from exc
            raise NvmlError(name, code) from exc

    def init(self) -> None:
        try:
            self.module.nvmlInit()
        except Exception as exc:
            code = getattr(exc, "value", None)
            reason = _UNAVAILABLE.get(code) if isinstance(code, int) else None
            raise NvmlUnavailable(reason or "error", str(exc)) from exc

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):  # at exit, a failing shutdown changes nothing
            self.module.nvmlShutdown()

    def driver_version(self) -> str:
        return _text(self.call("nvmlSystemGetDriverVersion"))

    def devices(self) -> list[Device]:
        found = []
        for index in range(int(self.call("nvmlDeviceGetCount"))):
            handle = self.call("nvmlDeviceGetHandleByIndex", index)
            uuid = _text(self.call("nvmlDeviceGetUUID", handle))
            name = _text(self.call("nvmlDeviceGetName", handle))
            found.append(Device(index, handle, uuid, name))
        return found

    def throttle_reasons(self, handle: Any) -> dict[str, int]:
        mask = int(self.call("nvmlDeviceGetCurrentClocksEventReasons", handle))
        return {reason: 1 if mask & bit else 0 for reason, bit in THROTTLE_REASONS.items()}

    def gpm_supported(self, handle: Any) -> bool:
        try:
            return bool(self.call("nvmlGpmQueryDeviceSupport", handle).isSupportedDevice)
        except Unsupported:
            return False

    def gpm_sample(self, handle: Any) -> Any:
        sample = self.call("nvmlGpmSampleAlloc")
        self.call("nvmlGpmSampleGet", handle, sample)
        return sample

    def gpm_metrics(self, first: Any, second: Any, metric_ids: list[int]) -> dict[int, float]:
        """Percent values (0–100) of GPM metrics between two samples."""
        module = self.module
        request = module.c_nvmlGpmMetricsGet_t()
        request.version = module.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(metric_ids)
        request.sample1, request.sample2 = first, second
        for slot, metric in enumerate(metric_ids):
            request.metrics[slot].metricId = metric
        self.call("nvmlGpmMetricsGet", request)
        return {
            request.metrics[slot].metricId: float(request.metrics[slot].value)
            for slot in range(len(metric_ids))
            if request.metrics[slot].nvmlReturn == 0
        }

    def gpm_free(self, sample: Any) -> None:
        with contextlib.suppress(NvmlError):
            self.call("nvmlGpmSampleFree", sample)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

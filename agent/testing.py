"""``FakeNvml``: the pynvml surface the agent uses, for machines without a GPU.

It is the hardware seam and nothing more: same function names, same constants, errors
that carry NVML's return codes in ``.value`` like ``pynvml.NVMLError`` does. Faults can
be scripted — unsupported calls, throttling, XID events, a call that hangs until
released, a GPU lost mid-run — so every path of the agent runs in CI.

>>> nvml = FakeNvml([FakeGpu(name="NVIDIA H100 80GB HBM3")])
>>> nvml.nvmlInit(); nvml.nvmlDeviceGetCount()
1
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from types import SimpleNamespace
from typing import Any

from .nvml import (
    ERROR_GPU_IS_LOST,
    ERROR_LIBRARY_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    ERROR_TIMEOUT,
)


@dataclasses.dataclass(frozen=True)
class FakeHandle:
    """A device handle; equal handles name the same GPU (like pynvml's pointers)."""

    index: int


class FakeNVMLError(Exception):
    """Carries an NVML return code in ``value``, like pynvml.NVMLError."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclasses.dataclass
class FakeGpu:
    """The state one fake GPU reports. Change fields at any time; the next sample sees it."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    util_gpu: int = 50
    util_memory: int = 20
    memory_total: int = 80 * 1024**3
    memory_used: int = 10 * 1024**3
    power_mw: int = 300_000
    power_limit_mw: int = 700_000
    energy_mj: int = 1_000_000
    temperature: int = 55
    sm_clock_mhz: int = 1755
    sm_clock_max_mhz: int = 1980
    clocks_event_reasons: int = 0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    pcie_tx_kbs: int = 1000
    pcie_rx_kbs: int = 2000
    encoder: int = 10
    decoder: int = 30
    processes: int = 1
    #: GPM percentages (SM, tensor, DRAM); None: GPM unsupported (pre-Hopper)
    gpm: tuple[float, float, float] | None = (70.0, 40.0, 55.0)
    #: NVML function names this device answers with NOT_SUPPORTED
    unsupported: set[str] = dataclasses.field(default_factory=set)
    lost: bool = False


class FakeNvml:
    """A stand-in for the ``pynvml`` module (the subset loglog's agent calls)."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    NVML_GPM_METRIC_SM_UTIL = 2
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
    NVML_GPM_METRIC_DRAM_BW_UTIL = 10
    NVML_GPM_METRICS_GET_VERSION = 1
    nvmlEventTypeXidCriticalError = 0x8
    NVMLError = FakeNVMLError

    def __init__(
        self, gpus: list[FakeGpu], *, init_error: int | None = None, driver: str = "550.54.15"
    ) -> None:
        self.gpus = gpus
        for index, gpu in enumerate(gpus):
            gpu.uuid = gpu.uuid or f"GPU-fake-{index:04d}"
        self.init_error = init_error
        self.driver = driver
        self.calls: dict[str, int] = {}
        self._hangs: dict[tuple[str, int], threading.Event] = {}
        self._events: queue.Queue[Any] = queue.Queue()
        self._registered: set[int] = set()

    # -- scripting faults ---------------------------------------------------------------

    def hang(self, call: str, gpu: int) -> threading.Event:
        """Make ``call`` on GPU ``gpu`` block until the returned event is set."""
        event = threading.Event()
        self._hangs[(call, gpu)] = event
        return event

    def release(self) -> None:
        for event in self._hangs.values():
            event.set()
        self._hangs.clear()

    def fire_xid(self, gpu: int, xid: int) -> None:
        """Deliver an XID event for GPU ``gpu`` (if it registered for events)."""
        if gpu in self._registered:
            self._events.put(SimpleNamespace(device=FakeHandle(gpu), eventType=0x8, eventData=xid))

    # -- the pynvml surface -----------------------------------------------------------

    def _enter(self, call: str, handle: Any = None) -> FakeGpu | None:
        self.calls[call] = self.calls.get(call, 0) + 1
        if handle is None:
            return None
        gpu = self.gpus[handle.index]
        event = self._hangs.get((call, handle.index))
        if event is not None:
            event.wait()
        if gpu.lost:
            raise FakeNVMLError(ERROR_GPU_IS_LOST)
        if call in gpu.unsupported:
            raise FakeNVMLError(ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._enter("nvmlDeviceGetHandleByIndex")
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def _gpu(self, call: str, handle: Any) -> FakeGpu:
        gpu = self._enter(call, handle)
        assert gpu is not None
        return gpu

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(
            total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used
        )

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return self._gpu("nvmlDeviceGetTemperature", handle).temperature

    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int:
        return self._gpu("nvmlDeviceGetClockInfo", handle).sm_clock_mhz

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, clock: int) -> int:
        return self._gpu("nvmlDeviceGetMaxClockInfo", handle).sm_clock_max_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle).clocks_event_reasons

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter_type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEccErrors", handle)
        return (
            gpu.ecc_uncorrected
            if error_type == self.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
            else gpu.ecc_corrected
        )

    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int:
        gpu = self._gpu("nvmlDeviceGetPcieThroughput", handle)
        return gpu.pcie_tx_kbs if counter == self.NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_kbs

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        return [self._gpu("nvmlDeviceGetEncoderUtilization", handle).encoder, 167000]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        return [self._gpu("nvmlDeviceGetDecoderUtilization", handle).decoder, 167000]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=1000 + n, usedGpuMemory=1024**3) for n in range(gpu.processes)]

    # events
    def nvmlEventSetCreate(self) -> Any:
        self._enter("nvmlEventSetCreate")
        return SimpleNamespace(name="event-set")

    def nvmlDeviceRegisterEvents(self, handle: Any, types: int, event_set: Any) -> None:
        self._gpu("nvmlDeviceRegisterEvents", handle)
        self._registered.add(handle.index)

    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any:
        self._enter("nvmlEventSetWait")
        try:
            return self._events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise FakeNVMLError(ERROR_TIMEOUT) from None

    # GPM (Hopper and newer)
    class c_nvmlGpmMetricsGet_t:
        def __init__(self) -> None:
            self.version = 0
            self.numMetrics = 0
            self.sample1: Any = None
            self.sample2: Any = None
            self.metrics = [SimpleNamespace(metricId=0, value=0.0, nvmlReturn=0) for _ in range(98)]

    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> Any:
        gpu = self._gpu("nvmlGpmQueryDeviceSupport", handle)
        return SimpleNamespace(isSupportedDevice=int(gpu.gpm is not None))

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        return SimpleNamespace(values=None)

    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        gpu = self._gpu("nvmlGpmSampleGet", handle)
        if gpu.gpm is None:
            raise FakeNVMLError(ERROR_NOT_SUPPORTED)
        sample.values = gpu.gpm
        return sample

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        self._enter("nvmlGpmMetricsGet")
        sm, tensor, dram = request.sample2.values
        by_id = {self.NVML_GPM_METRIC_SM_UTIL: sm, self.NVML_GPM_METRIC_ANY_TENSOR_UTIL: tensor,
                 self.NVML_GPM_METRIC_DRAM_BW_UTIL: dram}  # fmt: skip
        for slot in range(request.numMetrics):
            request.metrics[slot].value = by_id.get(request.metrics[slot].metricId, 0.0)
        return request

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self._enter("nvmlGpmSampleFree")


def no_driver() -> FakeNvml:
    """What nvidia-ml-py does on a machine with no NVIDIA driver: init fails."""
    return FakeNvml([], init_error=ERROR_LIBRARY_NOT_FOUND)

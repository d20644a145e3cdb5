"""One sample of one GPU: every supported NVML reading, as metric values.

Values are keyed ``(metric name, extra label values)``. A call the device does not
support is skipped (its series is absent); any other failure is reported to ``failed``
(counted per call) and skipped; a lost GPU raises :class:`GpuLost` to the sampler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .nvml import Device, GpuLost, Nvml, NvmlError, Unsupported

Values = dict[tuple[str, tuple[str, ...]], float]
_KIB = 1024


class GpmState:
    """The previous GPM sample of a device (metrics need two samples)."""

    def __init__(self, supported: bool) -> None:
        self.supported = supported
        self.previous: Any = None


def sample_device(
    nvml: Nvml, device: Device, gpm: GpmState, failed: Callable[[str], None]
) -> Values:
    """Read everything NVML offers for ``device``."""
    module, handle = nvml.module, device.handle
    values: Values = {}

    def read(call: str, *args: Any) -> Any:
        """The call's result; None when unsupported or failed (counted). GpuLost escapes."""
        try:
            return nvml.call(call, handle, *args)
        except Unsupported:
            return None
        except GpuLost:
            raise
        except NvmlError as exc:
            failed(exc.call)
            return None

    rates = read("nvmlDeviceGetUtilizationRates")
    if rates is not None:
        values[("gpu_utilization_ratio", ())] = rates.gpu / 100.0
        values[("gpu_memory_utilization_ratio", ())] = rates.memory / 100.0
    memory = read("nvmlDeviceGetMemoryInfo")
    if memory is not None:
        values[("gpu_memory_used_bytes", ())] = float(memory.used)
        values[("gpu_memory_total_bytes", ())] = float(memory.total)
    scalar = [
        ("gpu_power_watts", "nvmlDeviceGetPowerUsage", (), 1e-3),
        ("gpu_power_limit_watts", "nvmlDeviceGetEnforcedPowerLimit", (), 1e-3),
        ("gpu_energy_joules_total", "nvmlDeviceGetTotalEnergyConsumption", (), 1e-3),
        (
            "gpu_temperature_celsius",
            "nvmlDeviceGetTemperature",
            (module.NVML_TEMPERATURE_GPU,),
            1.0,
        ),
        ("gpu_sm_clock_hertz", "nvmlDeviceGetClockInfo", (module.NVML_CLOCK_SM,), 1e6),
        ("gpu_sm_clock_max_hertz", "nvmlDeviceGetMaxClockInfo", (module.NVML_CLOCK_SM,), 1e6),
    ]
    for metric, call, args, scale in scalar:
        value = read(call, *args)
        if value is not None:
            values[(metric, ())] = float(value) * scale
    try:
        for reason, active in nvml.throttle_reasons(handle).items():
            values[("gpu_throttle_active", (reason,))] = float(active)
    except Unsupported:
        pass
    except GpuLost:
        raise
    except NvmlError as exc:
        failed(exc.call)
    for kind, error_type in (
        ("corrected", module.NVML_MEMORY_ERROR_TYPE_CORRECTED),
        ("uncorrected", module.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
    ):
        count = read("nvmlDeviceGetTotalEccErrors", error_type, module.NVML_VOLATILE_ECC)
        if count is not None:
            values[("gpu_ecc_errors_total", (kind,))] = float(count)
    for direction, counter in (
        ("tx", module.NVML_PCIE_UTIL_TX_BYTES),
        ("rx", module.NVML_PCIE_UTIL_RX_BYTES),
    ):
        throughput = read("nvmlDeviceGetPcieThroughput", counter)
        if throughput is not None:
            values[("gpu_pcie_throughput_bytes_per_second", (direction,))] = (
                float(throughput) * _KIB
            )
    for metric, call in (
        ("gpu_encoder_utilization_ratio", "nvmlDeviceGetEncoderUtilization"),
        ("gpu_decoder_utilization_ratio", "nvmlDeviceGetDecoderUtilization"),
    ):
        reading = read(call)
        if reading is not None:
            values[(metric, ())] = reading[0] / 100.0
    processes = read("nvmlDeviceGetComputeRunningProcesses")
    if processes is not None:
        values[("gpu_compute_processes", ())] = float(len(processes))
    if gpm.supported:
        _sample_gpm(nvml, device, gpm, values, failed)
    return values


_GPM = {
    "gpu_sm_active_ratio": "NVML_GPM_METRIC_SM_UTIL",
    "gpu_tensor_active_ratio": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "gpu_dram_bandwidth_ratio": "NVML_GPM_METRIC_DRAM_BW_UTIL",
}


def _sample_gpm(
    nvml: Nvml, device: Device, gpm: GpmState, values: Values, failed: Callable[[str], None]
) -> None:
    try:
        sample = nvml.gpm_sample(device.handle)
    except Unsupported:
        gpm.supported = False
        return
    except GpuLost:
        raise
    except NvmlError as exc:
        failed(exc.call)
        return
    previous, gpm.previous = gpm.previous, sample
    if previous is None:
        return
    ids = {metric: getattr(nvml.module, constant) for metric, constant in _GPM.items()}
    try:
        percents = nvml.gpm_metrics(previous, sample, list(ids.values()))
    except NvmlError as exc:
        failed(exc.call)
        return
    finally:
        nvml.gpm_free(previous)
    for metric, metric_id in ids.items():
        if metric_id in percents:
            values[(metric, ())] = percents[metric_id] / 100.0

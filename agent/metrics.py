"""Every metric the agent exports, declared here and nowhere else.

GPU series carry ``gpu`` (index) and ``uuid``; the marketing name and driver version are
in ``gpu_info`` (join on ``uuid``). A call a device does not support leaves its series
out — never a fake zero. Units are base units: ratios 0–1, bytes, watts, joules, hertz.
"""

from __future__ import annotations

GPU_LABELS = ("gpu", "uuid")

#: name → (type, extra labels beyond gpu/uuid, help)
GPU_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "gpu_info": ("gauge", ("name", "driver"), "Always 1; labels name the GPU model and the driver version."),
    "gpu_utilization_ratio": ("gauge", (), "Share of the last sample period in which ANY kernel ran (NVML GPU utilization). One tiny kernel running all the time reads 1.0: see gpu_sm_active_ratio for how busy the SMs are."),
    "gpu_memory_utilization_ratio": ("gauge", (), "Share of the sample period the memory controller was busy."),
    "gpu_memory_used_bytes": ("gauge", (), "Framebuffer memory in use."),
    "gpu_memory_total_bytes": ("gauge", (), "Framebuffer memory installed."),
    "gpu_power_watts": ("gauge", (), "Power draw."),
    "gpu_power_limit_watts": ("gauge", (), "Enforced power limit."),
    "gpu_energy_joules_total": ("counter", (), "Energy consumed since the driver loaded."),
    "gpu_temperature_celsius": ("gauge", (), "GPU die temperature."),
    "gpu_sm_clock_hertz": ("gauge", (), "Current SM clock."),
    "gpu_sm_clock_max_hertz": ("gauge", (), "Maximum SM clock."),
    "gpu_throttle_active": ("gauge", ("reason",), "1 while the clocks are held down for this reason (NVML clocks event reasons)."),
    "gpu_ecc_errors_total": ("counter", ("type",), "ECC memory errors since the driver loaded (volatile), by type."),
    "gpu_xid_errors_total": ("counter", ("xid",), "XID errors reported by the driver (NVML events), by XID code."),
    "gpu_pcie_throughput_bytes_per_second": ("gauge", ("direction",), "PCIe throughput over NVML's 20 ms window, by direction (tx, rx)."),
    "gpu_encoder_utilization_ratio": ("gauge", (), "Video encoder (NVENC) utilization."),
    "gpu_decoder_utilization_ratio": ("gauge", (), "Video decoder (NVDEC) utilization."),
    "gpu_sm_active_ratio": ("gauge", (), "Share of SMs busy (GPM, Hopper and newer)."),
    "gpu_tensor_active_ratio": ("gauge", (), "Share of time any tensor pipe was active (GPM, Hopper and newer)."),
    "gpu_dram_bandwidth_ratio": ("gauge", (), "DRAM bandwidth used vs the theoretical maximum (GPM, Hopper and newer)."),
    "gpu_peak_flops": ("gauge", ("dtype",), "Dense peak FLOP/s for the model, from a table by device name (absent when unknown)."),
    "gpu_compute_processes": ("gauge", (), "Compute processes running on the GPU."),
    "gpu_data_stale": ("gauge", (), "1 when the latest sample of this GPU is older than the hang timeout (a hung or lost GPU)."),
}  # fmt: skip

#: name → (type, labels, help) for the host and watched processes
HOST_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "host_cpu_seconds_total": ("counter", ("mode",), "CPU time of all cores, by mode (/proc/stat)."),
    "host_cpus": ("gauge", (), "Online CPUs."),
    "host_load1": ("gauge", (), "1-minute load average."),
    "host_memory_total_bytes": ("gauge", (), "Physical memory installed."),
    "host_memory_available_bytes": ("gauge", (), "Memory available for new work (MemAvailable)."),
    "watched_process_cpu_seconds_total": ("counter", ("pid", "name"), "CPU seconds (user + system) of a watched process."),
    "watched_process_resident_memory_bytes": ("gauge", ("pid", "name"), "Resident memory of a watched process."),
    "watched_process_up": ("gauge", ("pid", "name"), "1 while the watched process exists."),
}  # fmt: skip

#: name → (type, labels, help) about the agent itself
AGENT_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "agent_nvml_up": ("gauge", ("reason",), "1 when NVML works (reason=ok); 0 with the reason when it is missing or failing."),
    "agent_gpus": ("gauge", (), "GPUs NVML reports."),
    "agent_collect_duration_seconds": ("histogram", (), "Time one GPU's sample took."),
    "agent_collect_errors_total": ("counter", ("call",), "Failed collection calls (NVML, /proc, the supervisor), by call; unsupported NVML calls are not counted."),
    "agent_last_success_timestamp_seconds": ("gauge", (), "When a full collection last succeeded (unix seconds)."),
    "agent_hung_samplers": ("gauge", (), "Sampler threads abandoned inside a hung NVML call."),
}  # fmt: skip

METRICS = {**GPU_METRICS, **HOST_METRICS, **AGENT_METRICS}
COLLECT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

#: NVML clocks event reason bits (nvmlDeviceGetCurrentClocksEventReasons).
THROTTLE_REASONS = {
    "idle": 0x1,
    "app_clocks": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal": 0x20,
    "hw_thermal": 0x40,
    "hw_power_brake": 0x80,
    "display_clocks": 0x100,
}

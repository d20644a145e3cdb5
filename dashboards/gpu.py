"""GPU fleet — every GPU's utilization, memory, power, heat, clocks, throttling, errors."""

from __future__ import annotations

from typing import Any

from alerts.config import Config

from . import variables as v
from .builder import Dashboard, panel, prom, stat, thresholds, timeseries

UID = "loglog-gpu"
SEL = 'instance=~"$node", gpu=~"$gpu"'


def build(cfg: Config) -> dict[str, Any]:
    d = Dashboard(
        UID,
        "loglog · GPU fleet",
        "Per-GPU utilization, SM/tensor activity, memory, power, energy, temperature, clocks, throttle reasons, XID and ECC errors (from the node agent, NVML).",
        ["loglog", "gpu"],
        [v.prometheus(), v.gpu_instance(), v.gpu()],
    )
    d.row("Fleet")
    d.add(
        stat(
            "GPUs",
            "GPUs the agents report.",
            "short",
            [prom("sum(agent_gpus)", "GPUs", instant=True)],
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "Agents without NVML",
            "Agents that run without GPU data (no driver, or NVML failing).",
            "short",
            [prom("count(agent_nvml_up == 0) or vector(0)", "agents", instant=True)],
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "Stale GPUs",
            "GPUs whose data is older than the agent's hang timeout (a hung or lost GPU).",
            "short",
            [prom("sum(gpu_data_stale) or vector(0)", "stale", instant=True)],
            thresholds=thresholds((None, "green"), (1, "red")),
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "XID errors, 24 h",
            "XID errors the drivers reported in the last day.",
            "short",
            [prom("sum(increase(gpu_xid_errors_total[1d])) or vector(0)", "XIDs", instant=True)],
            thresholds=thresholds((None, "green"), (1, "red")),
        ),
        w=6,
        h=5,
    )
    d.row("Activity")
    d.add(
        timeseries(
            "GPU utilization",
            "Share of time any kernel ran (NVML). One tiny kernel running constantly reads 100 % — compare with SM activity.",
            "percentunit",
            [prom(f"gpu_utilization_ratio{{{SEL}}}", "{{instance}} GPU {{gpu}}")],
            max=1,
        ),
        w=12,
    )
    d.add(
        timeseries(
            "SM and tensor activity (GPM)",
            "Share of SMs busy and of time tensor pipes were active (Hopper and newer; absent elsewhere).",
            "percentunit",
            [
                prom(f"gpu_sm_active_ratio{{{SEL}}}", "SM {{gpu}}"),
                prom(f"gpu_tensor_active_ratio{{{SEL}}}", "tensor {{gpu}}"),
                prom(f"gpu_dram_bandwidth_ratio{{{SEL}}}", "DRAM BW {{gpu}}"),
            ],
            max=1,
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Memory used",
            "Framebuffer memory in use and installed.",
            "bytes",
            [
                prom(f"gpu_memory_used_bytes{{{SEL}}}", "used {{gpu}}"),
                prom(f"gpu_memory_total_bytes{{{SEL}}}", "total {{gpu}}"),
            ],
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Video engines",
            "NVENC (encoder) and NVDEC (decoder) utilization: video decode runs here, not on the SMs.",
            "percentunit",
            [
                prom(f"gpu_encoder_utilization_ratio{{{SEL}}}", "enc {{gpu}}"),
                prom(f"gpu_decoder_utilization_ratio{{{SEL}}}", "dec {{gpu}}"),
            ],
            max=1,
        ),
        w=12,
    )
    d.row("Power, heat, clocks")
    d.add(
        timeseries(
            "Power",
            "Power draw against the enforced limit.",
            "watt",
            [
                prom(f"gpu_power_watts{{{SEL}}}", "draw {{gpu}}"),
                prom(f"gpu_power_limit_watts{{{SEL}}}", "limit {{gpu}}"),
            ],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "Energy rate",
            "Energy consumed per second (the derivative of the energy counter).",
            "watt",
            [prom(f"rate(gpu_energy_joules_total{{{SEL}}}[$__rate_interval])", "{{gpu}}")],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "Temperature",
            "GPU die temperature.",
            "celsius",
            [prom(f"gpu_temperature_celsius{{{SEL}}}", "{{instance}} GPU {{gpu}}")],
            thresholds=thresholds((None, "green"), (cfg.gpu_temperature_celsius, "red")),
        ),
        w=8,
    )
    d.add(
        timeseries(
            "SM clock vs max",
            "Current SM clock against the maximum: a gap under load means throttling.",
            "hertz",
            [
                prom(f"gpu_sm_clock_hertz{{{SEL}}}", "clock {{gpu}}"),
                prom(f"gpu_sm_clock_max_hertz{{{SEL}}}", "max {{gpu}}"),
            ],
        ),
        w=12,
    )
    d.add(
        panel(
            "bargauge", "Throttle reasons now", "Clock event reasons active now, per GPU (idle and app clocks are normal; thermal, power brake and HW slowdown are not).", "short",
            [prom(f"max by (gpu, reason) (gpu_throttle_active{{{SEL}}})", "GPU {{gpu}} {{reason}}", instant=True)],
            defaults={"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (1, "orange"))},
            options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        w=12, h=8,
    )  # fmt: skip
    d.row("Errors and I/O")
    d.add(
        timeseries(
            "XID errors",
            "XID events per GPU and code (increase over 5 minutes).",
            "short",
            [prom(f"increase(gpu_xid_errors_total{{{SEL}}}[5m])", "GPU {{gpu}} XID {{xid}}")],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "ECC errors",
            "Corrected and uncorrected ECC errors (increase over 5 minutes).",
            "short",
            [prom(f"increase(gpu_ecc_errors_total{{{SEL}}}[5m])", "GPU {{gpu}} {{type}}")],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "PCIe throughput",
            "Bytes per second over PCIe, by direction.",
            "Bps",
            [prom(f"gpu_pcie_throughput_bytes_per_second{{{SEL}}}", "GPU {{gpu}} {{direction}}")],
        ),
        w=8,
    )
    return d.json()

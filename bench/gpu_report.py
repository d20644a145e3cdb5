"""The GPU proof's Markdown: the tables the README quotes, from the result dictionary
that ``bench.gpu_proof`` writes as JSON."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The result as the README's tables."""
    host, facts = result["host"], result["engine"]
    lines = [
        f"# GPU proof — {result['date']}{' (DRY RUN: CPU, FakeNvml)' if result['dry_run'] else ''}",
        "",
        f"Host: {host.get('gpu', 'no GPU')}, driver {result['nvml'].get('driver') or '—'}, "
        f"torch {host['torch']} (CUDA {host['cuda']}), Python {host['python']}, "
        f"{host['cpus']} CPUs. Run took {result['seconds']:.0f} s.",
        "",
        f"Engine: {facts['kind']} on {facts['device']} in {facts['precision']}; FLOPs per item "
        f"{_fmt(facts['flops_per_item_torch'])} (torch) vs {_fmt(facts['flops_per_item_onnx'])} "
        f"(ONNX): {'agree' if facts['flops_agree'] else 'DIFFER'}; dense peak "
        f"{_fmt(facts['peak_flops'] and facts['peak_flops'] / 1e12, 0)} TFLOP/s.",
        "",
        "## Calibration (model only)",
        "",
        "Runtime: the calibration the runtime serves with (copy in, forward, copy out, "
        "synchronised). Kernels only: the forward passes on a device-resident input, timed "
        "with CUDA events (on a CPU, with the clock).",
        "",
        "| batch | items/s (runtime, synced) | MFU | items/s (kernels only) | MFU |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in result["calibration"]:
        lines.append(
            f"| {row['batch']} | {_fmt(row['items_per_s'], 0)} | {_fmt(row['mfu'], 3)} | "
            f"{_fmt(row['kernel_items_per_s'], 0)} | {_fmt(row['kernel_mfu'], 3)} |"
        )
    lines += [
        "",
        "## Under load",
        "",
        "| phase | batch | mean batch | delivered items/s | capacity | pipeline eff. "
        "| engine eff. | MFU | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for phase in result["phases"]:
        lines.append(
            f"| {phase['name']} | {phase['batch']} | {_fmt(phase['mean_batch'], 1)} | "
            f"{_fmt(phase['delivered_per_s'], 0)} | {_fmt(phase['capacity_per_s'], 0)} | "
            f"{_fmt(phase['pipeline_efficiency'], 3)} | {_fmt(phase['engine_efficiency'], 3)} | "
            f"{_fmt(phase['mfu'], 4)} | {phase['bottleneck'] or '—'} |"
        )
    saturation = result.get("verdict_at_saturation") or {}
    lines += [
        "",
        f"Verdict at saturation: **{saturation.get('bottleneck') or '—'}** — "
        f"{saturation.get('reason') or ''}",
        "",
        f"## NVML ({result['nvml']['module']}, state {result['nvml']['reason']})",
        "",
        f"Series this GPU exports: {', '.join(result['nvml']['series_seen']) or 'none'}. "
        f"The agent's /metrics answered {result['nvml']['scrape'].get('status')} with "
        f"{len(result['nvml']['scrape'].get('gpu_families', []))} GPU families.",
        "",
    ]
    lines += nvml_table(result["nvml"]["phases"])
    tests = result["gpu_tests"]
    lines += [
        "",
        f"## gpu-marked tests: {tests.get('summary')} (exit {tests.get('returncode')})",
        "",
        *[f"- {line}" for line in tests.get("results", [])],
    ]
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


#: NVML series shown in the Markdown table (all are in the JSON), with display units.
_NVML_TABLE = {
    "gpu_utilization_ratio": ("%", 100.0),
    "gpu_sm_active_ratio": ("%", 100.0),
    "gpu_tensor_active_ratio": ("%", 100.0),
    "gpu_dram_bandwidth_ratio": ("%", 100.0),
    "gpu_power_watts": ("W", 1.0),
    "gpu_sm_clock_hertz": ("MHz", 1e-6),
    "gpu_memory_used_bytes": ("GiB", 1 / 2**30),
    "gpu_temperature_celsius": ("°C", 1.0),
}


def nvml_table(phases: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """One row per series, one column per load phase (and idle before/after): mean (max)."""
    shown = [p for p in phases if not p.startswith(("calibrate", "calibration", "load"))]
    lines = [
        "| series | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for series, (unit, scale) in _NVML_TABLE.items():
        cells = []
        for phase in shown:
            stats = phases[phase].get(series)
            cells.append(
                f"{stats['mean'] * scale:,.0f} ({stats['max'] * scale:,.0f})" if stats else "—"
            )
        lines.append(f"| {series} [{unit}] | " + " | ".join(cells) + " |")
    return ["", "Mean (max) per phase:", "", *lines]

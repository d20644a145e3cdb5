"""Dense peak FLOP/s by GPU model — the denominator of MFU, for the agent and the runtime.

Dense fp16/bf16 tensor-core peaks without sparsity (datasheets often headline the 2×
sparse figure), in FLOP/s. An unknown device has no entry: then there is no MFU, never a
guess. Names are matched case-insensitively on the marketing name NVML reports; the
longest matching key wins (so "H100 NVL" beats "H100").
"""

from __future__ import annotations

TFLOPS = 1e12

#: key → {dtype: FLOP/s}
PEAKS: dict[str, dict[str, float]] = {
    "T4": {"fp16": 65 * TFLOPS},
    "A10": {"fp16": 125 * TFLOPS, "bf16": 125 * TFLOPS},
    "A100": {"fp16": 312 * TFLOPS, "bf16": 312 * TFLOPS},
    "L4": {"fp16": 121 * TFLOPS, "bf16": 121 * TFLOPS},
    "L40S": {"fp16": 362 * TFLOPS, "bf16": 362 * TFLOPS},
    "H100 SXM": {"fp16": 989 * TFLOPS, "bf16": 989 * TFLOPS},
    "H100 80GB HBM3": {"fp16": 989 * TFLOPS, "bf16": 989 * TFLOPS},  # NVML's name for SXM
    "H100 PCIe": {"fp16": 756 * TFLOPS, "bf16": 756 * TFLOPS},
    "H100 NVL": {"fp16": 835 * TFLOPS, "bf16": 835 * TFLOPS},
    "H200": {"fp16": 989 * TFLOPS, "bf16": 989 * TFLOPS},  # SXM; NVL below
    "H200 NVL": {"fp16": 836 * TFLOPS, "bf16": 836 * TFLOPS},
}


def peak_flops(device_name: str, dtype: str = "fp16") -> float | None:
    """Dense peak FLOP/s of ``device_name`` for ``dtype``, or None when unknown.

    >>> peak_flops("NVIDIA H100 NVL")
    8.35e+14
    >>> peak_flops("Some CPU") is None
    True
    """
    name = device_name.upper().replace("NVIDIA", "").strip()
    matches = [key for key in PEAKS if _contains_model(name, key.upper())]
    if not matches:
        return None
    return PEAKS[max(matches, key=len)].get(dtype)


def _contains_model(name: str, key: str) -> bool:
    """Whole-word match: "A10" must not match "A100", "L4" must not match "L40S"."""
    start = name.find(key)
    while start >= 0:
        end = start + len(key)
        before_ok = start == 0 or not name[start - 1].isalnum()
        after_ok = end == len(name) or not name[end].isalnum()
        if before_ok and after_ok:
            return True
        start = name.find(key, start + 1)
    return False

"""Benchmark: ways to decode the request images, side by side in one run.

Not a test. The README's loadgen pictures (640×480 noise, JPEG at qscale 5 and PNG), each
decoder timed on the same bytes to HWC uint8 RGB, interleaved, median of ``--repeats``:

- ``av.open`` probing the container (what ``decode_image`` did before 2026-11-28);
- ``av.open`` with the format named (``jpeg_pipe``/``png_pipe``);
- a PyAV codec context (``mjpeg``/``png``), no container: ``decode_image`` now (to RGB);
- simplejpeg and Pillow, when installed (not dependencies: measured to justify the choice).

Usage: ``python -m bench.decode_bench [--repeats 60]``; writes ``bench/results/decode.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from inference.media.video import _decode_probed, decode_image, encode_jpeg, encode_png

RESULTS = Path(__file__).resolve().parent / "results"


def _named_container(data: bytes, fmt: str) -> np.ndarray:
    with av.open(io.BytesIO(data), format=fmt) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def decoders(kind: str) -> dict[str, Callable[[bytes], Any]]:
    """name → decode function for ``kind`` (jpeg or png); optional libraries if present."""
    named = {"jpeg": ("jpeg_pipe", "mjpeg"), "png": ("png_pipe", "png")}[kind]
    found: dict[str, Callable[[bytes], Any]] = {
        "av.open, probed (before)": _decode_probed,
        f"av.open, format={named[0]}": lambda data: _named_container(data, named[0]),
        f"codec context {named[1]} (decode_image now)": decode_image,
    }
    if kind == "jpeg":
        try:
            import simplejpeg  # type: ignore[import-not-found, unused-ignore]

            found["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ImportError:
            pass
    try:
        from PIL import Image  # type: ignore[import-not-found, unused-ignore]

        found["Pillow"] = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except ImportError:
        pass
    return found


def measure(repeats: int) -> list[dict[str, Any]]:
    rgb = (np.random.default_rng(7).random((480, 640, 3)) * 255).astype(np.uint8)
    rows = []
    for kind, data in (("jpeg", encode_jpeg(rgb)), ("png", encode_png(rgb))):
        functions = decoders(kind)
        times: dict[str, list[float]] = {name: [] for name in functions}
        for function in functions.values():
            function(data)  # warm-up: libraries loaded, tables built
        for _ in range(repeats):  # interleaved, so load on the machine hits every row alike
            for name, function in functions.items():
                started = time.perf_counter()
                function(data)
                times[name].append(time.perf_counter() - started)
        anchor = statistics.median(times["av.open, probed (before)"])
        for name, values in times.items():
            median = statistics.median(values)
            rows.append(
                {
                    "format": kind,
                    "bytes": len(data),
                    "decoder": name,
                    "median_ms": round(median * 1000, 3),
                    "p90_ms": round(float(np.percentile(values, 90)) * 1000, 3),
                    "x_probed": round(median / anchor, 3),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    rows = measure(args.repeats)
    print("| format | decoder | median ms | p90 ms | × probed |\n|---|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['format']} ({row['bytes'] // 1024} KiB) | {row['decoder']} | "
            f"{row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['x_probed']:.2f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (RESULTS / "decode.json").write_text(json.dumps({"when": stamp, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

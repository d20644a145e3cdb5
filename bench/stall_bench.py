"""Benchmark: how fast each view names a drilled stage, hung and slow.

Not a test. Starts ``loglog serve`` (the real server, drills allowed) with three synthetic
streams (320×240 at 20 fps: 60 frames/s in), then for each stage drills it twice — *hung*
(60 s per item) and *slow* (30 ms per item, 100 ms for decode) — and measures the seconds
from the drill to the first moment each view names it correctly:

- ``GET /v1/profile``: the verdict's bottleneck is the stage, stalled for a hang, not
  stalled (slow but moving) for a slow stage;
- the exported gauges: ``inference_pipeline_bottleneck{stage}`` = 1, and
  ``inference_stage_stalled{stage}`` = 1 for a hang, 0 for a slow stage;
- ``loglog profile``: its own verdict from two scrapes of /metrics 1 s apart (the same
  functions the command runs).

By default the server runs a tiny CNN (3×32×32, one convolution) built here, so that the
drilled stage — not the model — is the slowest stage: on a shared 2-core VM the built-in
224×224 model alone runs under 33 items/s, slower than a 30 ms/item drill, and would rightly
stay the bottleneck. ``--default-model`` uses the built-in one.

Usage: ``python -m bench.stall_bench [--default-model]``; writes ``bench/results/stall.json``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TIMEOUT = 20.0  # a view that has not named the stage by then counts as a miss
HUNG_MS, SLOW_MS, SLOW_DECODE_MS = 60_000, 30, 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _named(verdict: dict[str, Any], stage: str, hung: bool) -> bool:
    return verdict["bottleneck"] == stage and bool(verdict["stalled"]) == hung


def _gauges(samples: dict[Any, float], stage: str, hung: bool) -> bool:
    from inference.tools.profile import _value

    bottleneck = _value(samples, "inference_pipeline_bottleneck", stage=stage)
    stalled = _value(samples, "inference_stage_stalled", stage=stage)
    return bottleneck == 1 and stalled == (1 if hung else 0)


def measure(url: str, stage: str, hung: bool) -> dict[str, float | None]:
    """Seconds from the drill to each view naming ``stage`` correctly (None: missed)."""
    from inference.tools.profile import from_scrapes, judge, scrape

    delay = HUNG_MS if hung else (SLOW_DECODE_MS if stage == "decode" else SLOW_MS)
    found: dict[str, float | None] = {"profile": None, "gauge": None, "cli": None}
    scrapes: list[tuple[float, Any]] = []
    started = time.monotonic()
    _call("POST", f"{url}/v1/drills", {"stage": stage, "delay_ms": delay, "duration_s": 120})
    try:
        while time.monotonic() - started < TIMEOUT and None in found.values():
            now = time.monotonic()
            if found["profile"] is None and _named(
                _call("GET", f"{url}/v1/profile")["verdict"], stage, hung
            ):
                found["profile"] = time.monotonic() - started
            samples = scrape(url)
            scrapes.append((now, samples))
            if found["gauge"] is None and _gauges(samples, stage, hung):
                found["gauge"] = time.monotonic() - started
            # loglog profile: this scrape against the one about a second before it.
            earlier = [s for s in scrapes if now - s[0] >= 1.0]
            if found["cli"] is None and earlier:
                then, first = earlier[-1]
                verdict = judge(from_scrapes(first, samples, now - then))
                if _named(verdict.as_dict(), stage, hung):
                    found["cli"] = time.monotonic() - started
            time.sleep(0.25)
    finally:
        _call("DELETE", f"{url}/v1/drills")
    return found


def _recover(url: str, previous: str, seconds: float = 30.0) -> None:
    """Wait until nothing is stalled and the last drilled stage is no longer named (the
    monitor's window has moved past it), so the next drill starts from a healthy pipeline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        verdict = _call("GET", f"{url}/v1/profile")["verdict"]
        if not verdict["stalled"] and verdict["bottleneck"] != previous:
            return
        time.sleep(0.5)


def tiny_model(path: Path) -> Path:
    """A 3×32×32 CNN with one 3×3 convolution (ONNX), for a model far faster than any
    drilled stage."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    from inference.types import STAGES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default-model", action="store_true", help="serve the built-in model")
    args = parser.parse_args(argv)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    RESULTS.mkdir(exist_ok=True)
    log = open(RESULTS / "stall_server.log", "w")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "stack.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--allow-drills"]  # fmt: skip
    if not args.default_model:
        command += ["--model", str(tiny_model(RESULTS / "tiny.onnx"))]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(
                        "the server did not become ready; see stall_server.log"
                    ) from None
                time.sleep(0.5)
        for index in range(3):
            _call(
                "POST", f"{url}/v1/streams", {"source": "synthetic://320x240@20", "id": f"s{index}"}
            )
        time.sleep(5)  # let the monitor's window fill with healthy traffic
        for stage in STAGES:
            results[stage] = {}
            for mode in ("hung", "slow"):
                _recover(url, stage)
                results[stage][mode] = measure(url, stage, mode == "hung")
                print(stage, mode, results[stage][mode], flush=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()

    def fmt(value: float | None) -> str:
        return "missed" if value is None else f"{value:.1f} s"

    print("\n| stage | drill | /v1/profile | exported gauges | loglog profile |")
    print("|---|---|---:|---:|---:|")
    for stage, modes in results.items():
        for mode, found in modes.items():
            delay = (
                HUNG_MS if mode == "hung" else (SLOW_DECODE_MS if stage == "decode" else SLOW_MS)
            )
            print(
                f"| {stage} | {mode} ({delay} ms/item) | {fmt(found['profile'])} | "
                f"{fmt(found['gauge'])} | {fmt(found['cli'])} |"
            )
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "results": results,
    }
    (RESULTS / "stall.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

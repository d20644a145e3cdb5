"""The PyTorch engine on the CPU build of torch: same outputs and FLOPs as the ONNX model,
its files by type, calibration, MFU and the verdict through it, and `loglog serve --engine
torch` answering requests. GPU-only checks are marked ``gpu``."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

torch = pytest.importorskip("torch", reason="the torch extra: pip install -e '.[torch]'")
# The real torch engine on the CPU: importing and tracing torch costs seconds per test.
pytestmark = pytest.mark.slow

from inference.analysis.calibration import calibrate  # noqa: E402
from inference.analysis.flops import count_flops  # noqa: E402
from inference.config import RuntimeConfig  # noqa: E402
from inference.engines import load_engine  # noqa: E402
from inference.engines.model import default_model_path  # noqa: E402
from inference.engines.torch import TorchEngine, save_default_model  # noqa: E402
from inference.errors import EngineError, ModelError  # noqa: E402
from inference.runtime import Runtime  # noqa: E402
from inference.types import EngineInfo  # noqa: E402
from tests.conftest import free_port, until  # noqa: E402

FAST = dict(calibration_seconds=0.1, monitor_interval_s=0.2, monitor_window_s=2.0)
#: fp32 torch vs ONNX Runtime on the same weights: measured max |Δ| 1.0e-6 on logits of
#: magnitude ≤ 2.4 (different convolution kernels sum in different orders).
FP32_TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def fp32_engine():
    return TorchEngine(device="cpu", precision="fp32", threads=1)


def _batch(size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((size, 3, 224, 224)).astype(np.float32)


def test_torch_and_onnx_give_the_same_outputs_for_the_same_input(fp32_engine):
    """Both engines are built from inference.engines.model.default_weights: same function, so the
    same logits within FP32_TOLERANCE and the same ranking."""
    onnx_engine = load_engine(threads=1)
    batch = _batch(3)
    ours = fp32_engine.run(batch)["logits"]
    theirs = onnx_engine.run(batch)["logits"]
    assert ours.shape == theirs.shape == (3, 100) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, **FP32_TOLERANCE)
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_bf16_runs_the_same_model_at_lower_precision():
    """bf16 keeps 8 mantissa bits: logits stay within 0.1 of fp32 (measured 0.011)."""
    engine = TorchEngine(device="cpu", precision="bf16", threads=1)
    assert engine.describe().precision == "bf16"
    batch = _batch(2)
    reference = load_engine(threads=1).run(batch)["logits"]
    np.testing.assert_allclose(engine.run(batch)["logits"], reference, atol=0.1)


def test_flops_counted_from_the_torch_module_equal_the_onnx_count(fp32_engine):
    """The torch count (aten ops) and the ONNX count (graph) use the same rule: equal."""
    info = fp32_engine.describe()
    assert info.flops_per_item == count_flops(default_model_path()) == 1_333_152_768


def test_describe_says_what_runs_where(fp32_engine):
    info = fp32_engine.describe()
    assert (info.kind, info.device, info.input_shape, info.output_names) == (
        "torch",
        "cpu",
        (3, 224, 224),
        ("logits",),
    )
    assert info.input_dtype == "float32" and info.threads == 1


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".pt2"])
def test_saved_models_are_loaded_by_file_type(tmp_path, fp32_engine, suffix):
    """TorchScript and torch.export files pick the torch engine by their suffix, keep the
    input shape in their metadata, and compute what the built-in module computes."""
    path = save_default_model(tmp_path / f"cnn{suffix}")
    engine = load_engine(path, threads=1)
    info = engine.describe()
    assert info.kind == "torch" and info.input_shape == (3, 224, 224)
    assert info.flops_per_item == fp32_engine.describe().flops_per_item
    batch = _batch(2, seed=7)  # batch 2 for .pt2: its batch dimension is dynamic
    np.testing.assert_allclose(
        engine.run(batch)["logits"], fp32_engine.run(batch)["logits"], rtol=1e-5, atol=1e-5
    )
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file was renamed into place"


def _torchscript(path, extra_files=None):
    """A small foreign TorchScript file (TorchScript warns that it is deprecated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.trace(torch.nn.Conv2d(3, 4, 3).eval(), torch.zeros(1, 3, 8, 8))
        torch.jit.save(module, str(path), _extra_files=extra_files or {})
    return path


def test_a_torchscript_file_without_its_input_shape_is_refused_with_the_fix(tmp_path):
    path = _torchscript(tmp_path / "bare.pt")
    with pytest.raises(ModelError, match=r"input shape per item.*_extra_files"):
        load_engine(path)


def test_a_model_that_cannot_take_its_declared_input_fails_at_start_up(tmp_path):
    """Metadata saying 3×224×224 for a 1-channel model: refused when loaded, with the fix."""
    path = tmp_path / "liar.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.trace(torch.nn.Conv2d(1, 4, 3).eval(), torch.zeros(1, 1, 8, 8))
        torch.jit.save(
            module, str(path), _extra_files={"loglog.json": '{"input_shape": [3, 224, 224]}'}
        )
    with pytest.raises(
        ModelError, match=r"fails on one item of shape \(3, 224, 224\).*input_shape"
    ):
        load_engine(path)


def test_unnamed_outputs_are_named_by_position(tmp_path):
    path = _torchscript(tmp_path / "plain.pt", {"loglog.json": '{"input_shape": [3, 8, 8]}'})
    engine = load_engine(path)
    assert engine.describe().output_names == ("output0",)
    assert engine.run(np.zeros((2, 3, 8, 8), np.float32))["output0"].shape == (2, 4, 6, 6)


def test_garbage_and_missing_files_are_model_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip archive" * 100)
    with pytest.raises(ModelError, match="PyTorch cannot load"):
        load_engine(garbage)
    bad_meta = _torchscript(tmp_path / "meta.pt", {"loglog.json": "{not json"})
    with pytest.raises(ModelError, match="not JSON"):
        load_engine(bad_meta)
    with pytest.raises(ModelError, match="does not exist"):
        load_engine(tmp_path / "missing.pt")


def test_bad_options_fail_at_start_up_with_the_choices():
    with pytest.raises(ModelError, match="fp32, fp16, bf16"):
        TorchEngine(precision="fp8")
    with pytest.raises(ModelError, match="auto, cuda, cpu"):
        TorchEngine(device="tpu")
    with pytest.raises(ModelError, match="unknown engine kind"):
        load_engine(kind="jax")
    with pytest.raises(ModelError, match="torch engine cannot run"):
        load_engine(default_model_path(), kind="torch")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="sees no CUDA GPU"):
            TorchEngine(device="cuda")


def test_without_torch_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ModelError, match=r"in loglog's checkout, pip install '\.\[torch\]'"):
        TorchEngine()


def test_a_batch_the_model_cannot_take_is_an_engine_error(fp32_engine):
    with pytest.raises(EngineError, match=r"PyTorch failed on a batch of shape \(1, 5, 9, 9\)"):
        fp32_engine.run(np.zeros((1, 5, 9, 9), np.float32))


def test_device_seconds_times_the_model_alone(fp32_engine):
    seconds = fp32_engine.device_seconds(_batch(1), runs=2, warmup=1)
    assert 0 < seconds < 30


def test_calibration_through_the_torch_engine():
    """The engine alone, timed at each size: capacity = size ÷ latency, with the torch
    FLOP count carried along."""
    engine = TorchEngine(device="cpu", threads=1)
    calibration = calibrate(
        engine, [1, 2], seconds=0.1, flops_per_item=engine.describe().flops_per_item
    )
    assert set(calibration.seconds_per_batch) == {1, 2}
    for size, seconds in calibration.seconds_per_batch.items():
        assert 0.0005 < seconds < 10
        assert calibration.capacity(size) == pytest.approx(size / seconds)
    assert calibration.flops_per_item == 1_333_152_768


class _OnGpu:
    """The CPU torch engine presenting itself as a named GPU: drives the runtime's peak
    lookup (which needs a device name and a precision) without a GPU."""

    def __init__(self, engine: TorchEngine, device: str) -> None:
        self.engine = engine
        self.info = dataclasses.replace(engine.describe(), device=device)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.engine.run(batch)

    def describe(self) -> EngineInfo:
        return self.info


def _runtime(engine, **options) -> Runtime:
    runtime = Runtime(
        engine=engine, config=RuntimeConfig(**{**FAST, **options}), registry=CollectorRegistry()
    )
    runtime.start(progress=lambda message: None)
    return runtime


def _image(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((240, 320, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("precision", "peak"), [("bf16", 989e12), ("fp32", None)], ids=["bf16", "fp32"]
)
def test_the_runtime_takes_flops_and_the_peak_for_its_precision_from_the_engine(precision, peak):
    """FLOPs come from the torch module (no .onnx file here); the peak is looked up for
    the engine's precision — fp32 has no entry, so no MFU rather than one against the
    fp16 peak. With a peak, MFU = items/s × FLOPs ÷ peak."""
    engine = _OnGpu(TorchEngine(device="cpu", precision=precision, threads=1), "NVIDIA H200")
    runtime = _runtime(engine, max_batch=2)
    try:
        assert runtime.calibration.flops_per_item == 1_333_152_768
        assert runtime.calibration.peak_flops == peak
        for seed in range(3):
            assert runtime.infer_image(_image(seed)).result["top"]
        runtime.monitor.sample()
        time.sleep(0.05)
        runtime.infer_image(_image(9))
        runtime.monitor.sample()
        text = generate_latest(runtime.registry).decode()
        assert 'engine="torch"' in text
        assert 'inference_model_flops_per_item{model="default-cnn"} 1.333152768e+09' in text
        if peak is None:
            assert runtime.monitor.mfu is None
        else:
            assert runtime.monitor.mfu is not None and 0 < runtime.monitor.mfu < 1e-3
    finally:
        runtime.stop()


def test_the_verdict_works_through_the_torch_engine():
    """Streams through the torch engine with infer slowed by a drill: the verdict names
    infer, and both efficiencies are computed against the torch calibration."""
    runtime = _runtime(TorchEngine(device="cpu", threads=1), max_batch=2)
    try:
        for index in range(3):
            runtime.streams.add("synthetic://320x240@20", f"s{index}")
        runtime.drills.start("infer", 40, 30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.5)
            latest = runtime.monitor.latest
            # Under load a window can name infer before it holds an undrilled engine
            # call to judge efficiency by: wait for both, within the same hang guard.
            if latest and latest.bottleneck == "infer" and latest.engine_efficiency is not None:
                break
        latest = runtime.monitor.latest
        assert latest.bottleneck == "infer", latest.reason
        assert latest.engine_efficiency is not None and latest.engine_efficiency < 1
        assert latest.pipeline_efficiency is not None
    finally:
        runtime.stop()


def test_serve_with_the_torch_engine_answers_infer(tmp_path):
    """`loglog serve --engine torch`: the built-in CNN in PyTorch answers POST /v1/infer
    with the same top class as the ONNX model, and says engine="torch" in /metrics."""
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "serve", "--port", str(port), "--engine", "torch"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        until(
            lambda: urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200, 180, "ready"
        )
        tensor = _batch(1, seed=3)[0]
        body = io.BytesIO()
        np.save(body, tensor)
        request = urllib.request.Request(
            f"{url}/v1/infer", data=body.getvalue(), headers={"Content-Type": "application/x-npy"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        expected = load_engine(threads=1).run(tensor[None])["logits"][0].argmax()
        assert answer["outputs"]["top"][0]["class"] == int(expected), answer
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'inference_model_info{device="cpu",engine="torch"' in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


def test_serve_refuses_an_unusable_engine_choice_at_start_up(tmp_path):
    """A torch engine asked to run an .onnx file fails start-up with exit 2 and the fix."""
    done = subprocess.run(
        [sys.executable, "-m", "stack.cli", "serve", "--port", str(free_port()), "--engine",
         "torch", "--model", str(default_model_path())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "torch engine cannot run" in done.stderr


@pytest.mark.gpu
def test_on_cuda_the_engine_runs_fp16_and_agrees_with_onnx():
    """On a GPU host: fp16 on CUDA by default, the device's name for the peak lookup,
    CUDA-event timing, logits within 0.05 of the fp32 ONNX model."""
    if not torch.cuda.is_available():
        pytest.skip("this torch build sees no CUDA device")
    engine = TorchEngine()
    info = engine.describe()
    assert info.precision == "fp16" and info.device != "cpu"
    batch = _batch(8)
    np.testing.assert_allclose(
        engine.run(batch)["logits"], load_engine(threads=1).run(batch)["logits"], atol=0.05
    )
    kernels = engine.device_seconds(batch, runs=5)
    assert 0 < kernels < 1
    # run() returns after the GPU finished: its wall time cannot undercut the kernels'.
    calibration = calibrate(engine, [8], seconds=0.5)
    assert calibration.seconds_per_batch[8] >= kernels * 0.9


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        # 10^24 elements per item: numpy refused to even size the probe (ValueError).
        ({"input_shape": [10**12, 10**12]}, "elements per item"),
        # 2^29 fp32 elements is 2 GiB for the one-item probe alone: refused, not allocated.
        ({"input_shape": [2**29]}, "elements per item"),
        ({"input_shape": [3, 8, 8], "output_names": 5}, "output_names"),
        ({"input_shape": [3, 8, 8], "output_names": "logits"}, "output_names"),
        ({"input_shape": [3, 8, 8], "output_names": [1]}, "output_names"),
    ],
)
def test_hostile_metadata_is_a_model_error_before_anything_runs(tmp_path, meta, says):
    """loglog.json is data from the model's author: a shape no host can hold, or output
    names that are not a list of strings, fail with ModelError naming the field — not a
    numpy ValueError/TypeError traceback, nor a probe that allocates tens of GiB."""
    path = _torchscript(tmp_path / "hostile.pt", {"loglog.json": json.dumps(meta)})
    with pytest.raises(ModelError, match=says):
        load_engine(path)

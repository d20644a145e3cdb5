"""The default model: a mid-size CNN at 224×224 built here as ONNX, weights deterministic.

Nothing is downloaded. The network is a plain stack of strided 3×3 convolutions, global
average pooling and a linear classifier over 100 classes (~1.3 GFLOP per image, ~6 ms on one core),
sized so
that on a CPU the model — not preprocessing — is the expensive stage, which is what a
real detector or classifier looks like to the pipeline. The same seed always gives the
same bytes, so calibration and outputs are reproducible. :func:`default_weights` is the
one source of the parameters: the ONNX file here and the PyTorch module of the ``torch``
engine are both built from it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_NAME = "default-cnn"
INPUT_SHAPE = (3, 224, 224)
NUM_CLASSES = 100
_VERSION = 1
#: (out_channels, stride) of each 3×3 convolution.
_LAYERS = ((48, 2), (96, 2), (192, 2), (384, 2), (384, 1))
#: The same architecture, shrunk to ~0.3 MFLOP per image (~0.1 ms on one core): for tests
#: and benchmarks that need a real engine with the default input and outputs, but not the
#: default's cost (calibrating it takes seconds, each request ~6 ms).
SMALL_LAYERS = ((8, 4), (8, 4))


def default_model_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the default model, building it on first use (atomically)."""
    base = Path(cache_dir) if cache_dir else _cache_dir()
    path = base / f"{DEFAULT_NAME}-v{_VERSION}.onnx"
    if not path.exists():
        build_default_model(path)
    return path


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "loglog" / "models"


@dataclasses.dataclass(frozen=True, slots=True)
class DefaultWeights:
    """The default CNN's parameters: the one source both the ONNX file and the PyTorch
    module (``inference.engines.torch``) are built from, so the two compute the same
    function."""

    #: (weight (out, in, 3, 3), bias (out,), stride) of each convolution, in order.
    convs: tuple[tuple[np.ndarray, np.ndarray, int], ...]
    fc_weight: np.ndarray  # (NUM_CLASSES, channels of the last convolution)
    fc_bias: np.ndarray  # (NUM_CLASSES,)


def default_weights(
    seed: int = 1234, layers: tuple[tuple[int, int], ...] = _LAYERS
) -> DefaultWeights:
    """The default CNN's deterministic weights (He-initialised, zero biases) for ``seed``;
    ``layers`` gives each convolution's (out_channels, stride)."""
    rng = np.random.default_rng(seed)
    convs = []
    channels = INPUT_SHAPE[0]
    for out_channels, stride in layers:
        fan_in = channels * 9
        weight = (
            rng.standard_normal((out_channels, channels, 3, 3)) * np.sqrt(2.0 / fan_in)
        ).astype(np.float32)
        convs.append((weight, np.zeros(out_channels, dtype=np.float32), stride))
        channels = out_channels
    fc_w = (rng.standard_normal((NUM_CLASSES, channels)) * np.sqrt(1.0 / channels)).astype(
        np.float32
    )
    return DefaultWeights(tuple(convs), fc_w, np.zeros(NUM_CLASSES, dtype=np.float32))


def build_default_model(
    path: str | os.PathLike[str],
    *,
    seed: int = 1234,
    layers: tuple[tuple[int, int], ...] = _LAYERS,
) -> Path:
    """Write the default CNN to ``path`` and return it; ``layers=SMALL_LAYERS`` writes the
    same architecture (same input, same 100 outputs) at a fraction of its cost."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = default_weights(seed, layers)
    nodes = []
    initializers = []
    name = "input"
    for index, (weight, bias, stride) in enumerate(weights.convs):
        w_name, b_name, conv, relu = f"w{index}", f"b{index}", f"conv{index}", f"relu{index}"
        initializers += [
            numpy_helper.from_array(weight, w_name),
            numpy_helper.from_array(bias, b_name),
        ]
        nodes.append(
            helper.make_node(
                "Conv", [name, w_name, b_name], [conv], kernel_shape=[3, 3],
                strides=[stride, stride], pads=[1, 1, 1, 1],
            )
        )  # fmt: skip
        nodes.append(helper.make_node("Relu", [conv], [relu]))
        name = relu
    initializers += [
        numpy_helper.from_array(weights.fc_weight, "fc_w"),
        numpy_helper.from_array(weights.fc_bias, "fc_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [name], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        DEFAULT_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *INPUT_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="loglog"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".tmp") as handle:
        handle.write(model.SerializeToString())
    os.replace(handle.name, target)  # atomic: concurrent builders never see half a file
    return target

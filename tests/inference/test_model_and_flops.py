"""The default model and the FLOP count read from ONNX graphs."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from inference.analysis.flops import count_flops
from inference.engines.model import _LAYERS, INPUT_SHAPE, NUM_CLASSES, build_default_model


def test_default_model_is_built_deterministically(tmp_path):
    """The same seed gives byte-identical models: calibration and outputs are reproducible."""
    first = build_default_model(tmp_path / "a.onnx").read_bytes()
    second = build_default_model(tmp_path / "b.onnx").read_bytes()
    assert first == second
    model = onnx.load(str(tmp_path / "a.onnx"))
    onnx.checker.check_model(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", *INPUT_SHAPE]


def test_flops_of_the_default_model_match_the_hand_count(tmp_path):
    """2 FLOPs per multiply-add of every 3×3 convolution plus the classifier."""
    path = build_default_model(tmp_path / "m.onnx")
    expected, channels, size = 0, INPUT_SHAPE[0], INPUT_SHAPE[1]
    for out_channels, stride in _LAYERS:
        size = (size + 2 - 3) // stride + 1
        expected += 2 * size * size * out_channels * channels * 9
        channels = out_channels
    expected += 2 * NUM_CLASSES * channels
    assert count_flops(path) == expected


def _matmul_model(path, k_dim):
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [k_dim, 10], [0.0] * (k_dim * 10))
    graph = helper.make_graph(
        [node], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k_dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [w],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_matmul_flops_and_unknown_shapes(tmp_path):
    """MatMul counts 2·M·N·K; a dimension that cannot be inferred makes the count unknown."""
    assert count_flops(_matmul_model(tmp_path / "mm.onnx", 64)) == 2 * 10 * 64
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, ["K", "M"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
    )  # fmt: skip
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "d.onnx"
    )
    assert count_flops(tmp_path / "d.onnx") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("NVIDIA H100 NVL", 835e12), ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA A10", 125e12),
     ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L40S", 362e12), ("NVIDIA L4", 121e12),
     ("Intel Xeon", None), ("cpu", None)],
)  # fmt: skip
def test_peak_table_matches_whole_model_names(name, expected):
    """A10 is not A100, L4 is not L40S; unknown devices have no peak (so no MFU)."""
    from hardware.peaks import peak_flops

    assert peak_flops(name) == expected

"""FLOPs per item, counted from an ONNX graph (2 FLOPs per multiply-add, as peaks are).

Shapes come from ONNX shape inference with the batch dimension fixed to 1. Counted ops:
Conv / ConvTranspose (kernel multiply-adds), Gemm and MatMul (2·M·N·K), and elementwise
or pooling work that is small next to those is ignored on purpose — MFU is a statement
about the matrix engine. An op whose shapes cannot be inferred makes the count
``None`` (unknown), never a guess.
"""

from __future__ import annotations

import math
import os
from typing import Any


def count_flops(model_path: str | os.PathLike[str]) -> int | None:
    """Forward-pass FLOPs for one item of the model at ``model_path``, or None if unknown."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_path))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and (not dims[0].HasField("dim_value") or dims[0].dim_value <= 0):
            dims[0].dim_value = 1  # one item
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        return None
    shapes = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    total = 0
    for node in inferred.graph.node:
        flops = _node_flops(node, shapes)
        if flops is None:
            return None
        total += flops
    return total


def _node_flops(node: Any, shapes: dict[str, tuple[int, ...]]) -> int | None:
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        weight = shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        inp = shapes.get(node.input[0])
        if weight is None or out is None or inp is None:
            return None
        attrs = {a.name: a for a in node.attribute}
        groups = attrs["group"].i if "group" in attrs else 1
        kernel = math.prod(weight[2:])
        if op == "Conv":
            # every output element: (in_channels / groups) × kernel multiply-adds
            return 2 * math.prod(out) * (inp[1] // groups) * kernel
        return 2 * math.prod(inp) * (weight[1]) * kernel
    if op == "Gemm":
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        if a is None or b is None or out is None:
            return None
        attrs = {x.name: x.i for x in node.attribute if x.name in ("transA",)}
        k = a[0] if attrs.get("transA") else a[-1]
        return 2 * math.prod(out) * k
    if op == "MatMul":
        a = shapes.get(node.input[0])
        out = shapes.get(node.output[0])
        if a is None or out is None:
            return None
        return 2 * math.prod(out) * a[-1]
    return 0

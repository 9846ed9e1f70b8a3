"""Equivalent spellings of one computation cost the same: small graphs written two ways."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hw_estimators import estimate, onnx_workload

ACCELERATORS = ("systolic", "capsacc")


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           initializers: list[onnx.TensorProto], opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _value(name: str, shape: list, element_type: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, element_type, shape)


def _tensor(name: str, shape: tuple[int, ...], dtype=np.float32, fill: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full(shape, fill, dtype), name)


def _assert_same_cost(first: onnx.ModelProto, second: onnx.ModelProto) -> None:
    for accelerator in ACCELERATORS:
        a, b = estimate(first, accelerator), estimate(second, accelerator)
        assert (a.energy_mj, a.latency_ms, a.macs, a.params) == pytest.approx(
            (b.energy_mj, b.latency_ms, b.macs, b.params), rel=1e-12), accelerator
        assert list(a.layers.kind) == list(b.layers.kind)


def _conv_then(extra: list[onnx.NodeProto], extra_initializers: list[onnx.TensorProto], *, bias: bool,
               output: str) -> onnx.ModelProto:
    """Conv 3 -> 8, 3x3 on 1x3x10x10, then ``extra`` nodes, then ReLU."""
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    nodes = [helper.make_node("Conv", inputs, ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             *extra, helper.make_node("Relu", [output], ["y"], name="relu")]
    initializers = [_tensor("w", (8, 3, 3, 3)), *([_tensor("b", (8,))] if bias else []), *extra_initializers]
    return _model(nodes, [_value("x", [1, 3, 10, 10])], [_value("y", [1, 8, 10, 10])], initializers)


def test_batch_norm_is_folded_into_the_convolution_before_it() -> None:
    batch_norm = helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], name="bn")
    statistics = [_tensor(name, (8,)) for name in ("scale", "shift", "mean", "var")]
    unfolded = _conv_then([batch_norm], statistics, bias=False, output="n")
    folded = _conv_then([], [], bias=True, output="c")
    _assert_same_cost(unfolded, folded)
    conv = onnx_workload(unfolded).layers[0]
    assert conv.bias and conv.weights == 8 * 3 * 9 + 8  # the scale goes into the weights, the shift is the bias


def test_per_channel_mul_and_add_fold_like_batch_norm() -> None:
    nodes = [helper.make_node("Mul", ["c", "scale"], ["s"], name="mul"),
             helper.make_node("Add", ["shift", "s"], ["t"], name="add")]
    constants = [_tensor("scale", (1, 8, 1, 1)), _tensor("shift", (8, 1, 1))]
    _assert_same_cost(_conv_then(nodes, constants, bias=False, output="t"), _conv_then([], [], bias=True, output="c"))


def test_an_add_that_is_not_per_channel_stays_element_wise_work() -> None:
    spatial = _conv_then([helper.make_node("Add", ["c", "map"], ["t"], name="add")], [_tensor("map", (1, 1, 10, 10))],
                         bias=True, output="t")
    kinds = [layer.kind for layer in onnx_workload(spatial).layers]
    assert kinds == ["conv", "elementwise"]


def test_identity_and_dropout_are_free() -> None:
    nodes = [helper.make_node("Identity", ["c"], ["i"], name="identity"),
             helper.make_node("Dropout", ["i"], ["d"], name="dropout")]
    _assert_same_cost(_conv_then(nodes, [], bias=True, output="d"), _conv_then([], [], bias=True, output="c"))


def _head(global_pool: list[onnx.NodeProto], product: list[onnx.NodeProto],
          initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    """ReLU on 1x16x4x4, global average pooling, flattening, a 16 -> 10 fully connected layer."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), *global_pool, *product]
    weights = [_tensor("w", (16, 10)), _tensor("b", (10,)), *initializers]
    return _model(nodes, [_value("x", [1, 16, 4, 4])], [_value("y", [1, 10])], weights)


def test_global_pooling_flattening_and_fully_connected_spellings() -> None:
    """GlobalAveragePool + Flatten + Gemm (TorchScript) == ReduceMean + Reshape + MatMul + Add."""
    torchscript = _head([helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
                         helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1)],
                        [helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc")], [])
    other = _head([helper.make_node("ReduceMean", ["r", "axes"], ["p"], name="pool", keepdims=1),
                   helper.make_node("Reshape", ["p", "shape"], ["f"], name="reshape")],
                  [helper.make_node("MatMul", ["f", "w"], ["m"], name="fc"),
                   helper.make_node("Add", ["m", "b"], ["y"], name="bias")],
                  [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
                   numpy_helper.from_array(np.array([1, 16], np.int64), "shape")])
    _assert_same_cost(torchscript, other)
    assert [layer.kind for layer in onnx_workload(other).layers] == ["elementwise", "matmul"]


def test_shape_arithmetic_is_folded_and_resolved() -> None:
    """A Reshape target computed from Shape / Gather / Div / Concat, as the TorchScript exporter writes it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "one"], ["c"], name="gather", axis=0),
             helper.make_node("Div", ["c", "two"], ["half"], name="div"),
             helper.make_node("Concat", ["batch", "two", "half", "minus_one"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="mm")]
    constants = [numpy_helper.from_array(np.array(value, np.int64), name) for name, value in
                 (("one", [1]), ("two", [2]), ("batch", [1]), ("minus_one", [-1]))]
    model = _model(nodes, [_value("x", [1, 8, 5])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [*constants, _tensor("w", (5, 7))])
    workload = onnx_workload(model)
    assert [layer.kind for layer in workload.layers] == ["matmul"]  # the integer arithmetic costs nothing
    (product,) = workload.layers
    assert product.macs == 1 * 2 * 4 * 5 * 7  # (1, 2, 4, 5) @ (5, 7): the target resolved to [1, 2, 4, 5]


def test_element_wise_chains_merge_but_stop_at_a_contraction() -> None:
    """x -> Sigmoid -> Mul(x) -> conv -> Relu: SiLU is one layer, the ReLU after the conv another."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="sigmoid"),
             helper.make_node("Mul", ["x", "s"], ["silu"], name="mul"),
             helper.make_node("Conv", ["silu", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    model = _model(nodes, [_value("x", [1, 4, 6, 6])], [_value("y", [1, 8, 6, 6])],
                   [_tensor("w", (8, 4, 1, 1)), _tensor("b", (8,))])
    layers = onnx_workload(model).layers
    assert [(layer.kind, layer.detail) for layer in layers] == [("elementwise", "Sigmoid+Mul"), ("conv", ""),
                                                                ("elementwise", "")]
    silu = layers[0]
    # reads x once, writes the product once; the sigmoid stays local
    assert (silu.ops, silu.input_elements, silu.output_elements) == (2 * 144, 144, 144)

"""Quantized graphs are costed at their bit widths: QDQ, QLinearConv / QLinearMatMul, ConvInteger / MatMulInteger."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hw_estimators import estimate, load_accelerator, onnx_workload


def test_int8_resnet18_has_the_float_graphs_macs_and_at_most_half_its_energy(
        quantized_resnet18: tuple[onnx.ModelProto, onnx.ModelProto], caplog: pytest.LogCaptureFixture) -> None:
    float_graph, int8_graph = quantized_resnet18
    assert {node.op_type for node in int8_graph.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    with caplog.at_level(logging.WARNING, logger="hw_estimators"):
        full, quantized = estimate(float_graph, "systolic"), estimate(int8_graph, "systolic")
    assert quantized.unknown_ops == {} and "no parser" not in caplog.text
    assert quantized.macs == pytest.approx(full.macs, rel=0.01)
    assert quantized.params == pytest.approx(full.params, rel=0.01)
    assert quantized.energy_mj <= 0.5 * full.energy_mj
    contractions = quantized.layers[quantized.layers.kind.isin(["conv", "matmul"])]
    assert len(contractions) == 21 and set(contractions.bits) == {8} and set(contractions.weight_bits) == {8}
    assert set(full.layers.bits) == {32}


def test_int8_over_float_compute_energy_is_the_accelerator_files_ratio(
        quantized_resnet18: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    """Per convolution, the arithmetic energy ratio is (int8 mult + add) / (fp32 mult + add) from systolic.toml."""
    float_graph, int8_graph = quantized_resnet18
    config = load_accelerator("systolic").config
    (float32,) = [entry for entry in config.precisions if entry.bits == 32]
    expected = (config.mult_pj + config.add_pj) / (float32.mult_pj + float32.add_pj)
    full, quantized = (estimate(graph, "systolic").layers for graph in (float_graph, int8_graph))
    # the quantizer keeps the convolutions' node names but not their order
    full, quantized = (layers[layers.kind == "conv"].set_index("name").sort_index() for layers in (full, quantized))
    assert list(full.index) == list(quantized.index) and list(full.macs) == list(quantized.macs)
    ratios = quantized.compute_energy_mj / full.compute_energy_mj
    assert ratios.to_numpy() == pytest.approx(expected)
    # operands move at 1 byte instead of 4; partial sums keep the 32-bit accumulator width
    k_tiles = -(-full.k // config.rows)
    partial_sums = 2 * (k_tiles - 1).clip(lower=0) * full.batch * full.m * full.n * config.accumulator_bits / 8
    assert (full.sram_bytes - partial_sums).to_numpy() == pytest.approx(
        4 * (quantized.sram_bytes - partial_sums).to_numpy())
    assert full.weight_kib.to_numpy() == pytest.approx(4 * quantized.weight_kib.to_numpy(), rel=1e-3)


def test_capsacc_keeps_nascaps_fixed_width(quantized_resnet18: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    float_graph, int8_graph = quantized_resnet18
    full, quantized = estimate(float_graph, "capsacc"), estimate(int8_graph, "capsacc")
    convs = [layers[layers.kind == "conv"].energy_mj.sum() for layers in (full.layers, quantized.layers)]
    assert convs[1] == pytest.approx(convs[0], rel=1e-9)
    assert set(full.layers.bits) == set(quantized.layers.bits) == {8}


def _quantized_conv_graph(op_type: str) -> onnx.ModelProto:
    """A 3 -> 8 channel 3x3 convolution on uint8 1x3x6x6 input, int8 weights, as ``op_type``."""
    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.int8), "w")
    scalars = [numpy_helper.from_array(np.array(value, dtype), name) for name, value, dtype in
               (("x_scale", 0.1, np.float32), ("x_zero", 128, np.uint8), ("w_scale", 0.1, np.float32),
                ("w_zero", 0, np.int8), ("y_scale", 0.1, np.float32), ("y_zero", 128, np.uint8))]
    if op_type == "QLinearConv":
        bias = numpy_helper.from_array(np.zeros(8, np.int32), "b")
        node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale",
                                                "y_zero", "b"], ["y"], name="conv", kernel_shape=[3, 3])
        output, initializers = TensorProto.UINT8, [weight, *scalars, bias]
    else:
        node = helper.make_node("ConvInteger", ["x", "w", "x_zero", "w_zero"], ["y"], name="conv",
                                kernel_shape=[3, 3])
        output, initializers = TensorProto.INT32, [weight, scalars[1], scalars[3]]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", output, [1, 8, 4, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("op_type, output_bits", [("QLinearConv", 8), ("ConvInteger", 32)])
def test_integer_convolutions_are_convolutions_at_eight_bits(op_type: str, output_bits: int) -> None:
    (layer,) = onnx_workload(_quantized_conv_graph(op_type)).layers
    assert layer.kind == "conv" and layer.op_type == op_type
    assert layer.macs == 16 * 27 * 8 and layer.kernel == (3, 3)
    assert (layer.weight_bits, layer.activation_bits, layer.output_bits) == (8, 8, output_bits)
    # int8 weights and the canonical bias stage (the graph's int32 bias, or none); scales and zero points are not weights
    assert layer.bias and layer.weights == 8 * 27 + 8
    row = estimate(_quantized_conv_graph(op_type), "systolic").layers.iloc[0]
    assert row["bits"] == 8


def _quantized_matmul_graph(op_type: str) -> onnx.ModelProto:
    """(1 x 4 x 6) uint8 activations times a (6 x 5) int8 weight, as ``op_type``."""
    weight = numpy_helper.from_array(np.ones((6, 5), np.int8), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zero_u8, zero_i8 = (numpy_helper.from_array(np.array(0, dtype), name)
                        for name, dtype in (("zero_u8", np.uint8), ("zero_i8", np.int8)))
    if op_type == "QLinearMatMul":
        node = helper.make_node("QLinearMatMul", ["x", "scale", "zero_u8", "w", "scale", "zero_i8", "scale",
                                                  "zero_u8"], ["y"], name="mm")
        output = TensorProto.UINT8
    else:
        node = helper.make_node("MatMulInteger", ["x", "w", "zero_u8", "zero_i8"], ["y"], name="mm")
        output = TensorProto.INT32
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 6])],
                              [helper.make_tensor_value_info("y", output, [1, 4, 5])],
                              [weight, scale, zero_u8, zero_i8])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("op_type", ["QLinearMatMul", "MatMulInteger"])
def test_integer_products_are_matmuls_at_eight_bits(op_type: str) -> None:
    (layer,) = onnx_workload(_quantized_matmul_graph(op_type)).layers
    assert layer.kind == "matmul" and layer.macs == 4 * 6 * 5
    assert (layer.batch, layer.m, layer.k, layer.n) == (1, 4, 6, 5) and layer.weights == 30 + 5
    assert (layer.weight_bits, layer.activation_bits) == (8, 8)


def test_qdq_convolution_costs_what_qlinearconv_costs() -> None:
    """DequantizeLinear -> Conv -> QuantizeLinear is the QDQ spelling of one QLinearConv."""
    qlinear = _quantized_conv_graph("QLinearConv")
    initializers = {tensor.name: tensor for tensor in qlinear.graph.initializer}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["xf"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wf"], name="dq_w"),
             helper.make_node("DequantizeLinear", ["b", "b_scale"], ["bf"], name="dq_b"),
             helper.make_node("Conv", ["xf", "wf", "bf"], ["yf"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zero"], ["y"], name="q_y")]
    b_scale = numpy_helper.from_array(np.array(0.01, np.float32), "b_scale")
    graph = helper.make_graph(nodes, "g", list(qlinear.graph.input), list(qlinear.graph.output),
                              [*initializers.values(), b_scale])
    qdq = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    for accelerator in ("systolic", "capsacc"):
        first, second = estimate(qlinear, accelerator), estimate(qdq, accelerator)
        assert (first.energy_mj, first.latency_ms, first.macs) == pytest.approx(
            (second.energy_mj, second.latency_ms, second.macs))
        assert list(first.layers.kind) == list(second.layers.kind) == ["conv"]
    assert first.unknown_ops == second.unknown_ops == {}

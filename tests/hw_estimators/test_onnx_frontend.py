"""ONNX graph -> workload: MAC counts, capsule recognition, unknown operators."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch.utils.flop_counter import FlopCounterMode

from hw_estimators import PARSERS, estimate, format_unknown_ops, onnx_workload
from hw_estimators.onnx_frontend import DATA_MOVEMENT_OPS

CONTRACTION_OPS = {"aten.convolution", "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"}


def flop_counter_macs(network: torch.nn.Module, example: torch.Tensor) -> float:
    """MACs of convolutions and (batched) matrix products, as FlopCounterMode counts them (FLOPs / 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(example)
    counts = counter.get_flop_counts()["Global"]
    assert {str(op) for op in counts} <= CONTRACTION_OPS  # einsum is counted through bmm
    return sum(counts.values()) / 2


@pytest.mark.parametrize("fixture", ["capsnet_export", "deepcaps_export", "cnn_export"])
def test_macs_match_flop_counter(fixture: str, request: pytest.FixtureRequest) -> None:
    exported = request.getfixturevalue(fixture)
    workload = onnx_workload(exported.proto)
    expected = flop_counter_macs(exported.network, exported.example)
    contraction_macs = sum(layer.macs for layer in workload.layers if layer.is_contraction)
    assert contraction_macs == pytest.approx(expected, rel=0.01)
    assert workload.macs == contraction_macs  # element-wise layers count operations, not MACs


def test_capsnet_capsule_layers_recognised_by_class(capsnet_export) -> None:
    layers = onnx_workload(capsnet_export.proto).layers
    kinds = [(layer.kind, layer.module) for layer in layers if layer.is_contraction]
    assert kinds == [("conv", "CapsNet"), ("conv", "PrimaryCaps"), ("capsule_votes", "ClassCaps")] + \
        [("routing", "ClassCaps")] * 5  # 3 iterations: 3 weighted sums + 2 agreement updates
    votes = next(layer for layer in layers if layer.kind == "capsule_votes")
    assert (votes.batch, votes.m, votes.k, votes.n) == (1152, 1, 8, 160)
    assert votes.weights == 1152 * 8 * 160


def test_deepcaps_3d_skip_is_votes_and_routing(deepcaps_export) -> None:
    layers = onnx_workload(deepcaps_export.proto).layers
    conv3d = [layer for layer in layers if layer.module == "ConvCaps3d" and layer.is_contraction]
    assert [layer.kind for layer in conv3d] == ["capsule_votes"] + ["routing"] * 5
    assert conv3d[0].kernel == (8, 3, 3) and conv3d[0].images == 32


def test_params_and_peak_activations(cnn_export) -> None:
    workload = onnx_workload(cnn_export.proto)
    parameters = sum(p.numel() for p in cnn_export.network.parameters())
    # the exporter folds batch normalisation into the convolution before it
    batchnorm = 4 * 16
    assert parameters - batchnorm <= workload.params <= parameters
    # the peak is while the first ReLU runs: its input and output, 8x12x12 each (the image is freed)
    assert workload.peak_activation_elements == 2 * 8 * 12 * 12


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom", 1)])


def _info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _with_unknown_op() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("FancyOp", ["a"], ["b"], name="fancy", domain="custom"),
             helper.make_node("FancyOp", ["b"], ["y"], name="fancy2", domain="custom")]
    model = _model(nodes, [_info("x", [2, 3])], [_info("y", [2, 3])])
    model.graph.value_info.extend([_info("a", [2, 3]), _info("b", [2, 3])])
    return model


def test_unknown_op_costed_as_elementwise_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hw_estimators.onnx_frontend"):
        workload = onnx_workload(_with_unknown_op())
    warnings = [record for record in caplog.records if "no parser" in record.getMessage()]
    assert len(warnings) == 1 and "custom.FancyOp x2" in warnings[0].getMessage()
    assert workload.unknown_ops == {"custom.FancyOp": 2}
    assert format_unknown_ops(workload.unknown_ops) == "custom.FancyOp x2"  # once per operator type, with a count
    result = estimate(_with_unknown_op())
    assert result.unknown_ops == {"custom.FancyOp": 2} and result.to_dict()["unknown_ops"] == {"custom.FancyOp": 2}
    fancy = [layer for layer in workload.layers if layer.op_type == "FancyOp"]
    assert [layer.kind for layer in fancy] == ["elementwise", "elementwise"] and fancy[0].ops == 6


def test_strict_names_op_type_and_node() -> None:
    with pytest.raises(ValueError, match="'FancyOp'.*node 'fancy'"):
        onnx_workload(_with_unknown_op(), strict=True)


def test_einsum_with_ellipsis_and_weight_first() -> None:
    weight = numpy_helper.from_array(np.zeros((5, 3), np.float32), "w")
    node = helper.make_node("Einsum", ["w", "x"], ["y"], name="e", equation="nk,...k->...n")
    model = _model([node], [_info("x", [2, 7, 3])], [_info("y", [2, 7, 5])], [weight])
    (layer,) = onnx_workload(model).layers
    assert layer.kind == "matmul" and layer.macs == 2 * 7 * 5 * 3
    # the weight (5 x 3) is stationary: k = 3, n = 5, m = 14 streamed vectors
    assert (layer.batch, layer.m, layer.k, layer.n) == (1, 14, 3, 5)
    assert layer.bias and layer.weights == 15 + 5  # the canonical bias stage: one per output


def test_matmul_broadcast_and_gemm() -> None:
    weight = numpy_helper.from_array(np.zeros((4, 6), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(6, np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Gemm", ["flat", "w2", "b"], ["y"], name="gemm", transB=1)]
    w2 = numpy_helper.from_array(np.zeros((6, 18), np.float32), "w2")
    reshape = helper.make_node("Reshape", ["h", "shape"], ["flat"], name="reshape")
    shape = numpy_helper.from_array(np.array([1, 18], np.int64), "shape")
    model = _model([nodes[0], reshape, nodes[1]], [_info("x", [3, 1, 4])], [_info("y", [1, 6])],
                   [weight, w2, bias, shape])
    layers = {layer.name: layer for layer in onnx_workload(model).layers}
    assert set(layers) == {"mm", "gemm"}  # Reshape moves data only
    assert (layers["mm"].batch, layers["mm"].m, layers["mm"].k, layers["mm"].n) == (1, 3, 4, 6)
    assert layers["gemm"].macs == 18 * 6 and layers["gemm"].bias and layers["gemm"].weights == 6 * 18 + 6


def test_missing_shapes_are_inferred() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Sigmoid", ["a"], ["y"], name="s")]
    model = _model(nodes, [_info("x", [4, 5])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    assert [layer.ops for layer in onnx_workload(model, fuse_elementwise=False).layers] == [20, 20]


def test_elementwise_chains_of_one_module_are_fused(capsnet_export) -> None:
    layers = onnx_workload(capsnet_export.proto).layers
    primary = [layer for layer in layers if layer.scope == "primary" and layer.kind == "elementwise"]
    assert len(primary) == 1  # the squash: seven nodes, one layer
    (squash,) = primary
    assert squash.detail == "Mul+ReduceSum+Add+Div+Sqrt+Div+Mul"
    separate = [layer for layer in onnx_workload(capsnet_export.proto, fuse_elementwise=False).layers
                if layer.scope == "primary" and layer.kind == "elementwise"]
    assert len(separate) == 7 and squash.ops == sum(layer.ops for layer in separate)
    assert squash.output_elements == separate[-1].output_elements == 32 * 8 * 6 * 6


def test_dynamic_batch_taken_as_one(caplog: pytest.LogCaptureFixture) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_info("x", ["batch", 5])],
                   [_info("y", ["batch", 5])])
    with caplog.at_level(logging.WARNING, logger="hw_estimators.onnx_shapes"):
        (layer,) = onnx_workload(model).layers
    assert layer.ops == 5 and "dynamic dimensions 'batch' (in 2 tensors) are taken as 1" in caplog.text


def test_many_dynamic_dimensions_are_counted_not_listed(caplog: pytest.LogCaptureFixture) -> None:
    names = [f"d{i}" for i in range(8)]
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_info("x", names)], [_info("y", names)])
    with caplog.at_level(logging.WARNING, logger="hw_estimators.onnx_shapes"):
        onnx_workload(model)
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "'d0', 'd1', 'd2', 'd3', 'd4' and 3 more (in 2 tensors)" in warning and "'d7'" not in warning


def test_registry_has_explicit_entries() -> None:
    for op in ("Conv", "MatMul", "Gemm", "Einsum", "Softmax", "BatchNormalization", "MaxPool"):
        assert op in PARSERS
    assert "Reshape" in DATA_MOVEMENT_OPS and "FancyOp" not in PARSERS


def test_peak_live_activations_by_hand() -> None:
    """x -> relu -> a; a -> tanh -> (unused); a -> sigmoid -> b -> neg -> y: never more than two 2x2 tensors."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
             helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"), helper.make_node("Neg", ["b"], ["y"], name="neg")]
    model = _model(nodes, [_info("x", [2, 2])], [_info("y", [2, 2])])
    model.graph.value_info.extend([_info(name, [2, 2]) for name in ("a", "t", "b")])
    assert onnx_workload(model).peak_activation_elements == 2 * 4

"""Graphs read in pieces and put back together give the whole graph's reading, or refuse to."""

from __future__ import annotations

import ast

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hw_estimators import estimate, onnx_workload
from hw_estimators.composition import NETWORK_INPUT, UncleanBoundary, Wire, compose
from hw_estimators.fragments import read_fragment
from hw_estimators.layer_pricing import LayerPricer, cost_key
from hw_estimators.onnx_ops import NAME_SCOPES_KEY
from hw_estimators.workload import Workload


def split(model: onnx.ModelProto, cuts: list[int]) -> tuple[list[onnx.ModelProto], list[list[Wire]], list[Wire]]:
    """``model`` cut before each node index of ``cuts``: the pieces (each a graph of its own), their wiring
    and the network outputs."""
    graph = model.graph
    nodes = list(graph.node)
    bounds = [0, *cuts, len(nodes)]
    initializers = {item.name: item for item in graph.initializer}
    values = {item.name: item for item in [*graph.input, *graph.value_info, *graph.output]}
    network_inputs = [item.name for item in graph.input if item.name not in initializers]
    network_outputs = [item.name for item in graph.output]
    written_by: dict[str, int] = {}
    pieces, wiring, outputs_of = [], [], []
    for position, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        part = nodes[start:stop]
        written = {name for node in part for name in node.output}
        inputs, constants = [], []
        for name in (name for node in part for name in node.input if name and name not in written):
            target = constants if name in initializers else inputs
            if name not in target:
                target.append(name)
        later = {name for node in nodes[stop:] for name in node.input}
        outputs = [name for node in part for name in node.output if name in later or name in network_outputs]
        piece = onnx.ModelProto()
        piece.CopyFrom(model)
        del piece.graph.node[:], piece.graph.initializer[:], piece.graph.input[:], piece.graph.output[:]
        piece.graph.node.extend(part)
        piece.graph.initializer.extend(initializers[name] for name in constants)
        piece.graph.input.extend(values[name] for name in inputs)
        piece.graph.output.extend(values[name] for name in outputs)
        wiring.append([Wire(written_by[name], outputs_of[written_by[name]].index(name)) if name in written_by
                       else Wire(NETWORK_INPUT, network_inputs.index(name)) for name in inputs])
        written_by.update({name: position for name in outputs})
        pieces.append(piece)
        outputs_of.append(outputs)
    return pieces, wiring, [Wire(written_by[name], outputs_of[written_by[name]].index(name))
                            for name in network_outputs]


def module_boundaries(model: onnx.ModelProto, depth: int) -> list[int]:
    """Node indices where the module path (its first ``depth`` levels) changes."""
    def path(node: onnx.NodeProto) -> tuple[str, ...]:
        scopes = next(ast.literal_eval(prop.value) for prop in node.metadata_props if prop.key == NAME_SCOPES_KEY)
        return tuple(scopes[1:-1][:depth])

    paths = [path(node) for node in model.graph.node]
    return [position for position in range(1, len(paths)) if paths[position] != paths[position - 1]]


def composed(model: onnx.ModelProto, cuts: list[int]):
    pieces, wiring, outputs = split(model, cuts)
    return compose([read_fragment(piece) for piece in pieces], wiring, outputs)


def assert_same_reading(whole: Workload, parts) -> None:
    assert sorted(map(cost_key, parts.layers())) == sorted(map(cost_key, whole.layers))
    assert (parts.params, parts.macs) == (whole.params, whole.macs)
    assert (parts.peak_activation_elements, parts.peak_activation_bits) == (whole.peak_activation_elements,
                                                                            whole.peak_activation_bits)


@pytest.mark.parametrize("fixture, depth", [("capsnet_export", 1), ("deepcaps_export", 1), ("deepcaps_export", 2),
                                            ("cnn_export", 1)])
def test_pieces_cut_at_module_boundaries_compose_to_the_whole_reading(fixture: str, depth: int,
                                                                     request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(fixture).proto
    cuts = module_boundaries(model, depth)
    assert len(cuts) >= 2
    assert_same_reading(onnx_workload(model), composed(model, cuts))


def test_every_piece_reads_its_share_of_the_layers(deepcaps_export) -> None:
    model = deepcaps_export.proto
    parts = composed(model, module_boundaries(model, 2))
    assert len(parts.fragments) > 5
    assert all(fragment.layers or not fragment.macs for fragment in parts.fragments)
    assert parts.workload().macs == onnx_workload(model).macs


def test_a_cut_inside_an_element_wise_chain_is_refused(capsnet_export, cnn_export) -> None:
    model = capsnet_export.proto
    ops = [node.op_type for node in model.graph.node]
    inside_squash = ops.index("ReduceSum")  # the primary capsules' squash: Mul -> ReduceSum -> ...
    with pytest.raises(UncleanBoundary, match="element-wise"):
        composed(model, [inside_squash])
    with pytest.raises(UncleanBoundary, match="element-wise"):  # PlainCNN's ReLU and max pooling are two modules
        composed(cnn_export.proto, module_boundaries(cnn_export.proto, 2))


def _conv_then(op_type: str) -> onnx.ModelProto:
    """x -> Conv -> ``op_type`` (a batch norm, or a ReLU) -> y."""
    initializers = [numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")]
    if op_type == "BatchNormalization":
        initializers += [numpy_helper.from_array(np.ones(4, np.float32), name) for name in ("s", "b", "m", "v")]
        second = helper.make_node(op_type, ["c", "s", "b", "m", "v"], ["y"])
    else:
        second = helper.make_node(op_type, ["c"], ["y"])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), second]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], initializers,
                              value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 5, 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_a_cut_between_a_convolution_and_its_batch_norm_is_refused() -> None:
    with pytest.raises(UncleanBoundary, match="fold"):
        composed(_conv_then("BatchNormalization"), [1])


def test_a_cut_between_a_convolution_and_its_activation_is_clean() -> None:
    model = _conv_then("Relu")
    assert_same_reading(onnx_workload(model), composed(model, [1]))


def _residual() -> onnx.ModelProto:
    """x -> Relu -> a; a -> Conv -> Conv -> Sigmoid -> d; Add(a, d) -> Relu -> y: ``a`` lives across the convolutions."""
    weight = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Conv", ["a", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c", "w"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["b"], ["d"]),
             helper.make_node("Add", ["a", "d"], ["e"]),
             helper.make_node("Relu", ["e"], ["y"])]
    shape = [1, 4, 6, 6]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [weight],
                              value_info=[helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
                                          for name in "abcde"])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_a_tensor_read_after_a_piece_counts_in_that_piece_s_peak() -> None:
    model = _residual()
    whole = onnx_workload(model)
    parts = composed(model, [1, 3])  # [Relu] [Conv, Conv] [Sigmoid, Add, Relu]
    assert_same_reading(whole, parts)
    # on its own the second convolution holds c and b; in the network a stays alive for the Add
    middle = parts.fragments[1]
    assert middle.peak() == (2 * 144, 2 * 144 * 32)
    assert middle.peak(kept_alive=[0]) == (3 * 144, 3 * 144 * 32)
    assert parts.peak_activation_elements == whole.peak_activation_elements == 3 * 144


def test_a_cut_where_element_wise_work_meets_element_wise_work_is_refused() -> None:
    for cuts in ([1, 4], [5]):  # the Sigmoid joins the Add, the Add joins the ReLU
        with pytest.raises(UncleanBoundary):
            composed(_residual(), cuts)


def test_wiring_errors_name_the_piece(capsnet_export) -> None:
    pieces, wiring, outputs = split(capsnet_export.proto, module_boundaries(capsnet_export.proto, 1))
    fragments = [read_fragment(piece) for piece in pieces]
    with pytest.raises(ValueError, match="fragment 1 takes 1 inputs"):
        compose(fragments, [wiring[0], [], *wiring[2:]], outputs)
    with pytest.raises(ValueError, match="earlier fragment"):
        compose(fragments, [wiring[0], [Wire(2, 0)], *wiring[2:]], outputs)
    with pytest.raises(ValueError, match="elements"):
        compose(fragments, [wiring[0], wiring[0], *wiring[2:]], outputs)
    with pytest.raises(ValueError, match="read by no fragment"):
        compose(fragments[:2], wiring[:2], [Wire(0, 0)])


def test_the_pricer_gives_cost_workload_s_figures_and_prices_each_distinct_layer_once(deepcaps_export) -> None:
    reference = estimate(deepcaps_export.proto, "systolic")
    workload = onnx_workload(deepcaps_export.proto)
    pricer = LayerPricer("systolic")
    priced = pricer.price(workload.layers)
    assert priced.energy_mj == pytest.approx(reference.energy_mj, rel=1e-12)
    assert priced.latency_ms == pytest.approx(reference.latency_ms, rel=1e-12)
    assert priced.weight_bytes / 1024 == pytest.approx(reference.weight_memory_kib, rel=1e-12)
    assert pricer.activation_bytes(workload.peak_activation_elements, workload.peak_activation_bits) / 1024 == \
        pytest.approx(reference.activation_memory_kib, rel=1e-12)
    distinct = len({cost_key(layer) for layer in workload.layers})
    assert len(pricer) == distinct < len(workload.layers)  # DeepCaps repeats its cell layers
    pricer.price(workload.layers)
    assert len(pricer) == distinct


def test_the_pricer_forgets_beyond_its_bound(deepcaps_export) -> None:
    pricer = LayerPricer("capsacc", max_layers=3)
    pricer.price(onnx_workload(deepcaps_export.proto).layers)
    assert 1 <= len(pricer) <= 3
    with pytest.raises(ValueError, match="max_layers"):
        LayerPricer("capsacc", max_layers=0)

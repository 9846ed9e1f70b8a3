"""Constant folding of an ONNX graph, as far as the estimate needs it: which tensors are known
before inference, and which trained tensors each constant carries.

Exporters differ in how much they fold: the TorchScript exporter leaves shape arithmetic in the
graph (``Shape -> Gather -> Div -> Concat -> Reshape``) and passes shared weights through
``Identity`` nodes; quantizers store int8 weights behind ``DequantizeLinear``. An inference
runtime folds all of that before running, so none of it is work on the accelerator.

This is written here rather than delegated to onnxruntime's constant folding because that needs a
session over the weights' values (the estimate sees a weight-free structure, cached on it), costs
more than the whole estimate on graphs that are already folded, and would replace
``DequantizeLinear(int8 weight)`` by a float tensor, losing the bit width this estimate keeps.
Only *which* tensors are constant is computed here, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .onnx_graph import GraphIndex
from .onnx_ops import (
    FLOAT_TYPES, NONDETERMINISTIC_OPS, QUANTIZATION_PARAMETER_INPUTS, SHAPE_OPS, is_default_domain,
)
from .onnx_shapes import TensorTable
from .workload import prod


@dataclass(frozen=True, kw_only=True)
class ConstantAnalysis:
    """What is known about a graph before inference.

    Parameters
    ----------
    constants
        Tensors whose values do not depend on the graph inputs.
    folded_nodes
        Indices of nodes whose outputs are all constant (folded away: no work at inference).
    weight_sources
        Constant tensor -> the trained initializers it is computed from (empty for shape
        constants, epsilons, quantization scales and zero points).
    weight_sizes
        Trained initializer -> its number of elements.
    """

    constants: frozenset[str]
    folded_nodes: frozenset[int]
    weight_sources: dict[str, tuple[str, ...]]
    weight_sizes: dict[str, int]


def trained_initializers(index: GraphIndex) -> dict[str, int]:
    """Initializers that hold trained data, with their sizes.

    An initializer of rank >= 1 is trained data when it is a float tensor, or an integer tensor
    read as data by a quantized operator (the int8 weight of ``DequantizeLinear`` or
    ``QLinearConv``, an int32 bias); scales and zero points are quantization parameters, and
    other integer tensors are shape constants.
    """
    trained: dict[str, int] = {}
    for name, initializer in index.initializers.items():
        if len(initializer.dims) < 1:
            continue
        reads = [(reader, position) for reader in index.readers_of(name)
                 for position, input_name in enumerate(index.nodes[reader].input) if input_name == name]
        data_reads = [(reader, position) for reader, position in reads
                      if position not in QUANTIZATION_PARAMETER_INPUTS.get(index.nodes[reader].op_type, ())]
        if reads and not data_reads:
            continue  # only a scale or zero point
        quantized_data = any(index.nodes[reader].op_type in QUANTIZATION_PARAMETER_INPUTS
                             for reader, _ in data_reads)
        if initializer.data_type in FLOAT_TYPES or quantized_data:
            trained[name] = prod(initializer.dims)
    return trained


def analyse_constants(index: GraphIndex, tensors: TensorTable) -> ConstantAnalysis:
    """Constant tensors, folded nodes and weight provenance of the graph behind ``index``.

    A node is folded when it is a ``Constant``, a ``Shape``/``Size`` of a tensor with a known
    shape, or a deterministic operator of the default domain whose inputs are all constant.
    Custom-domain operators are never folded (their semantics are unknown).
    """
    trained = trained_initializers(index)
    constants: set[str] = set(index.initializers)
    sources: dict[str, tuple[str, ...]] = {name: (name,) for name in trained}
    folded: set[int] = set()
    shapes = tensors.shapes
    for position, node in enumerate(index.nodes):
        if not is_default_domain(node.domain) or node.op_type in NONDETERMINISTIC_OPS:
            continue
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant":
            constant = True
        elif node.op_type in SHAPE_OPS:
            constant = bool(inputs) and inputs[0] in shapes
        else:
            constant = bool(inputs) and all(name in constants for name in inputs)
        if not constant:
            continue
        folded.add(position)
        carried = _union(sources.get(name, ()) for name in inputs) if node.op_type not in SHAPE_OPS else ()
        for name in node.output:
            if name:
                constants.add(name)
                if carried:
                    sources[name] = carried
    return ConstantAnalysis(constants=frozenset(constants), folded_nodes=frozenset(folded), weight_sources=sources,
                            weight_sizes=trained)


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    merged: list[str] = []
    for group in groups:
        for name in group:
            if name not in merged:
                merged.append(name)
    return tuple(merged)


"""Per-channel affine operators folded into the convolution or matrix product before them.

Inference accelerators (and inference runtimes) fold an inference-mode ``BatchNormalization``,
and any per-output-channel ``Mul``/``Div`` by a constant or ``Add``/``Sub`` of a constant, into
the weights and bias of the contraction that writes its input: the scale goes into the weights,
the shift into the bias. Exporters differ in what they left to fold (the TorchScript exporter folds
batch norm itself, a training-mode or another framework's export keeps it; ``nn.Linear`` on
3-D input becomes ``MatMul`` + ``Add`` rather than ``Gemm``), so the estimate folds whatever is
left, and the same network costs the same.

Written here because the libraries that fold do it on values: onnxruntime's ``ConvBNFusion`` and
``MatMulAddFusion`` run inside a session over the real weights, which the weight-free estimate
does not have (and does not want to pay for); only the structure of the fold matters here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

import onnx

from .onnx_constants import ConstantAnalysis
from .onnx_graph import GraphIndex
from .onnx_ops import is_default_domain
from .onnx_shapes import Shape

#: Operators a fold passes through without absorbing them (they are free anyway).
PASS_THROUGH_OPS: frozenset[str] = frozenset({"Identity", "Dropout"})


@dataclass(frozen=True, kw_only=True)
class AffineFold:
    """Affine nodes absorbed by one contraction.

    Parameters
    ----------
    host
        Index of the contraction node.
    absorbed
        Indices of the absorbed nodes, in data-flow order.
    output
        The tensor the folded layer writes (the last absorbed node's output).
    adds_bias
        Whether an absorbed node adds a per-channel shift (so the folded layer stores a bias).
    """

    host: int
    absorbed: tuple[int, ...]
    output: str
    adds_bias: bool


def _per_channel(operand: Shape, output: Shape, axis: int) -> bool:
    """Whether a tensor of shape ``operand`` broadcast against ``output`` varies only along ``axis``."""
    offset = len(output) - len(operand)
    if offset < 0:
        return False
    for position, size in enumerate(operand, start=offset):
        if size != 1 and (position != axis or size != output[axis]):
            return False
    return True


Rule = Callable[[onnx.NodeProto, str, ConstantAnalysis, Mapping[str, Shape], int], bool]


def _batch_norm(node: onnx.NodeProto, tensor: str, constants: ConstantAnalysis, shapes: Mapping[str, Shape],
                axis: int) -> bool:
    """Inference-mode batch norm over the channel axis (axis 1) with constant statistics."""
    output = shapes.get(tensor)
    return (node.input[0] == tensor and output is not None and len(output) >= 2 and axis % len(output) == 1
            and all(name in constants.constants for name in node.input[1:]) and not any(node.output[1:]))


def _constant_operand(node: onnx.NodeProto, tensor: str, constants: ConstantAnalysis,
                      shapes: Mapping[str, Shape], axis: int, *, commutative: bool) -> bool:
    """A binary operator of ``tensor`` and a per-channel constant (``tensor`` first unless ``commutative``)."""
    if len(node.input) != 2 or tensor not in node.input or node.input[0] == node.input[1]:
        return False
    if not commutative and node.input[0] != tensor:
        return False
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    output = shapes.get(tensor)
    operand = shapes.get(other)
    return (other in constants.constants and output is not None and operand is not None
            and shapes.get(node.output[0]) == output and _per_channel(operand, output, axis % len(output)))


#: Absorbable operator -> (rule, whether it adds a per-channel shift).
AFFINE_RULES: dict[str, tuple[Rule, bool]] = {
    "BatchNormalization": (_batch_norm, True),
    "Add": (functools.partial(_constant_operand, commutative=True), True),
    "Sub": (functools.partial(_constant_operand, commutative=False), True),
    "Mul": (functools.partial(_constant_operand, commutative=True), False),
    "Div": (functools.partial(_constant_operand, commutative=False), False),
}


def affine_folds(index: GraphIndex, constants: ConstantAnalysis, shapes: Mapping[str, Shape],
                 hosts: Mapping[int, int], skip: Collection[int] = ()) -> dict[int, AffineFold]:
    """The folds of every host contraction that absorbs at least one node.

    Parameters
    ----------
    index, constants, shapes
        The graph's index, constant analysis and tensor shapes.
    hosts
        Index of each contraction with trained weights -> its output channel axis (1 for a
        convolution, -1 for a matrix product).
    skip
        Nodes that cannot be absorbed (already folded as constants).
    """
    folds: dict[int, AffineFold] = {}
    for host, axis in hosts.items():
        node = index.nodes[host]
        if not node.output or not node.output[0]:
            continue
        tensor = node.output[0]
        absorbed: list[int] = []
        adds_bias = False
        while tensor not in index.graph_outputs:
            readers = index.readers_of(tensor)
            if len(readers) != 1 or readers[0] in skip:
                break
            reader = index.nodes[readers[0]]
            if reader.op_type in PASS_THROUGH_OPS and reader.input[0] == tensor and reader.output:
                tensor = reader.output[0]
                continue
            rule = AFFINE_RULES.get(reader.op_type) if is_default_domain(reader.domain) else None
            if rule is None or not reader.output or not rule[0](reader, tensor, constants, shapes, axis):
                break
            absorbed.append(readers[0])
            adds_bias = adds_bias or rule[1]
            tensor = reader.output[0]
        if absorbed:
            folds[host] = AffineFold(host=host, absorbed=tuple(absorbed), output=tensor, adds_bias=adds_bias)
    return folds

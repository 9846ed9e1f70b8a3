"""ONNX graph -> :class:`~hw_estimators.workload.Workload`, through a canonical reading of the graph.

Different exporters write the same network differently; the estimate reads every graph the way an
inference accelerator would run it, so that the same network costs the same:

1. shapes are made static (:mod:`hw_estimators.onnx_shapes`: ONNX shape inference with data
   propagation, then onnxruntime's symbolic shape inference where that is not enough);
2. constant subgraphs are folded away (:mod:`hw_estimators.onnx_constants`: shape arithmetic,
   ``Identity`` on weights, ``DequantizeLinear`` of int8 weights);
3. quantization boundaries are free and every tensor has the width it is stored at
   (:mod:`hw_estimators.onnx_bits`);
4. per-channel affine operators (``BatchNormalization``, ``Mul``/``Add`` by a per-channel
   constant) are folded into the convolution or product before them
   (:mod:`hw_estimators.onnx_folding`);
5. element-wise nodes are merged by data flow (:mod:`hw_estimators.onnx_fusion`).

Each remaining node becomes a :class:`~hw_estimators.workload.Layer` through the parser registered
for its operator type in :data:`PARSERS`; equivalent spellings share a parser and so a cost
(``GlobalAveragePool`` and ``ReduceMean``, ``Flatten`` and ``Reshape``, ``Gemm`` and ``MatMul`` +
``Add``, ``QLinearConv`` and ``Conv``). Operators without a parser go to :func:`parse_unknown`,
which costs them as element-wise work; they are reported once per graph by operator type through
:mod:`logging` (or raise with ``strict=True``).

Capsule layers are recognised by the class of the module each node came from: the dynamo
exporter (``torch.onnx.export(..., dynamo=True)``) writes it into the node's ``metadata_props``
under ``pkg.torch.onnx.class_hierarchy``. Inside a routing capsule module (``ClassCaps``,
``ConvCaps3d`` by default) a product with trained weights is the vote transform
(``capsule_votes``) and a product of two activations is a routing step (``routing``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence, Union

import onnx

from .onnx_bits import TensorBits
from .onnx_constants import ConstantAnalysis, analyse_constants
from .onnx_folding import AffineFold, affine_folds
from .onnx_fusion import elementwise_groups, group_boundary
from .onnx_graph import DataFlow, GraphIndex
from .onnx_memory import LiveProfile, live_profile
from .model_source import load_model
from .onnx_ops import CLASS_HIERARCHY_KEY, NAME_SCOPES_KEY
from .onnx_ops import (
    DATA_MOVEMENT_OPS, ELEMENTWISE_OPS, MICROSOFT_ELEMENTWISE_OPS, POOL_OPS, QUANTIZATION_OPS, VIEW_OPS,
)
from .onnx_shapes import TensorTable, resolve_shapes
from .workload import Layer, Workload, format_unknown_ops, prod

_logger = logging.getLogger(__name__)

__all__ = ["CLASS_HIERARCHY_KEY", "DATA_MOVEMENT_OPS", "ELEMENTWISE_OPS", "NAME_SCOPES_KEY", "PARSERS", "POOL_OPS",
           "ROUTING_CAPSULE_CLASSES", "VIEW_OPS", "onnx_workload"]

#: Module classes (by class name) whose contractions are capsule votes and routing steps.
ROUTING_CAPSULE_CLASSES: frozenset[str] = frozenset({"ClassCaps", "ConvCaps3d"})
#: Kinds of layer that always apply a per-output-channel bias when they have trained weights.
#: Inference accelerators run every convolution and fully connected layer with a bias stage
#: (the folded batch norm's shift, the layer's bias, the requantization offset), and exporters
#: drop an all-zero bias (the dynamo exporter) or share equal ones through ``Identity`` nodes (the
#: TorchScript exporter): a graph's bias inputs depend on the weights' values, not on the work.
CANONICAL_BIAS_KINDS: frozenset[str] = frozenset({"conv", "matmul"})


@dataclass(frozen=True)
class Operands:
    """Input positions of a contraction's data, weight and (optional) bias operands."""

    data: int
    weight: int
    bias: Optional[int] = None


#: Operand positions of convolution-like and product-like operators.
CONV_OPERANDS: dict[str, Operands] = {
    "Conv": Operands(0, 1, 2), "ConvTranspose": Operands(0, 1, 2), "QLinearConv": Operands(0, 3, 8),
    "ConvInteger": Operands(0, 1),
}
MATMUL_OPERANDS: dict[str, Operands] = {
    "MatMul": Operands(0, 1), "Gemm": Operands(0, 1, 2), "QLinearMatMul": Operands(0, 3),
    "MatMulInteger": Operands(0, 1), "QGemm": Operands(0, 3, 6),
}


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    """Where a node sits in the network.

    Parameters
    ----------
    name
        Unique layer name (the node's name).
    module
        Innermost model class the node came from.
    scope
        Module path of the node (e.g. ``"cells.3.skip"``).
    routing_module
        Class name of the enclosing routing capsule module, if any.
    fold
        Affine nodes this contraction absorbs, if any.
    """

    name: str
    module: str = ""
    scope: str = ""
    routing_module: Optional[str] = None
    fold: Optional[AffineFold] = None


@dataclass(kw_only=True)
class NodeContext:
    """What a parser may know about the graph around a node.

    Parameters
    ----------
    shapes
        Static shape of every tensor with a known shape (dynamic dimensions taken as 1).
    constants
        Constant tensors and the trained initializers each carries.
    bits
        Bit width of each tensor.
    routing_classes
        Class names of routing capsule modules.
    counted
        Trained initializers already charged to an earlier layer (each is charged once), or
        replaced by a layer's canonical bias.
    """

    shapes: dict[str, tuple[int, ...]]
    constants: ConstantAnalysis
    bits: TensorBits
    routing_classes: frozenset[str]
    counted: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.sizes = {name: math.prod(shape) for name, shape in self.shapes.items()}

    def shape(self, name: str) -> Optional[tuple[int, ...]]:
        """Shape of tensor ``name``, or ``None`` if unknown (or the name is empty)."""
        return self.shapes.get(name) if name else None

    def size(self, name: str) -> int:
        """Elements of tensor ``name`` (0 if unknown)."""
        return self.sizes.get(name, 0)

    def is_weight(self, name: str) -> bool:
        """Whether ``name`` carries trained data (an initializer, or a constant computed from one)."""
        return bool(self.constants.weight_sources.get(name))

    def is_constant(self, name: str) -> bool:
        """Whether ``name`` is known before inference (weights, shape tensors, epsilons, ...)."""
        return name in self.constants.constants

    def charge_weights(self, node: onnx.NodeProto) -> int:
        """Trained elements among the node's inputs not yet charged to another layer; marks them charged."""
        total = 0
        for name in node.input:
            for source in self.constants.weight_sources.get(name, ()):
                if source not in self.counted:
                    self.counted.add(source)
                    total += self.constants.weight_sizes[source]
        return total

    def activations(self, node: onnx.NodeProto) -> list[str]:
        """The node's inputs computed at inference (not constants)."""
        return [name for name in node.input if name and name not in self.constants.constants]

    def activation_inputs(self, node: onnx.NodeProto) -> int:
        """Elements of the node's non-constant inputs."""
        return sum(self.size(name) for name in self.activations(node))

    def outputs(self, node: onnx.NodeProto) -> int:
        """Elements of the node's outputs."""
        return sum(self.size(name) for name in node.output if name)

    def operand_bits(self, name: str) -> int:
        """Bits per element of an operand: its trained initializers' width for a weight, else the tensor's."""
        sources = self.constants.weight_sources.get(name)
        if sources:
            return max(self.bits.of_type(source) for source in sources)
        return self.bits(name) if name else 0


Parser = Callable[[onnx.NodeProto, NodeContext, NodeInfo], Optional[Layer]]


def node_class_hierarchy(node: onnx.NodeProto) -> tuple[str, ...]:
    """Module classes (outermost first) the node came from, from its exporter metadata."""
    for prop in node.metadata_props:
        if prop.key == CLASS_HIERARCHY_KEY:
            return _parse_string_list(prop.value)
    return ()


def _node_provenance(node: onnx.NodeProto) -> tuple[tuple[str, ...], str]:
    """Class hierarchy and module path (scope) of a node, from its exporter metadata."""
    hierarchy: tuple[str, ...] = ()
    scope = ""
    for prop in node.metadata_props:
        if prop.key == CLASS_HIERARCHY_KEY:
            hierarchy = _parse_string_list(prop.value)
        elif prop.key == NAME_SCOPES_KEY:
            # "['', 'cells.0', 'cells.0.l1', 'conv2d_1']": the last entry is the node itself, the one
            # before it the innermost module path ('' at the top level)
            entries = prop.value.strip().strip("[]").rsplit(",", 2)
            scope = entries[-2].strip().strip("'\"") if len(entries) > 1 else ""
    return hierarchy, scope


@functools.lru_cache(maxsize=4096)
def _parse_string_list(text: str) -> tuple[str, ...]:
    """``"['a', 'b']"`` (the exporter writes Python list reprs) -> ``("a", "b")``."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return tuple(part.strip().strip("'\"") for part in text.split(",") if part.strip())


def _short_class(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]


@functools.lru_cache(maxsize=4096)
def _module_of(hierarchy: tuple[str, ...]) -> str:
    """Innermost model class, skipping ATen ops and torch's own layers when a model class wraps them."""
    classes = [entry for entry in hierarchy if not entry.startswith("aten.") and not entry.startswith("<")]
    own = [entry for entry in classes if not entry.startswith("torch.")]
    chosen = own[-1] if own else (classes[-1] if classes else "")
    return _short_class(chosen)


@functools.lru_cache(maxsize=4096)
def _routing_module(hierarchy: tuple[str, ...], routing_classes: frozenset[str]) -> Optional[str]:
    for entry in reversed(hierarchy):
        if _short_class(entry) in routing_classes:
            return _short_class(entry)
    return None


def _attributes(node: onnx.NodeProto) -> dict:
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


class ShapeError(ValueError):
    """A node's tensor shapes are unknown or inconsistent."""


def _require(context: NodeContext, node: onnx.NodeProto, name: str) -> tuple[int, ...]:
    shape = context.shape(name)
    if shape is None:
        raise ShapeError(f"node {node.name!r} ({node.op_type}): the shape of tensor {name!r} is unknown; "
                         "export with static shapes and run onnx.shape_inference.infer_shapes")
    return shape


def _operand(node: onnx.NodeProto, position: Optional[int]) -> str:
    """Name of input ``position`` of ``node`` ("" when absent)."""
    if position is None or position >= len(node.input):
        return ""
    return node.input[position]


@dataclass(frozen=True)
class BiasStage:
    """A contraction's bias: whether it applies one, the elements it stores, the graph tensor they replace."""

    applies: bool = False
    weights: int = 0
    replaces: str = ""


def _base(node: onnx.NodeProto, context: NodeContext, info: NodeInfo, kind: str, *, stationary: str = "",
          bias: BiasStage = BiasStage(), **fields) -> Layer:
    """A layer of ``node`` with its weights, activations and bit widths filled in.

    ``stationary`` names the operand held in the array (its width is the layer's ``weight_bits``);
    without it, the widest trained input. A folded layer writes the last absorbed node's output.
    """
    context.counted.update(context.constants.weight_sources.get(bias.replaces, ()))
    activations = context.activations(node)
    outputs = [info.fold.output] if info.fold is not None else [name for name in node.output if name]
    if stationary:
        weight_bits = context.operand_bits(stationary)
    else:
        weight_bits = max((context.operand_bits(name) for name in node.input if context.is_weight(name)), default=0)
    return Layer(name=info.name, kind=kind, op_type=node.op_type, module=info.module, scope=info.scope,
                 weights=context.charge_weights(node) + bias.weights, bias=bias.applies,
                 input_elements=sum(context.size(name) for name in activations),
                 output_elements=sum(context.size(name) for name in outputs), weight_bits=weight_bits,
                 activation_bits=context.bits.widest(activations), output_bits=context.bits.widest(outputs), **fields)


def _contraction_kind(info: NodeInfo, has_weights: bool, default: str) -> str:
    if info.routing_module is None:
        return default
    return "capsule_votes" if has_weights else "routing"


def _bias(kind: str, has_weights: bool, bias_input: str, info: NodeInfo, channels: int) -> BiasStage:
    """The bias stage of a contraction with ``channels`` outputs (see :data:`CANONICAL_BIAS_KINDS`).

    A ``conv`` or ``matmul`` layer with weights always stores one bias per output channel, in place
    of whatever bias tensor the graph gives it; other contractions have the graph's bias, or the
    shift of a folded affine node.
    """
    if kind in CANONICAL_BIAS_KINDS and has_weights:
        return BiasStage(applies=True, weights=channels, replaces=bias_input)
    folded_shift = info.fold is not None and info.fold.adds_bias
    return BiasStage(applies=bool(bias_input) or folded_shift, weights=channels if folded_shift and not bias_input else 0)


def parse_conv(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Conv (and QLinearConv, ConvInteger): ``batch = groups``, ``m = images * output positions``,
    ``k = C_in/groups * taps``, ``n = C_out/groups``."""
    operands = CONV_OPERANDS[node.op_type]
    data, weight = _operand(node, operands.data), _operand(node, operands.weight)
    x_shape = _require(context, node, data)
    w_shape = _require(context, node, weight)
    y_shape = _require(context, node, node.output[0])
    attributes = _attributes(node)
    groups = int(attributes.get("group", 1))
    images, in_channels = x_shape[0], x_shape[1]
    out_channels, kernel, out_size = w_shape[0], tuple(w_shape[2:]), tuple(y_shape[2:])
    strides = tuple(attributes.get("strides", (1,) * len(kernel)))
    channels_per_group = in_channels // groups
    positions = images * prod(out_size)
    k = channels_per_group * prod(kernel)
    n = out_channels // groups
    kind = _contraction_kind(info, True, "conv")
    bias = _bias(kind, context.is_weight(weight), _operand(node, operands.bias), info, out_channels)
    return _base(node, context, info, kind, stationary=weight, bias=bias, macs=groups * positions * k * n,
                 batch=groups, m=positions, k=k, n=n, in_channels=in_channels, out_channels=out_channels,
                 kernel=kernel, stride=strides, out_size=out_size, groups=groups, images=images)


def parse_conv_transpose(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """ConvTranspose: every input position scatters ``C_out/groups * taps`` products per channel."""
    x_shape = _require(context, node, node.input[0])
    w_shape = _require(context, node, node.input[1])
    groups = int(_attributes(node).get("group", 1))
    images, in_channels = x_shape[0], x_shape[1]
    kernel = tuple(w_shape[2:])
    k = in_channels // groups
    n = w_shape[1] * prod(kernel)
    m = images * prod(x_shape[2:])
    kind = _contraction_kind(info, True, "conv")
    bias = _bias(kind, context.is_weight(node.input[1]), _operand(node, 2), info, w_shape[1] * groups)
    return _base(node, context, info, kind, stationary=node.input[1], bias=bias, macs=groups * m * k * n,
                 batch=groups, m=m, k=k, n=n, detail="ConvTranspose as GEMM")


def _gemm_view(a_batch: Sequence[int], b_batch: Sequence[int], m: int, k: int, n: int,
               stationary_is_a: bool) -> dict:
    """GEMM view of ``A (a_batch, m, k) @ B (b_batch, k, n)`` with the chosen stationary operand."""
    rank = max(len(a_batch), len(b_batch))
    a_batch = (1,) * (rank - len(a_batch)) + tuple(a_batch)
    b_batch = (1,) * (rank - len(b_batch)) + tuple(b_batch)
    out_batch = prod(max(a, b) for a, b in zip(a_batch, b_batch))
    macs = out_batch * m * k * n
    if stationary_is_a:
        batch = prod(a_batch)
        return dict(macs=macs, batch=batch, m=out_batch // max(batch, 1) * n, k=k, n=m)
    batch = prod(b_batch)
    return dict(macs=macs, batch=batch, m=out_batch // max(batch, 1) * m, k=k, n=n)


def parse_matmul(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """MatMul (and QLinearMatMul, MatMulInteger) with numpy broadcasting; the weight operand (else ``B``)
    is stationary."""
    operands = MATMUL_OPERANDS[node.op_type]
    first, second = _operand(node, operands.data), _operand(node, operands.weight)
    a_shape = _require(context, node, first)
    b_shape = _require(context, node, second)
    a = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b = b_shape + (1,) if len(b_shape) == 1 else b_shape
    if a[-1] != b[-2]:
        raise ShapeError(f"node {node.name!r} ({node.op_type}): inner dimensions differ: {a_shape} @ {b_shape}")
    a_weight, b_weight = context.is_weight(first), context.is_weight(second)
    stationary_is_a = a_weight and not b_weight
    view = _gemm_view(a[:-2], b[:-2], a[-2], a[-1], b[-1], stationary_is_a=stationary_is_a)
    kind = _contraction_kind(info, a_weight or b_weight, "matmul")
    channels = a[-2] if stationary_is_a else b[-1]
    bias = _bias(kind, a_weight or b_weight, "", info, channels)
    return _base(node, context, info, kind, stationary=first if stationary_is_a else second, bias=bias, **view)


def parse_gemm(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Gemm ``alpha * A' B' + beta * C`` (and onnxruntime's QGemm): ``B`` stationary unless only ``A`` is a
    weight."""
    operands = MATMUL_OPERANDS[node.op_type]
    first, second = _operand(node, operands.data), _operand(node, operands.weight)
    a_shape = _require(context, node, first)
    b_shape = _require(context, node, second)
    attributes = _attributes(node)
    m, k = (a_shape[1], a_shape[0]) if attributes.get("transA", 0) else (a_shape[0], a_shape[1])
    n = b_shape[0] if attributes.get("transB", 0) else b_shape[1]
    a_weight, b_weight = context.is_weight(first), context.is_weight(second)
    stationary_is_a = a_weight and not b_weight
    view = _gemm_view((), (), m, k, n, stationary_is_a=stationary_is_a)
    kind = _contraction_kind(info, a_weight or b_weight, "matmul")
    bias = _bias(kind, a_weight or b_weight, _operand(node, operands.bias), info, n)
    return _base(node, context, info, kind, stationary=first if stationary_is_a else second, bias=bias, **view)


def parse_einsum(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Two-operand Einsum as a batched GEMM (any other arity as element-wise work)."""
    equation = _attributes(node)["equation"]
    equation = equation.decode() if isinstance(equation, bytes) else str(equation)
    equation = equation.replace(" ", "")
    shapes = [_require(context, node, name) for name in node.input]
    inputs_text, _, output_text = equation.partition("->")
    terms = inputs_text.split(",")
    if len(terms) != len(shapes):
        raise ShapeError(f"node {node.name!r} (Einsum {equation!r}): {len(terms)} terms for {len(shapes)} inputs")
    spare = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)
    ellipsis_rank = max((len(shape) - len(term.replace("...", "")) for term, shape in zip(terms, shapes)
                         if "..." in term), default=0)
    ellipsis = spare[:ellipsis_rank]
    terms = [term.replace("...", ellipsis[len(ellipsis) - (len(shape) - len(term.replace("...", ""))):])
             if "..." in term else term for term, shape in zip(terms, shapes)]
    if "->" in equation:
        output = output_text.replace("...", ellipsis)
    else:
        counts = Counter("".join(terms))
        output = ellipsis + "".join(sorted(c for c, count in counts.items() if count == 1 and c not in ellipsis))
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        if len(term) != len(shape):
            raise ShapeError(f"node {node.name!r} (Einsum {equation!r}): term {term!r} does not match shape {shape}")
        for letter, size in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(size))
    total = prod(sizes.values())
    if len(terms) != 2:
        return _base(node, context, info, "elementwise", ops=total * max(len(terms) - 1, 1), detail=equation)
    a, b = terms
    batch_letters = [c for c in sizes if c in a and c in b and c in output]
    m_letters = [c for c in sizes if c in a and c not in b]
    n_letters = [c for c in sizes if c in b and c not in a]
    k_letters = [c for c in sizes if c in a and c in b and c not in output]
    # letters summed out of a single operand count as extra reduction
    k = prod(sizes[c] for c in k_letters) * prod(sizes[c] for c in m_letters + n_letters if c not in output)
    m = prod(sizes[c] for c in m_letters if c in output)
    n = prod(sizes[c] for c in n_letters if c in output)
    batch = prod(sizes[c] for c in batch_letters)
    a_weight, b_weight = context.is_weight(node.input[0]), context.is_weight(node.input[1])
    if a_weight and not b_weight:
        m, n = n, m
    kind = _contraction_kind(info, a_weight or b_weight, "matmul")
    bias = _bias(kind, a_weight or b_weight, "", info, n)
    stationary = node.input[0] if a_weight and not b_weight else node.input[1]
    return _base(node, context, info, kind, stationary=stationary, bias=bias, macs=total, batch=batch, m=m, k=k, n=n,
                 detail=equation)


def elementwise_ops(node: onnx.NodeProto, context: NodeContext) -> int:
    """One operation per element of the largest computed operand or result."""
    return max([context.outputs(node), *(context.size(name) for name in context.activations(node))])


def pool_ops(node: onnx.NodeProto, context: NodeContext) -> int:
    """One operation per output element and kernel tap."""
    return context.outputs(node) * max(prod(_attributes(node).get("kernel_shape", ())), 1)


def parse_elementwise(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Element-wise work: :func:`elementwise_ops` operations."""
    return _base(node, context, info, "elementwise", ops=elementwise_ops(node, context))


def parse_pool(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Pooling: :func:`pool_ops` operations."""
    return _base(node, context, info, "elementwise", ops=pool_ops(node, context))


def parse_no_cost(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> None:
    """Data movement and quantization boundaries: no layer."""
    return None


def parse_unknown(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Fallback for operators without a parser: element-wise work on the largest tensor."""
    return parse_elementwise(node, context, info)


#: Operator type -> parser. Operators not listed use :func:`parse_unknown`.
PARSERS: dict[str, Parser] = {
    **{op: parse_conv for op in CONV_OPERANDS if op != "ConvTranspose"},
    "ConvTranspose": parse_conv_transpose,
    **{op: parse_matmul for op in MATMUL_OPERANDS if op not in ("Gemm", "QGemm")},
    "Gemm": parse_gemm,
    "Einsum": parse_einsum,
    **{op: parse_elementwise for op in ELEMENTWISE_OPS},
    **{op: parse_pool for op in POOL_OPS},
    **{op: parse_no_cost for op in DATA_MOVEMENT_OPS | QUANTIZATION_OPS},
}
#: Operators of onnxruntime's ``com.microsoft`` domain that its quantizer writes (QOperator format).
MICROSOFT_PARSERS: dict[str, Parser] = {
    "QGemm": parse_gemm,
    **{op: parse_elementwise for op in MICROSOFT_ELEMENTWISE_OPS},
    "QLinearAveragePool": parse_pool,
    **{op: parse_no_cost for op in ("QLinearConcat", *QUANTIZATION_OPS)},
}
#: Operator domain -> its registry.
DOMAIN_PARSERS: dict[str, dict[str, Parser]] = {"": PARSERS, "ai.onnx": PARSERS, "com.microsoft": MICROSOFT_PARSERS}
#: Parsers of products with a weight operand that may absorb per-channel affine nodes, and the
#: output channel axis of their result.
FOLD_HOSTS: dict[Parser, int] = {parse_conv: 1, parse_conv_transpose: 1, parse_matmul: -1, parse_gemm: -1}
#: Element-wise parsers whose nodes may be merged, and how they count operations.
FUSABLE: dict[Parser, Callable[[onnx.NodeProto, NodeContext], int]] = {
    parse_elementwise: elementwise_ops,
    parse_pool: pool_ops,
}


def weight_operand(node: onnx.NodeProto) -> str:
    """Name of the weight input of a convolution or product ("" for other operators)."""
    operands = CONV_OPERANDS.get(node.op_type) or MATMUL_OPERANDS.get(node.op_type)
    return _operand(node, operands.weight) if operands is not None else ""


def _group_layer(members: Sequence[int], index: GraphIndex, context: NodeContext, info: NodeInfo,
                 parsers: Sequence[Parser], inputs: Sequence[str], outputs: Sequence[str]) -> Layer:
    """One element-wise layer for the merged nodes ``members`` (see :mod:`hw_estimators.onnx_fusion`)."""
    nodes = [index.nodes[member] for member in members]
    ops = sum(FUSABLE[parsers[member]](node, context) for member, node in zip(members, nodes))
    weight_names = [name for node in nodes for name in node.input if context.is_weight(name)]
    weights = sum(context.charge_weights(node) for node in nodes)
    merged = len(nodes) > 1
    op_types = [node.op_type for node in nodes]
    return Layer(name=info.name, kind="elementwise", op_type="Elementwise" if merged else op_types[0],
                 module=info.module, scope=info.scope, detail="+".join(op_types) if merged else "", ops=ops,
                 weights=weights, input_elements=sum(context.size(name) for name in inputs),
                 output_elements=sum(context.size(name) for name in outputs),
                 weight_bits=max((context.operand_bits(name) for name in weight_names), default=0),
                 activation_bits=context.bits.widest(inputs), output_bits=context.bits.widest(outputs))


def _node_info(node: onnx.NodeProto, position: int, names: set[str], routing_classes: frozenset[str],
               fold: Optional[AffineFold]) -> NodeInfo:
    """Provenance and a unique layer name for ``node``; the name is reserved in ``names``."""
    hierarchy, scope = _node_provenance(node)
    name = node.name or f"{node.op_type}_{position}"
    while name in names:
        name = f"{name}_{position}"
    names.add(name)
    return NodeInfo(name=name, module=_module_of(hierarchy), scope=scope,
                    routing_module=_routing_module(hierarchy, routing_classes), fold=fold)


def _choose_parsers(index: GraphIndex, constants: ConstantAnalysis, strict: bool) -> tuple[list[Parser], Counter]:
    """The parser of every node (folded constants: no cost) and the unknown operator types met."""
    parsers: list[Parser] = []
    unknown: Counter[str] = Counter()
    for position, node in enumerate(index.nodes):
        if position in constants.folded_nodes:
            parsers.append(parse_no_cost)
            continue
        parser = DOMAIN_PARSERS.get(node.domain, {}).get(node.op_type)
        if parser is None:
            if strict:
                raise ValueError(f"strict=True: no parser for ONNX operator {node.op_type!r} "
                                 f"(domain {node.domain or 'ai.onnx'!r}) at node {node.name or position!r}")
            unknown[node.op_type if not node.domain else f"{node.domain}.{node.op_type}"] += 1
            parser = parse_unknown
        parsers.append(parser)
    return parsers, unknown


def _load(model: Union[onnx.ModelProto, str, os.PathLike]) -> onnx.ModelProto:
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    return model


@dataclass(kw_only=True)
class CanonicalReading:
    """How each node of a graph is read (see the module docstring), before any layer is built.

    Parameters
    ----------
    index
        The graph's index.
    context
        Shapes, constants, bit widths and weight charging, shared by the parsers.
    parsers
        The parser of each node.
    unknown
        Operator types without a parser -> number of nodes.
    folds
        Affine nodes absorbed by each contraction, by the contraction's index.
    free
        Nodes that produce no layer (data movement, folded constants, quantization boundaries,
        absorbed affine nodes).
    flow
        The data flow through the free nodes.
    groups
        Element-wise nodes merged into one layer each.
    roots
        View -> the tensor whose memory it shares.
    """

    index: GraphIndex
    context: NodeContext
    parsers: list[Parser]
    unknown: Counter
    folds: dict[int, AffineFold]
    free: set[int]
    flow: DataFlow
    groups: list[tuple[int, ...]]
    roots: dict[str, str]
    _profile: Optional[LiveProfile] = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, index: GraphIndex, tensors: TensorTable, *, strict: bool, routing_classes: frozenset[str],
           fuse_elementwise: bool) -> CanonicalReading:
        """Read the graph behind ``index``."""
        constants = analyse_constants(index, tensors)
        context = NodeContext(shapes=tensors.shapes, constants=constants, bits=TensorBits(index, tensors.types),
                              routing_classes=routing_classes)
        parsers, unknown = _choose_parsers(index, constants, strict)
        hosts = {host: FOLD_HOSTS[parsers[host]] for host, node in enumerate(index.nodes)
                 if parsers[host] in FOLD_HOSTS and context.is_weight(weight_operand(node))}
        folds = affine_folds(index, constants, tensors.shapes, hosts, skip=constants.folded_nodes)
        absorbed = {member for fold in folds.values() for member in fold.absorbed}
        free = {member for member, parser in enumerate(parsers) if parser is parse_no_cost} | absorbed
        fusable = [member for member, parser in enumerate(parsers) if parser in FUSABLE and member not in free]
        flow = DataFlow(index, free)
        groups = elementwise_groups(flow, fusable) if fuse_elementwise else [(member,) for member in fusable]
        views = {member: node.input[0] for member, node in enumerate(index.nodes)
                 if node.op_type in VIEW_OPS and member in free and node.input}
        views.update({member: _chained_input(index.nodes[member], constants) for member in absorbed})
        return cls(index=index, context=context, parsers=parsers, unknown=unknown, folds=folds, free=free, flow=flow,
                   groups=groups, roots=index.alias_roots(views))

    def absorbed(self) -> set[int]:
        """Indices of the affine nodes folded into a contraction."""
        return {member for fold in self.folds.values() for member in fold.absorbed}

    def layers(self) -> list[Layer]:
        """One layer per computing node or element-wise group, in graph order.

        Raises
        ------
        ValueError
            Naming the node, when a node breaks its operator's schema or its shapes are inconsistent.
        """
        index, context = self.index, self.context
        first_of = {members[0]: members for members in self.groups}
        grouped = {member for members in self.groups for member in members}
        layers: list[Layer] = []
        names: set[str] = set()
        for position, node in enumerate(index.nodes):
            if position in self.free or (position in grouped and position not in first_of):
                continue
            try:
                info = _node_info(node, position, names, context.routing_classes, self.folds.get(position))
                if position in first_of:
                    boundary = group_boundary(self.flow, first_of[position], roots=self.roots,
                                              constants=context.constants.constants)
                    layer = _group_layer(first_of[position], index, context, info, self.parsers, boundary.inputs,
                                         boundary.outputs)
                else:
                    layer = self.parsers[position](node, context, info)
            except _SCHEMA_ERRORS as error:
                raise _malformed(f"node {node.name or position!r} ({node.op_type})", error) from error
            if layer is not None:
                layers.append(layer)
        return layers


    def workload(self) -> Workload:
        """The layers, peak of live activations and stored weights of the graph.

        Builds the layers (:meth:`layers`), which charges each trained tensor to the first layer that
        reads it: call it once per reading.
        """
        layers = self.layers()
        index, context = self.index, self.context
        try:
            peak_elements, peak_bits = self.peak_activations()
        except _SCHEMA_ERRORS as error:
            raise _malformed("graph", error) from error
        params = sum(layer.weights for layer in layers) + _uncharged_weights(index, context.constants,
                                                                              self.absorbed(), context.counted)
        if self.unknown:
            _logger.warning("costed as element-wise work (no parser): %s", format_unknown_ops(self.unknown))
        return Workload(layers=tuple(layers), peak_activation_elements=peak_elements, peak_activation_bits=peak_bits,
                        params=params, source="onnx", unknown_ops=dict(sorted(self.unknown.items())))

    def peak_activations(self, kept_alive: Iterable[str] = ()) -> tuple[int, int]:
        """Peak of live activations in elements and in bits (:func:`~hw_estimators.onnx_memory.peak_live_activations`).

        Parameters
        ----------
        kept_alive
            Graph inputs that live to the end of the graph (a tensor that a later piece of a larger
            network reads again).
        """
        if self._profile is None:
            context = self.context
            self._profile = live_profile(self.index, context.sizes, roots=self.roots,
                                         constants=context.constants.constants, bits=context.bits)
        return self._profile.peak(tuple(kept_alive))


#: What a node that breaks its operator's schema (missing attribute, wrong attribute type, ...) raises.
_SCHEMA_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ZeroDivisionError, OverflowError)


def _malformed(where: str, error: BaseException) -> ValueError:
    return ValueError(f"model: malformed ONNX {where}: {type(error).__name__}: {' '.join(str(error).split())}")


def read_canonical(model: Union[onnx.ModelProto, str, os.PathLike], *, strict: bool = False,
                   routing_classes: Iterable[str] = ROUTING_CAPSULE_CLASSES, fuse_elementwise: bool = True,
                   tensors: Optional[TensorTable] = None) -> CanonicalReading:
    """How every node of an ONNX model is read (see the module docstring), before any layer is built.

    Parameters
    ----------
    model, strict, routing_classes, fuse_elementwise
        As for :func:`onnx_workload`.
    tensors
        Static shapes and element types of every tensor of ``model``, when the caller knows them
        (a graph built with its shapes, e.g. by a tracer): shape resolution is then skipped.

    Raises
    ------
    ValueError
        As for :func:`onnx_workload`.
    """
    model = _load(model)
    if tensors is None:
        model, tensors = resolve_shapes(model)
    index = GraphIndex.build(model.graph)
    try:
        return CanonicalReading.of(index, tensors, strict=strict, routing_classes=frozenset(routing_classes),
                                   fuse_elementwise=fuse_elementwise)
    except _SCHEMA_ERRORS as error:
        raise _malformed("graph", error) from error


def onnx_workload(model: Union[onnx.ModelProto, str, os.PathLike], *, strict: bool = False,
                  routing_classes: Iterable[str] = ROUTING_CAPSULE_CLASSES, fuse_elementwise: bool = True) -> Workload:
    """The workload of an ONNX model, read as its canonical graph (see the module docstring).

    Parameters
    ----------
    model
        A model, or the path of an ``.onnx`` file. Shapes missing from the graph or dynamic are
        inferred (:func:`hw_estimators.onnx_shapes.resolve_shapes`); model-local functions are
        inlined.
    strict
        Raise ``ValueError`` on the first operator without a parser instead of costing it as
        element-wise work.
    routing_classes
        Class names of routing capsule modules.
    fuse_elementwise
        Merge element-wise nodes by data flow (:mod:`hw_estimators.onnx_fusion`) into one
        ``elementwise`` layer, as a vector unit would run them: operations add up, intermediate
        results stay local. Unknown operators are never merged.

    Raises
    ------
    ValueError
        With ``strict=True``, naming the operator type and node; when shape inference fails; or when
        a contraction's shapes are unknown or inconsistent.
    """
    return read_canonical(model, strict=strict, routing_classes=routing_classes,
                          fuse_elementwise=fuse_elementwise).workload()


def _chained_input(node: onnx.NodeProto, constants: ConstantAnalysis) -> str:
    """The computed (non-constant) input of a folded affine node: the tensor it rewrites in place."""
    return next((name for name in node.input if name and name not in constants.constants), "")


def _uncharged_weights(index: GraphIndex, constants: ConstantAnalysis, absorbed: set[int], counted: set[str]) -> int:
    """Trained elements the canonical graph stores outside any layer (e.g. an embedding table read by
    ``Gather``): those neither charged to a layer nor read only by folded nodes."""
    total = 0
    for source, size in constants.weight_sizes.items():
        if source in counted:
            continue
        readers = index.readers_of(source)
        if not readers or any(reader not in absorbed for reader in readers):
            total += size
    return total

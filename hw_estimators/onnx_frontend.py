"""ONNX graph -> :class:`~hw_estimators.workload.Workload`.

Each node is turned into at most one :class:`~hw_estimators.workload.Layer` by the parser
registered for its operator type in :data:`PARSERS` (pure data-movement operators produce no
layer); operators without a parser go to :func:`parse_unknown`, which costs them as
element-wise work and is reported once per graph through :mod:`logging` (or raises with
``strict=True``).

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
from onnx import TensorProto

from .workload import Layer, Workload, prod

_logger = logging.getLogger(__name__)

CLASS_HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
#: Module classes (by class name) whose contractions are capsule votes and routing steps.
ROUTING_CAPSULE_CLASSES: frozenset[str] = frozenset({"ClassCaps", "ConvCaps3d"})

_FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE})
#: Operators that only move or re-describe data: no layer, and their outputs alias their inputs
#: where marked as views.
DATA_MOVEMENT_OPS: frozenset[str] = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Shape", "Size", "Constant",
    "ConstantOfShape", "Cast", "CastLike", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
    "Expand", "Tile", "Dropout", "Range", "Pad", "DepthToSpace", "SpaceToDepth", "SplitToSequence",
    "ScatterElements", "ScatterND", "EyeLike", "OneHot",
})
#: Data-movement operators whose output shares its input's memory.
VIEW_OPS: frozenset[str] = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
ELEMENTWISE_OPS: frozenset[str] = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Sign", "Floor",
    "Ceil", "Round", "Mod", "Max", "Min", "Mean", "Sum", "Clip", "Erf", "Where", "Equal", "Less", "LessOrEqual",
    "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Sin", "Cos",
    "Softmax", "LogSoftmax", "Hardmax", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ArgMax", "ArgMin", "CumSum", "TopK",
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "LpNormalization", "MeanVarianceNormalization", "Resize", "Upsample", "GlobalAveragePool", "GlobalMaxPool",
})
POOL_OPS: frozenset[str] = frozenset({"MaxPool", "AveragePool", "LpPool"})


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
    """

    name: str
    module: str = ""
    scope: str = ""
    routing_module: Optional[str] = None


@dataclass(kw_only=True)
class NodeContext:
    """What a parser may know about the graph around a node.

    Parameters
    ----------
    shapes
        Static shape of every tensor with a known shape (dynamic dimensions taken as 1).
    weights
        Names of trained tensors: float initializers of rank >= 1.
    routing_classes
        Class names of routing capsule modules.
    counted
        Weights already charged to an earlier layer (each weight is charged once).
    """

    shapes: dict[str, tuple[int, ...]]
    weights: dict[str, int]
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
        """Whether ``name`` is a trained tensor (float initializer)."""
        return name in self.weights

    def charge_weights(self, node: onnx.NodeProto) -> int:
        """Weights among the node's inputs not yet charged to another layer; marks them charged."""
        total = 0
        for name in node.input:
            if name in self.weights and name not in self.counted:
                self.counted.add(name)
                total += self.weights[name]
        return total

    def activation_inputs(self, node: onnx.NodeProto) -> int:
        """Elements of the node's non-weight inputs."""
        return sum(self.size(name) for name in node.input if name and name not in self.weights)

    def outputs(self, node: onnx.NodeProto) -> int:
        """Elements of the node's outputs."""
        return sum(self.size(name) for name in node.output if name)


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


def _base(node: onnx.NodeProto, context: NodeContext, info: NodeInfo, kind: str, **fields) -> Layer:
    return Layer(name=info.name, kind=kind, op_type=node.op_type, module=info.module, scope=info.scope,
                 weights=context.charge_weights(node), input_elements=context.activation_inputs(node),
                 output_elements=context.outputs(node), **fields)


def _contraction_kind(info: NodeInfo, has_weights: bool, default: str) -> str:
    if info.routing_module is None:
        return default
    return "capsule_votes" if has_weights else "routing"


def parse_conv(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Conv: ``batch = groups``, ``m = images * output positions``, ``k = C_in/groups * taps``,
    ``n = C_out/groups``."""
    x_shape = _require(context, node, node.input[0])
    w_shape = _require(context, node, node.input[1])
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
    has_bias = len(node.input) > 2 and bool(node.input[2])
    kind = _contraction_kind(info, True, "conv")
    return _base(node, context, info, kind, macs=groups * positions * k * n, batch=groups, m=positions, k=k, n=n,
                 bias=has_bias, in_channels=in_channels, out_channels=out_channels, kernel=kernel, stride=strides,
                 out_size=out_size, groups=groups, images=images)


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
    has_bias = len(node.input) > 2 and bool(node.input[2])
    return _base(node, context, info, _contraction_kind(info, True, "conv"), macs=groups * m * k * n, batch=groups,
                 m=m, k=k, n=n, bias=has_bias, detail="ConvTranspose as GEMM")


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
    """MatMul with numpy broadcasting; the weight operand (else ``B``) is stationary."""
    a_shape = _require(context, node, node.input[0])
    b_shape = _require(context, node, node.input[1])
    a = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b = b_shape + (1,) if len(b_shape) == 1 else b_shape
    if a[-1] != b[-2]:
        raise ShapeError(f"node {node.name!r} (MatMul): inner dimensions differ: {a_shape} @ {b_shape}")
    a_weight, b_weight = context.is_weight(node.input[0]), context.is_weight(node.input[1])
    view = _gemm_view(a[:-2], b[:-2], a[-2], a[-1], b[-1], stationary_is_a=a_weight and not b_weight)
    kind = _contraction_kind(info, a_weight or b_weight, "matmul")
    return _base(node, context, info, kind, **view)


def parse_gemm(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Gemm ``alpha * A' B' + beta * C``: ``B`` stationary unless only ``A`` is a weight."""
    a_shape = _require(context, node, node.input[0])
    b_shape = _require(context, node, node.input[1])
    attributes = _attributes(node)
    m, k = (a_shape[1], a_shape[0]) if attributes.get("transA", 0) else (a_shape[0], a_shape[1])
    n = b_shape[0] if attributes.get("transB", 0) else b_shape[1]
    a_weight, b_weight = context.is_weight(node.input[0]), context.is_weight(node.input[1])
    view = _gemm_view((), (), m, k, n, stationary_is_a=a_weight and not b_weight)
    has_bias = len(node.input) > 2 and bool(node.input[2])
    kind = _contraction_kind(info, a_weight or b_weight, "matmul")
    return _base(node, context, info, kind, bias=has_bias, **view)


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
    return _base(node, context, info, kind, macs=total, batch=batch, m=m, k=k, n=n, detail=equation)


def elementwise_ops(node: onnx.NodeProto, context: NodeContext) -> int:
    """One operation per element of the largest operand or result."""
    sizes = [context.size(name) for name in node.input if name and name not in context.weights]
    return max([context.outputs(node), *sizes])


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
    """Data movement: no layer."""
    return None


def parse_unknown(node: onnx.NodeProto, context: NodeContext, info: NodeInfo) -> Layer:
    """Fallback for operators without a parser: element-wise work on the largest tensor."""
    return parse_elementwise(node, context, info)


#: Operator type -> parser. Operators not listed use :func:`parse_unknown`.
PARSERS: dict[str, Parser] = {
    "Conv": parse_conv,
    "ConvTranspose": parse_conv_transpose,
    "MatMul": parse_matmul,
    "Gemm": parse_gemm,
    "Einsum": parse_einsum,
    **{op: parse_elementwise for op in ELEMENTWISE_OPS},
    **{op: parse_pool for op in POOL_OPS},
    **{op: parse_no_cost for op in DATA_MOVEMENT_OPS},
}


def collect_shapes(graph: onnx.GraphProto) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Static shapes of the graph's tensors and the names of dynamic dimensions met (taken as 1)."""
    shapes: dict[str, tuple[int, ...]] = {}
    dynamic: set[str] = set()
    for initializer in graph.initializer:
        shapes[initializer.name] = tuple(int(d) for d in initializer.dims)
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name in shapes or value.type.WhichOneof("value") != "tensor_type":
            continue
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = []
        for dim in tensor_type.shape.dim:
            size = dim.dim_value
            if size > 0:
                dims.append(size)
            elif dim.dim_param or not dim.HasField("dim_value"):
                dynamic.add(dim.dim_param or "?")
                dims.append(1)
            else:
                dims.append(0)
        shapes[value.name] = tuple(dims)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes.setdefault(node.output[0], tuple(int(d) for d in attribute.t.dims))
    return shapes, dynamic


def _missing_shapes(graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]]) -> bool:
    """Whether some node output has no recorded shape."""
    return any(name and name not in shapes for node in graph.node for name in node.output)


def _weights(graph: onnx.GraphProto) -> dict[str, int]:
    return {initializer.name: prod(initializer.dims) for initializer in graph.initializer
            if initializer.data_type in _FLOAT_TYPES and len(initializer.dims) >= 1}


def peak_live_elements(graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Largest total size of activations alive at once, running nodes in graph order.

    A tensor lives from the node that writes it (graph inputs: from the start) to its last
    reader (graph outputs: to the end). Views (Reshape, Squeeze, ...) share their input's memory
    and trained weights are not activations.
    """
    initializers = {initializer.name for initializer in graph.initializer}
    end = len(graph.node)
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name:
                last_use[name] = index
    for output in graph.output:
        last_use[output.name] = end
    # a view keeps its source alive as long as the view is used
    alias: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in VIEW_OPS and node.input and node.output:
            source = alias.get(node.input[0], node.input[0])
            alias[node.output[0]] = source
    for name, index in list(last_use.items()):
        source = alias.get(name)
        if source is not None:
            last_use[source] = max(last_use.get(source, -1), index)

    def size(name: str) -> int:
        shape = shapes.get(name)
        return math.prod(shape) if shape is not None else 0

    live = {value.name: size(value.name) for value in graph.input if value.name not in initializers}
    current = sum(live.values())
    peak = current
    for index, node in enumerate(graph.node):
        if node.op_type not in VIEW_OPS:
            for name in node.output:
                if name and name not in live:
                    live[name] = size(name)
                    current += live[name]
        peak = max(peak, current)
        unread = {name for name in node.output if name and name not in last_use and name not in alias}
        for name in {alias.get(n, n) for n in node.input if n} | unread:
            if name in live and last_use.get(name, -1) <= index:
                current -= live.pop(name)
    return peak


#: Element-wise parsers whose nodes may be merged, and how they count operations.
_FUSABLE: dict[Parser, Callable[[onnx.NodeProto, NodeContext], int]] = {
    parse_elementwise: elementwise_ops,
    parse_pool: pool_ops,
}


class _ElementwiseGroup:
    """Consecutive element-wise nodes of one module scope, merged into one layer."""

    def __init__(self, node: onnx.NodeProto, info: NodeInfo, ops: int, context: NodeContext) -> None:
        self.info = info
        self.op_types = [node.op_type]
        self.ops = ops
        self.weights = context.charge_weights(node)
        self.inputs = context.activation_inputs(node)
        self.outputs = context.outputs(node)
        self.produced = set(node.output)

    def accepts(self, node: onnx.NodeProto, info: NodeInfo) -> bool:
        """Whether ``node`` continues the chain: same module scope, reads a result of the group."""
        return (info.scope, info.module) == (self.info.scope, self.info.module) and \
            any(name in self.produced for name in node.input)

    def add(self, node: onnx.NodeProto, ops: int, context: NodeContext) -> None:
        self.op_types.append(node.op_type)
        self.ops += ops
        self.weights += context.charge_weights(node)
        self.inputs += sum(context.size(name) for name in node.input
                           if name and name not in self.produced and name not in context.weights)
        self.outputs = context.outputs(node)
        self.produced.update(node.output)

    def layer(self) -> Layer:
        merged = len(self.op_types) > 1
        return Layer(name=self.info.name, kind="elementwise", op_type="Elementwise" if merged else self.op_types[0],
                     module=self.info.module, scope=self.info.scope, detail="+".join(self.op_types) if merged else "",
                     ops=self.ops, weights=self.weights, input_elements=self.inputs, output_elements=self.outputs)


def onnx_workload(model: Union[onnx.ModelProto, str, os.PathLike], *, strict: bool = False,
                  routing_classes: Iterable[str] = ROUTING_CAPSULE_CLASSES, fuse_elementwise: bool = True) -> Workload:
    """The workload of an ONNX model.

    Parameters
    ----------
    model
        A model, or the path of an ``.onnx`` file. Shapes missing from the graph are inferred
        with ``onnx.shape_inference``; model-local functions are inlined.
    strict
        Raise ``ValueError`` on the first operator without a parser instead of costing it as
        element-wise work.
    routing_classes
        Class names of routing capsule modules.
    fuse_elementwise
        Merge consecutive element-wise nodes of the same module scope (e.g. the seven nodes of a
        squash) into one ``elementwise`` layer, as a vector unit would run them: operations add
        up, intermediate results stay local. Unknown operators are never merged.

    Raises
    ------
    ValueError
        With ``strict=True``, naming the operator type and node; when shape inference fails; or when
        a contraction's shapes are unknown or inconsistent.
    """
    if not isinstance(model, onnx.ModelProto):
        from .model_source import load_model

        model = load_model(model)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    shapes, dynamic = collect_shapes(model.graph)
    if _missing_shapes(model.graph, shapes):
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as error:
            raise ValueError(f"model: ONNX shape inference failed ({' '.join(str(error).split())})") from error
        shapes, dynamic = collect_shapes(model.graph)
    graph = model.graph
    if dynamic:
        _logger.warning("dynamic dimensions %s are taken as 1: export with static shapes for exact figures",
                        sorted(dynamic))
    context = NodeContext(shapes=shapes, weights=_weights(graph), routing_classes=frozenset(routing_classes))
    layers: list[Layer] = []
    unknown: Counter[str] = Counter()
    names: set[str] = set()
    group: Optional[_ElementwiseGroup] = None
    index, node = -1, None
    try:
        for index, node in enumerate(graph.node):
            parser = PARSERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if parser is None:
                if strict:
                    raise ValueError(f"strict=True: no parser for ONNX operator {node.op_type!r} "
                                     f"(domain {node.domain or 'ai.onnx'!r}) at node {node.name or index!r}")
                unknown[node.op_type if not node.domain else f"{node.domain}.{node.op_type}"] += 1
                parser = parse_unknown
            hierarchy, scope = _node_provenance(node)
            name = node.name or f"{node.op_type}_{index}"
            while name in names:
                name = f"{name}_{index}"
            info = NodeInfo(name=name, module=_module_of(hierarchy), scope=scope,
                            routing_module=_routing_module(hierarchy, context.routing_classes))
            counter = _FUSABLE.get(parser) if fuse_elementwise else None
            if counter is not None:
                names.add(name)
                ops = counter(node, context)
                if group is not None and group.accepts(node, info):
                    group.add(node, ops, context)
                    continue
                if group is not None:
                    layers.append(group.layer())
                group = _ElementwiseGroup(node, info, ops, context)
                continue
            layer = parser(node, context, info)
            if layer is None:
                continue
            names.add(name)
            if group is not None:
                layers.append(group.layer())
                group = None
            layers.append(layer)
        if group is not None:
            layers.append(group.layer())
    except (KeyError, TypeError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as error:
        # A node that breaks its operator's schema (missing attribute, wrong attribute type, ...).
        where = f"node {node.name or index!r} ({node.op_type})" if node is not None else "graph"
        raise ValueError(f"model: malformed ONNX {where}: {type(error).__name__}: "
                         f"{' '.join(str(error).split())}") from error
    if unknown:
        _logger.warning("costed as element-wise work (no parser): %s",
                        ", ".join(f"{op} x{count}" for op, count in sorted(unknown.items())))
    return Workload(layers=tuple(layers), peak_activation_elements=peak_live_elements(graph, shapes),
                    params=sum(context.weights.values()), source="onnx", unknown_ops=tuple(sorted(unknown)))

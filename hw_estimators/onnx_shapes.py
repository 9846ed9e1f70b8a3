"""Static tensor shapes and element types of an ONNX graph, resolved with ONNX's and onnxruntime's tools.

:func:`resolve_shapes` leaves a graph whose every node output already has a static shape alone
(the dynamo exporter's graphs, after ``onnx.shape_inference``), so the fast path costs one pass
over the graph. Otherwise it runs, until every dimension is known:

1. ``onnx.shape_inference.infer_shapes(..., data_prop=True)``, which also propagates the values
   of small shape tensors (``Shape -> Gather -> Concat -> Reshape``);
2. onnxruntime's ``SymbolicShapeInference``, which evaluates the shape arithmetic that ONNX's data
   propagation does not (e.g. the ``Div`` in the TorchScript export of ShuffleNetV2's channel
   shuffle) and merges what it cannot prove equal.

Dimensions that stay unknown are taken as 1 and reported once, by count with a few examples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto

_logger = logging.getLogger(__name__)

#: Dynamic dimension names quoted in the warning, at most.
QUOTED_DIMENSIONS = 5

Shape = tuple[int, ...]


@dataclass(kw_only=True)
class TensorTable:
    """Static shapes and element types of a graph's tensors.

    Parameters
    ----------
    shapes
        Shape of every tensor whose rank is known (dynamic dimensions taken as 1).
    types
        ONNX element type (``TensorProto.FLOAT``, ...) of every tensor whose type is known.
    dynamic
        Names of the dynamic dimensions met (``"?"`` for unnamed ones).
    dynamic_tensors
        How many tensors have at least one dynamic dimension.
    """

    shapes: dict[str, Shape] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)
    dynamic_tensors: int = 0

    def complete(self, graph: onnx.GraphProto) -> bool:
        """Whether every node output has a shape and no dimension is dynamic."""
        if self.dynamic:
            return False
        shapes = self.shapes
        return all(not name or name in shapes for node in graph.node for name in node.output)


def collect_tensors(graph: onnx.GraphProto) -> TensorTable:
    """Shapes and element types recorded in the graph (initializers, value infos, Constant nodes)."""
    table = TensorTable()
    shapes, types = table.shapes, table.types
    for initializer in graph.initializer:
        shapes[initializer.name] = tuple(int(d) for d in initializer.dims)
        types[initializer.name] = initializer.data_type
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name in shapes or value.type.WhichOneof("value") != "tensor_type":
            continue
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            types[value.name] = tensor_type.elem_type
        if not tensor_type.HasField("shape"):
            continue
        dims = []
        dynamic = False
        for dim in tensor_type.shape.dim:
            size = dim.dim_value
            if size > 0:
                dims.append(size)
            elif dim.dim_param or not dim.HasField("dim_value"):
                table.dynamic.add(dim.dim_param or "?")
                dynamic = True
                dims.append(1)
            else:
                dims.append(0)
        table.dynamic_tensors += dynamic
        shapes[value.name] = tuple(dims)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and not node.domain:
            _constant_node_tensor(node, table)
    return table


def _constant_node_tensor(node: onnx.NodeProto, table: TensorTable) -> None:
    """Shape and type of a Constant node's output, from its attribute."""
    name = node.output[0]
    for attribute in node.attribute:
        if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
            table.shapes.setdefault(name, tuple(int(d) for d in attribute.t.dims))
            table.types.setdefault(name, attribute.t.data_type)
        elif attribute.name in ("value_float", "value_int"):
            table.shapes.setdefault(name, ())
            table.types.setdefault(name, TensorProto.FLOAT if attribute.name == "value_float" else TensorProto.INT64)
        elif attribute.name in ("value_floats", "value_ints"):
            values = attribute.floats if attribute.name == "value_floats" else attribute.ints
            table.shapes.setdefault(name, (len(values),))
            table.types.setdefault(name, TensorProto.FLOAT if attribute.name == "value_floats" else TensorProto.INT64)


def _onnx_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        raise ValueError(f"model: ONNX shape inference failed ({' '.join(str(error).split())})") from error


def _symbolic_inference(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxruntime's symbolic shape inference, or ``None`` where it gives up on the graph."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception as error:  # noqa: BLE001 - a third-party tool on arbitrary graphs: any failure means "no better"
        _logger.debug("onnxruntime symbolic shape inference gave up: %s: %s", type(error).__name__, error)
        return None


def resolve_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, TensorTable]:
    """The model with shapes inferred where some are missing or dynamic, and its :class:`TensorTable`.

    Raises
    ------
    ValueError
        When ONNX shape inference rejects the graph.
    """
    table = collect_tensors(model.graph)
    if table.complete(model.graph):
        return model, table
    model = _onnx_inference(model)
    table = collect_tensors(model.graph)
    if not table.complete(model.graph) and _static_inputs(model.graph, table):
        inferred = _symbolic_inference(model)
        if inferred is not None:
            better = collect_tensors(inferred.graph)
            if _unknown_count(inferred.graph, better) < _unknown_count(model.graph, table):
                model, table = inferred, better
    if table.dynamic:
        examples = ", ".join(repr(name) for name in sorted(table.dynamic)[:QUOTED_DIMENSIONS])
        more = f" and {len(table.dynamic) - QUOTED_DIMENSIONS} more" if len(table.dynamic) > QUOTED_DIMENSIONS else ""
        _logger.warning("dynamic dimensions %s%s (in %d tensors) are taken as 1: export with static shapes for "
                        "exact figures", examples, more, table.dynamic_tensors)
    return model, table


def _static_inputs(graph: onnx.GraphProto, table: TensorTable) -> bool:
    """Whether the graph's inputs have static shapes (then every shape is computable)."""
    initializers = {initializer.name for initializer in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else ()
        if any(dim.dim_value <= 0 for dim in dims):
            return False
    return True


def _unknown_count(graph: onnx.GraphProto, table: TensorTable) -> int:
    missing = sum(1 for node in graph.node for name in node.output if name and name not in table.shapes)
    return missing + table.dynamic_tensors

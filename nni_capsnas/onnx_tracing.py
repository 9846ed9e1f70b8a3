"""The ONNX graph the dynamo exporter writes for a module, built from one run on the meta device.

:func:`~nni_capsnas.export.export_onnx` takes 1-5 s per network (``torch.export``, translation to
ONNX, the ``onnxscript`` optimizer), far too slow to estimate the thousands of candidates a search
screens before training. :func:`trace_onnx` runs the module's ``forward`` once on ``meta`` tensors
under a :class:`~torch.overrides.TorchFunctionMode` that writes, for every torch function called,
the ONNX nodes the exporter writes for it (:data:`EMITTERS`), with the exporter's node metadata
(module classes and paths), so :mod:`hw_estimators` reads the result exactly as it reads an export.
The rewrites of the exporter's optimizer that the estimate can see are applied as well:
consecutive transposes merged (``TransposeTranspose``), identity transposes and ``x + 0``,
``x - 0``, ``x * 1``, ``x / 1`` with a scalar constant dropped (``onnxscript``'s no-op rules and their
tolerance: relative 1e-5, absolute 1e-8), unused nodes removed. Rewrites that the canonical reading
undoes anyway (batch norm fused into a convolution, zero biases dropped) are not.

Why not the meta kernels alone: most of torch's meta kernels for element-wise operators are Python
reference implementations (0.1-0.5 ms each, 3 ms for a batch norm, 12 ms for a bilinear resize,
measured here), so every emitter computes its output's shape itself (a few microseconds) and
returns an empty meta tensor; view operators (reshape, permute, ...) run their C++ meta kernels,
which are as fast. Functions without an emitter run their meta kernel and become a node of the
custom domain :data:`UNKNOWN_DOMAIN`, which the estimate costs as element-wise work and reports
(``Estimate.unknown_ops``); functions that return no tensor (``Tensor.dim``, ``.shape``) run as they are.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import nn
from torch.overrides import TorchFunctionMode

from hw_estimators.onnx_ops import CLASS_HIERARCHY_KEY, NAME_SCOPES_KEY
from hw_estimators.onnx_shapes import TensorTable

_logger = logging.getLogger(__name__)

#: ONNX operator set of the traced graphs (that of :func:`~nni_capsnas.export.export_onnx`).
OPSET = 18
#: Domain of the nodes written for torch functions without an emitter.
UNKNOWN_DOMAIN = "pkg.torch"
#: Tolerances of ``onnxscript``'s constant patterns (``_pattern_ir.Constant``): a scalar within them
#: of 0 (``Add``, ``Sub``) or of 1 (``Mul``, ``Div``) makes the operator a no-op the exporter drops.
NO_OP_REL_TOL = 1e-5
NO_OP_ABS_TOL = 1e-8

Shape = tuple[int, ...]


@dataclass(kw_only=True)
class _Node:
    """One ONNX node, before the optimizer's rewrites."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]
    hierarchy: str
    scopes: str
    domain: str = ""


@dataclass(frozen=True, kw_only=True)
class TracedOnnx:
    """An ONNX model written by :func:`trace_onnx`, with the shapes of all its tensors.

    Parameters
    ----------
    model
        The graph (initializers carry shapes and types only, no values).
    tensors
        Static shape and element type of every tensor (pass it to
        :func:`hw_estimators.fragments.read_fragment` to skip shape inference).
    output_shapes
        Shapes of the module's outputs, in the order it returns them.
    unknown_functions
        Torch functions without an emitter (written as :data:`UNKNOWN_DOMAIN` nodes) -> calls: where
        there are any, the graph may differ from the exporter's.
    """

    model: onnx.ModelProto
    tensors: TensorTable
    output_shapes: tuple[Shape, ...]
    unknown_functions: dict[str, int] = field(default_factory=dict)


@dataclass
class _Graph:
    """What the trace has written so far."""

    nodes: list[_Node] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    initializers: dict[str, tuple[Shape, int]] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def fresh(self, stem: str) -> str:
        count = self.counts.get(stem, 0)
        self.counts[stem] = count + 1
        return stem if count == 0 else f"{stem}_{count}"


class OnnxTrace(TorchFunctionMode):
    """Writes the exporter's ONNX nodes for the torch functions a ``forward`` on meta tensors calls.

    Parameters
    ----------
    module
        The module whose ``forward`` runs (its parameters and buffers become initializers).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.graph = _Graph()
        self._names: dict[int, str] = {}
        self._alive: list[torch.Tensor] = []
        self._stack: list[tuple[str, str]] = []
        self.unknown_functions: dict[str, int] = {}
        self._scalars: dict[tuple[float, int], str] = {}
        self._parameters = {id(tensor): name for name, tensor in
                            [*module.named_parameters(remove_duplicate=False), *module.named_buffers()]}
        self._paths = {id(child): path for path, child in module.named_modules(remove_duplicate=False)}

    # ------------------------------------------------------------------ module stack
    def enter(self, module: nn.Module, *_: Any) -> None:
        kind = type(module)
        self._stack.append((f"{kind.__module__}.{kind.__qualname__}", self._paths.get(id(module), "")))

    def leave(self, *_: Any) -> None:
        self._stack.pop()

    # ------------------------------------------------------------------ tensors and names
    def add_input(self, tensor: torch.Tensor, name: str) -> None:
        """Declare ``tensor`` a graph input called ``name``."""
        self._bind(tensor, name)
        self.graph.inputs.append(name)

    def _bind(self, tensor: torch.Tensor, name: str) -> None:
        self._names[id(tensor)] = name
        self._alive.append(tensor)
        self.graph.shapes[name] = tuple(tensor.shape)
        self.graph.types[name] = _onnx_type(tensor.dtype)

    def name(self, tensor: torch.Tensor) -> str:
        """The graph name of ``tensor``: known, or an initializer (a parameter or buffer, or a tensor the module
        holds otherwise: the exporter lifts every constant into an initializer)."""
        name = self._names.get(id(tensor))
        if name is not None:
            return name
        name = self._parameters.get(id(tensor)) or self.graph.fresh("constant")
        self._bind(tensor, name)
        self.graph.initializers[name] = (tuple(tensor.shape), _onnx_type(tensor.dtype))
        return name

    def alias(self, result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``result`` is ``source`` for the exporter (no node)."""
        self._names[id(result)] = self.name(source)
        self._alive.append(result)
        return result

    def constant(self, shape: Shape, element_type: int, stem: str = "val") -> str:
        """A new constant initializer (shape tensors, axes, scales: their values do not matter here)."""
        name = self.graph.fresh(stem)
        self.graph.initializers[name] = (shape, element_type)
        self.graph.shapes[name] = shape
        self.graph.types[name] = element_type
        return name

    def scalar(self, value: float, dtype: torch.dtype) -> str:
        """A rank-0 constant initializer holding ``value`` (one per value and type, as after the optimizer)."""
        element_type = _onnx_type(dtype)
        key = (float(value), element_type)
        if key not in self._scalars:
            self._scalars[key] = self.constant((), element_type)
        return self._scalars[key]

    # ------------------------------------------------------------------ nodes
    def _node(self, op_type: str, inputs: list[str], outputs: list[str], attributes: dict[str, Any], aten: str,
              domain: str = "") -> _Node:
        classes = [entry[0] for entry in self._stack] + [aten]
        scopes = [""] + [entry[1] for entry in self._stack[1:]] + [outputs[0] if outputs else op_type]
        return _Node(op_type=op_type, inputs=inputs, outputs=outputs, attributes=attributes, hierarchy=repr(classes),
                     scopes=repr(scopes), domain=domain)

    def emit(self, op_type: str, inputs: Sequence[Any], result: torch.Tensor, *, aten: str,
             attributes: Optional[dict[str, Any]] = None, domain: str = "") -> torch.Tensor:
        """Write a node computing ``result`` from ``inputs`` (tensors or graph names; ``""`` for an absent one)."""
        names = [item if isinstance(item, str) else self.name(item) for item in inputs]
        output = self.graph.fresh(aten.split(".")[1] if aten.startswith("aten.") else op_type.lower())
        self.graph.nodes.append(self._node(op_type, names, [output], dict(attributes or {}), aten, domain))
        self._bind(result, output)
        return result

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        emitter = EMITTERS.get(func)
        if emitter is not None:
            return emitter(self, *args, **kwargs)
        result = func(*args, **kwargs)
        results = [result] if isinstance(result, torch.Tensor) else (
            [item for item in result if isinstance(item, torch.Tensor)] if isinstance(result, (tuple, list)) else [])
        if results:
            self._unknown(func, args, results)
        return result

    def _unknown(self, func: Callable, args: tuple, results: list[torch.Tensor]) -> None:
        """Write a node of :data:`UNKNOWN_DOMAIN` computing ``results`` from the tensors among ``args``."""
        qualified = f"{getattr(func, '__module__', None) or 'torch'}.{getattr(func, '__qualname__', repr(func))}"
        _logger.debug("no ONNX emitter for %s: written as an unknown operator", qualified)
        self.unknown_functions[qualified] = self.unknown_functions.get(qualified, 0) + 1
        tensors = [item for item in args if isinstance(item, torch.Tensor)]
        tensors += [item for sequence in args if isinstance(sequence, (tuple, list))
                    for item in sequence if isinstance(item, torch.Tensor)]
        names = [self.name(item) for item in tensors]
        outputs = [self.graph.fresh(func.__name__ if hasattr(func, "__name__") else "unknown") for _ in results]
        node = self._node(qualified.replace(".", "_"), names, outputs, {}, qualified, UNKNOWN_DOMAIN)
        self.graph.nodes.append(node)
        for tensor, output in zip(results, outputs):
            self._bind(tensor, output)


# ---------------------------------------------------------------------------- shapes and types

def _onnx_type(dtype: torch.dtype) -> int:
    return _ELEMENT_TYPES.get(dtype, TensorProto.FLOAT)


_ELEMENT_TYPES: dict[torch.dtype, int] = {
    torch.float32: TensorProto.FLOAT, torch.float64: TensorProto.DOUBLE, torch.float16: TensorProto.FLOAT16,
    torch.bfloat16: TensorProto.BFLOAT16, torch.int64: TensorProto.INT64, torch.int32: TensorProto.INT32,
    torch.int8: TensorProto.INT8, torch.uint8: TensorProto.UINT8, torch.bool: TensorProto.BOOL,
}


def _empty(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _broadcast(*shapes: Sequence[int]) -> Shape:
    """Numpy broadcasting of ``shapes`` (``torch.broadcast_shapes`` runs a Python reference with symbolic-size
    checks: 70 us a call, most of a traced block's time before this)."""
    rank = max(len(shape) for shape in shapes)
    result = [1] * rank
    for shape in shapes:
        for axis, size in enumerate(shape, start=rank - len(shape)):
            if size != 1:
                if result[axis] not in (1, size):
                    raise ValueError(f"trace_onnx: shapes {[tuple(item) for item in shapes]} do not broadcast")
                result[axis] = size
    return tuple(result)


def _dim(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def _pair(value: Any, count: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(int(item) for item in value) if len(value) == count else tuple(int(value[0]) for _ in range(count))
    return (int(value),) * count


# ---------------------------------------------------------------------------- emitters

def _view(trace: OnnxTrace, op_type: str, aten: str, result: torch.Tensor, x: torch.Tensor,
          operand_length: int) -> torch.Tensor:
    """A view (its shape from the meta kernel) reading a constant shape or axes tensor of ``operand_length``."""
    operand = trace.constant((operand_length,), TensorProto.INT64)
    attributes = {"allowzero": 1} if op_type == "Reshape" else None
    return trace.emit(op_type, [x, operand], result, aten=aten, attributes=attributes)


def emit_reshape(method: Callable) -> Callable:
    def emitter(trace: OnnxTrace, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = method(x, *args, **kwargs)
        return _view(trace, "Reshape", "aten.view.default", result, x, result.dim())
    return emitter


def emit_unsqueeze(trace: OnnxTrace, x: torch.Tensor, dim: int) -> torch.Tensor:
    return _view(trace, "Unsqueeze", "aten.unsqueeze.default", torch.Tensor.unsqueeze(x, dim), x, 1)


def emit_squeeze(trace: OnnxTrace, x: torch.Tensor, dim: Any = None) -> torch.Tensor:
    result = torch.Tensor.squeeze(x) if dim is None else torch.Tensor.squeeze(x, dim)
    if result.dim() == x.dim():
        return trace.alias(result, x)
    return _view(trace, "Squeeze", "aten.squeeze.dim", result, x, x.dim() - result.dim())


def _transpose(trace: OnnxTrace, x: torch.Tensor, perm: Sequence[int], aten: str) -> torch.Tensor:
    perm = [_dim(int(axis), x.dim()) for axis in perm]
    result = _empty([x.shape[axis] for axis in perm], x)
    if perm == list(range(x.dim())):
        return trace.alias(result, x)
    return trace.emit("Transpose", [x], result, aten=aten, attributes={"perm": perm})


def emit_permute(trace: OnnxTrace, x: torch.Tensor, *dims: Any) -> torch.Tensor:
    perm = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    return _transpose(trace, x, perm, "aten.permute.default")


def emit_transpose(trace: OnnxTrace, x: torch.Tensor, first: int, second: int) -> torch.Tensor:
    perm = list(range(x.dim()))
    first, second = _dim(first, x.dim()), _dim(second, x.dim())
    perm[first], perm[second] = perm[second], perm[first]
    return _transpose(trace, x, perm, "aten.transpose.int")


def emit_t(trace: OnnxTrace, x: torch.Tensor) -> torch.Tensor:
    return _transpose(trace, x, list(reversed(range(x.dim()))), "aten.t.default")


def emit_alias(trace: OnnxTrace, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Operators the exporter writes as ``Identity`` and its optimizer removes (copies, casts to the same type)."""
    return trace.alias(_empty(x.shape, x), x)


def _target_dtype(x: torch.Tensor, args: tuple, kwargs: dict) -> torch.dtype:
    """The element type ``Tensor.to(...)`` converts ``x`` to (its own when only a device is given)."""
    for item in (*args, kwargs.get("dtype"), kwargs.get("other")):
        if isinstance(item, torch.dtype):
            return item
        if isinstance(item, torch.Tensor):
            return item.dtype
    return x.dtype


def _cast(trace: OnnxTrace, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A conversion to ``dtype``: nothing when the type does not change (``torch.export`` records no node),
    else ``Cast``."""
    result = torch.empty(tuple(x.shape), dtype=dtype, device="meta")
    if dtype == x.dtype:
        return trace.alias(result, x)
    return trace.emit("Cast", [x], result, aten="aten._to_copy.default", attributes={"to": _onnx_type(dtype)})


def emit_to(trace: OnnxTrace, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``Tensor.to`` (a device, an element type, or another tensor's type)."""
    return _cast(trace, x, _target_dtype(x, args, kwargs))


def emit_cast_to(dtype: torch.dtype) -> Callable:
    """``Tensor.float()``, ``.half()``, ...: a conversion to ``dtype``."""
    def emitter(trace: OnnxTrace, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return _cast(trace, x, dtype)
    return emitter


def emit_dropout(trace: OnnxTrace, x: torch.Tensor, p: float = 0.5, training: bool = True,
                 inplace: bool = False) -> torch.Tensor:
    if training and p > 0:
        raise ValueError("trace_onnx traces inference: put the module in eval mode (dropout is active)")
    return x if inplace else trace.alias(_empty(x.shape, x), x)


def emit_new_zeros(trace: OnnxTrace, x: torch.Tensor, *size: Any, **kwargs: Any) -> torch.Tensor:
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
    result = torch.empty(shape, dtype=kwargs.get("dtype") or x.dtype, device="meta")
    operand = trace.constant((len(shape),), TensorProto.INT64)
    return trace.emit("ConstantOfShape", [operand], result, aten="aten.new_zeros.default")


def _binary_operand(trace: OnnxTrace, value: Any, like: torch.Tensor) -> Any:
    return value if isinstance(value, torch.Tensor) else trace.scalar(value, like.dtype)


#: Scalar operand that makes an operator a no-op, per ONNX operator.
_NEUTRAL: dict[str, float] = {"Add": 0.0, "Sub": 0.0, "Mul": 1.0, "Div": 1.0}


def emit_binary(op_type: str, aten: str, *, reverse: bool = False) -> Callable:
    """``x <op> y`` (``y <op> x`` when ``reverse``), with numpy broadcasting; a scalar ``y`` is a constant."""

    def emitter(trace: OnnxTrace, x: Any, y: Any, *, alpha: Any = None, out: Any = None) -> torch.Tensor:
        if alpha not in (None, 1) or out is not None:
            raise ValueError(f"trace_onnx: {aten} with alpha or out is not supported")
        tensor = x if isinstance(x, torch.Tensor) else y
        other = y if tensor is x else x
        neutral = _NEUTRAL.get(op_type)
        scalar_operand = not isinstance(other, torch.Tensor) and (tensor is x) != reverse
        if (scalar_operand and neutral is not None and isinstance(other, (int, float))
                and math.isclose(float(other), neutral, rel_tol=NO_OP_REL_TOL, abs_tol=NO_OP_ABS_TOL)):
            return trace.alias(_empty(tensor.shape, tensor), tensor)
        shape = _broadcast(x.shape if isinstance(x, torch.Tensor) else (), y.shape if isinstance(y, torch.Tensor) else ())
        first, second = (y, x) if reverse else (x, y)
        operands = [_binary_operand(trace, first, tensor), _binary_operand(trace, second, tensor)]
        return trace.emit(op_type, operands, _empty(shape, tensor), aten=aten)
    return emitter


def _unary(trace: OnnxTrace, op_type: str, aten: str, x: torch.Tensor, in_place: bool) -> torch.Tensor:
    """An element-wise function of one tensor; in place, the tensor object holds the result afterwards."""
    if in_place:
        return trace.emit(op_type, [trace.name(x)], x, aten=aten)
    return trace.emit(op_type, [x], _empty(x.shape, x), aten=aten)


def emit_unary(op_type: str, aten: str, *, in_place: bool = False) -> Callable:
    def emitter(trace: OnnxTrace, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return _unary(trace, op_type, aten, x, in_place)
    return emitter


def emit_relu(trace: OnnxTrace, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _unary(trace, "Relu", "aten.relu.default", x, inplace)


def emit_softmax(trace: OnnxTrace, x: torch.Tensor, dim: Optional[int] = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    dim = kwargs.pop("dim", dim)
    return trace.emit("Softmax", [x], _empty(x.shape, x), aten="aten.softmax.int", attributes={"axis": int(dim)})


def _reduce(trace: OnnxTrace, op_type: str, aten: str, x: torch.Tensor, dim: Any, keepdim: bool) -> torch.Tensor:
    rank = x.dim()
    axes = (list(range(rank)) if dim is None else
            [_dim(int(axis), rank) for axis in (dim if isinstance(dim, (tuple, list)) else [dim])])
    shape = [1 if axis in axes else size for axis, size in enumerate(x.shape)]
    if not keepdim:
        shape = [size for axis, size in enumerate(x.shape) if axis not in axes]
    operand = trace.constant((len(axes),), TensorProto.INT64)
    return trace.emit(op_type, [x, operand], _empty(shape, x), aten=aten,
                      attributes={"keepdims": int(keepdim), "noop_with_empty_axes": 0})


def emit_sum(trace: OnnxTrace, x: torch.Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor:
    return _reduce(trace, "ReduceSum", "aten.sum.dim_IntList", x, dim, keepdim)


def emit_mean(trace: OnnxTrace, x: torch.Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor:
    return _reduce(trace, "ReduceMean", "aten.mean.dim", x, dim, keepdim)


def _matmul_shape(a: Shape, b: Shape) -> Shape:
    left = (1,) + a if len(a) == 1 else a
    right = b + (1,) if len(b) == 1 else b
    if left[-1] != right[-2]:
        raise ValueError(f"trace_onnx: matmul of shapes {a} and {b}")
    batch = _broadcast(left[:-2], right[:-2])
    shape = (*batch, left[-2], right[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return tuple(shape)


def emit_matmul(aten: str) -> Callable:
    def emitter(trace: OnnxTrace, a: torch.Tensor, b: torch.Tensor, *, out: Any = None) -> torch.Tensor:
        if out is not None:
            raise ValueError(f"trace_onnx: {aten} with out= is not supported")
        return trace.emit("MatMul", [a, b], _empty(_matmul_shape(tuple(a.shape), tuple(b.shape)), a), aten=aten)
    return emitter


def emit_linear(trace: OnnxTrace, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``nn.Linear``: ``Gemm`` on 2-D input; otherwise ``MatMul`` by the transposed weight (a folded constant) and ``Add``."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"trace_onnx: linear layer of {weight.shape[1]} inputs applied to shape {tuple(x.shape)}")
    shape = (*x.shape[:-1], weight.shape[0])
    if x.dim() == 2:
        inputs = [x, weight] + ([bias] if bias is not None else [])
        return trace.emit("Gemm", inputs, _empty(shape, x), aten="aten.linear.default",
                          attributes={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1})
    transposed = trace.graph.fresh(trace.name(weight) + "_t")
    trace.graph.initializers[transposed] = ((weight.shape[1], weight.shape[0]), _onnx_type(weight.dtype))
    trace.graph.shapes[transposed] = (weight.shape[1], weight.shape[0])
    trace.graph.types[transposed] = _onnx_type(weight.dtype)
    product = trace.emit("MatMul", [x, transposed], _empty(shape, x), aten="aten.linear.default")
    if bias is None:
        return product
    return trace.emit("Add", [product, bias], _empty(shape, x), aten="aten.linear.default")


def _conv_shape(x: Shape, weight: Shape, stride: tuple[int, ...], padding: tuple[int, ...],
                dilation: tuple[int, ...]) -> Shape:
    spatial = tuple((size + 2 * pad - dil * (kernel - 1) - 1) // step + 1
                    for size, kernel, step, pad, dil in zip(x[2:], weight[2:], stride, padding, dilation))
    return (x[0], weight[0], *spatial)


def emit_conv(trace: OnnxTrace, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
              stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor:
    """``Conv`` (1-3 spatial dimensions; numeric or ``"valid"``/``"same"`` padding)."""
    count = weight.dim() - 2
    if x.dim() != weight.dim() or x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"trace_onnx: convolution of weight {tuple(weight.shape)} (groups {groups}) applied to shape "
                         f"{tuple(x.shape)}")
    stride, dilation = _pair(stride, count), _pair(dilation, count)
    if padding == "valid":
        padding = (0,) * count
    elif padding == "same":
        padding = tuple(dil * (kernel - 1) // 2 for dil, kernel in zip(dilation, weight.shape[2:]))
    padding = _pair(padding, count)
    shape = _conv_shape(tuple(x.shape), tuple(weight.shape), stride, padding, dilation)
    inputs = [x, weight] + ([bias] if bias is not None else [])
    attributes = {"group": int(groups), "pads": list(padding) * 2, "auto_pad": "NOTSET", "strides": list(stride),
                  "dilations": list(dilation), "kernel_shape": list(weight.shape[2:])}
    return trace.emit("Conv", inputs, _empty(shape, x), aten=f"aten.conv{count}d.default", attributes=attributes)


def emit_batch_norm(trace: OnnxTrace, x: torch.Tensor, running_mean: Optional[torch.Tensor],
                    running_var: Optional[torch.Tensor], weight: Optional[torch.Tensor] = None,
                    bias: Optional[torch.Tensor] = None, training: bool = False, momentum: float = 0.1,
                    eps: float = 1e-5, *args: Any) -> torch.Tensor:
    """Inference-mode ``BatchNormalization`` (the estimate folds it into the convolution before it)."""
    if training or running_mean is None or running_var is None:
        raise ValueError("trace_onnx traces inference: put the module in eval mode (batch norm uses batch statistics)")
    channels = x.shape[1]
    operands = []
    for tensor, stem in ((weight, "scale"), (bias, "bias")):
        operands.append(tensor if tensor is not None else trace.constant((channels,), _onnx_type(x.dtype), stem))
    return trace.emit("BatchNormalization", [x, *operands, running_mean, running_var], _empty(x.shape, x),
                      aten="aten._native_batch_norm_legit_no_training.default",
                      attributes={"epsilon": float(eps), "momentum": 1.0 - float(momentum)})


def _pool(trace: OnnxTrace, op_type: str, aten: str, x: torch.Tensor, kernel_size: Any, stride: Any, padding: Any,
          ceil_mode: bool, extra: dict[str, Any]) -> torch.Tensor:
    count = x.dim() - 2
    kernel = _pair(kernel_size, count)
    stride = _pair(stride if stride not in (None, [], ()) else kernel, count)
    padding = _pair(padding, count)
    rounding = math.ceil if ceil_mode else math.floor
    spatial = []
    for size, k, s, p in zip(x.shape[2:], kernel, stride, padding):
        out = int(rounding((size + 2 * p - k) / s)) + 1
        if ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        spatial.append(out)
    attributes = {"ceil_mode": int(ceil_mode), "pads": list(padding) * 2, "auto_pad": "NOTSET",
                  "strides": list(stride), "kernel_shape": list(kernel), **extra}
    return trace.emit(op_type, [x], _empty((*x.shape[:2], *spatial), x), aten=aten, attributes=attributes)


def emit_max_pool(trace: OnnxTrace, x: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
                  dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> torch.Tensor:
    if return_indices or _pair(dilation, x.dim() - 2) != (1,) * (x.dim() - 2):
        raise ValueError("trace_onnx: max pooling with indices or dilation is not supported")
    return _pool(trace, "MaxPool", "aten.max_pool2d.default", x, kernel_size, stride, padding, ceil_mode,
                 {"storage_order": 0, "dilations": [1] * (x.dim() - 2)})


def emit_avg_pool(trace: OnnxTrace, x: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
                  ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Any = None) -> torch.Tensor:
    return _pool(trace, "AveragePool", "aten.avg_pool2d.default", x, kernel_size, stride, padding, ceil_mode,
                 {"count_include_pad": int(count_include_pad)})


def emit_adaptive_avg_pool(trace: OnnxTrace, x: torch.Tensor, output_size: Any) -> torch.Tensor:
    sizes = _pair(output_size, x.dim() - 2)
    if any(size not in (1, None) for size in sizes):
        raise ValueError("trace_onnx: adaptive average pooling to a size other than 1 is not supported")
    return trace.emit("GlobalAveragePool", [x], _empty((*x.shape[:2], *(1,) * (x.dim() - 2)), x),
                      aten="aten.adaptive_avg_pool2d.default")


def emit_interpolate(trace: OnnxTrace, x: torch.Tensor, size: Any = None, scale_factor: Any = None,
                     mode: str = "nearest", align_corners: Optional[bool] = None, recompute_scale_factor: Any = None,
                     antialias: bool = False) -> torch.Tensor:
    """``Resize`` with a constant ``scales`` input (a float tensor of one entry per dimension, as exported)."""
    count = x.dim() - 2
    if size is not None:
        spatial = _pair(size, count)
    else:
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else [scale_factor] * count
        spatial = tuple(int(math.floor(length * float(factor))) for length, factor in zip(x.shape[2:], factors))
    scales = trace.constant((x.dim(),), _onnx_type(x.dtype))
    modes = {"nearest": "nearest", "bilinear": "linear", "linear": "linear", "trilinear": "linear", "bicubic": "cubic"}
    return trace.emit("Resize", [x, "", scales], _empty((*x.shape[:2], *spatial), x),
                      aten=f"aten.upsample_{mode}{count}d.vec", attributes={"mode": modes.get(mode, mode)})


def emit_cat(trace: OnnxTrace, tensors: Sequence[torch.Tensor], dim: int = 0, *, out: Any = None) -> torch.Tensor:
    tensors = list(tensors)
    axis = _dim(dim, tensors[0].dim())
    shape = list(tensors[0].shape)
    shape[axis] = sum(tensor.shape[axis] for tensor in tensors)
    return trace.emit("Concat", tensors, _empty(shape, tensors[0]), aten="aten.cat.default", attributes={"axis": axis})


#: Torch function -> the emitter writing the exporter's nodes for it.
EMITTERS: dict[Callable, Callable[..., Any]] = {
    torch.Tensor.view: emit_reshape(torch.Tensor.view),
    torch.Tensor.reshape: emit_reshape(torch.Tensor.reshape),
    torch.reshape: emit_reshape(torch.reshape),
    torch.Tensor.flatten: emit_reshape(torch.Tensor.flatten),
    torch.flatten: emit_reshape(torch.flatten),
    torch.Tensor.unsqueeze: emit_unsqueeze,
    torch.unsqueeze: emit_unsqueeze,
    torch.Tensor.squeeze: emit_squeeze,
    torch.squeeze: emit_squeeze,
    torch.Tensor.permute: emit_permute,
    torch.permute: emit_permute,
    torch.Tensor.transpose: emit_transpose,
    torch.transpose: emit_transpose,
    torch.Tensor.t: emit_t,
    torch.Tensor.contiguous: emit_alias,
    torch.Tensor.clone: emit_alias,
    torch.Tensor.detach: emit_alias,
    torch.Tensor.to: emit_to,
    torch.Tensor.type_as: emit_to,
    torch.Tensor.float: emit_cast_to(torch.float32),
    torch.Tensor.double: emit_cast_to(torch.float64),
    torch.Tensor.half: emit_cast_to(torch.float16),
    torch.Tensor.bfloat16: emit_cast_to(torch.bfloat16),
    F.dropout: emit_dropout,
    torch.Tensor.new_zeros: emit_new_zeros,
    torch.Tensor.add: emit_binary("Add", "aten.add.Tensor"),
    torch.Tensor.__add__: emit_binary("Add", "aten.add.Tensor"),
    torch.Tensor.__radd__: emit_binary("Add", "aten.add.Tensor"),
    torch.add: emit_binary("Add", "aten.add.Tensor"),
    torch.Tensor.sub: emit_binary("Sub", "aten.sub.Tensor"),
    torch.Tensor.__sub__: emit_binary("Sub", "aten.sub.Tensor"),
    torch.sub: emit_binary("Sub", "aten.sub.Tensor"),
    torch.Tensor.mul: emit_binary("Mul", "aten.mul.Tensor"),
    torch.Tensor.__mul__: emit_binary("Mul", "aten.mul.Tensor"),
    torch.Tensor.__rmul__: emit_binary("Mul", "aten.mul.Tensor"),
    torch.mul: emit_binary("Mul", "aten.mul.Tensor"),
    torch.Tensor.div: emit_binary("Div", "aten.div.Tensor"),
    torch.Tensor.__truediv__: emit_binary("Div", "aten.div.Tensor"),
    torch.div: emit_binary("Div", "aten.div.Tensor"),
    torch.sqrt: emit_unary("Sqrt", "aten.sqrt.default"),
    torch.Tensor.sqrt: emit_unary("Sqrt", "aten.sqrt.default"),
    torch.exp: emit_unary("Exp", "aten.exp.default"),
    torch.Tensor.exp: emit_unary("Exp", "aten.exp.default"),
    torch.sigmoid: emit_unary("Sigmoid", "aten.sigmoid.default"),
    torch.Tensor.sigmoid: emit_unary("Sigmoid", "aten.sigmoid.default"),
    torch.tanh: emit_unary("Tanh", "aten.tanh.default"),
    torch.Tensor.tanh: emit_unary("Tanh", "aten.tanh.default"),
    torch.relu: emit_relu,
    torch.Tensor.relu: emit_relu,
    F.relu: emit_relu,
    torch.relu_: emit_unary("Relu", "aten.relu.default", in_place=True),
    torch.Tensor.relu_: emit_unary("Relu", "aten.relu.default", in_place=True),
    torch.softmax: emit_softmax,
    torch.Tensor.softmax: emit_softmax,
    F.softmax: emit_softmax,
    torch.Tensor.sum: emit_sum,
    torch.sum: emit_sum,
    torch.Tensor.mean: emit_mean,
    torch.mean: emit_mean,
    torch.matmul: emit_matmul("aten.matmul.default"),
    torch.Tensor.matmul: emit_matmul("aten.matmul.default"),
    torch.Tensor.__matmul__: emit_matmul("aten.matmul.default"),
    torch.bmm: emit_matmul("aten.bmm.default"),
    torch.Tensor.bmm: emit_matmul("aten.bmm.default"),
    torch.mm: emit_matmul("aten.mm.default"),
    F.linear: emit_linear,
    torch.conv1d: emit_conv,
    torch.conv2d: emit_conv,
    torch.conv3d: emit_conv,
    F.batch_norm: emit_batch_norm,
    F.max_pool2d: emit_max_pool,
    torch.max_pool2d: emit_max_pool,
    F.avg_pool2d: emit_avg_pool,
    F.adaptive_avg_pool2d: emit_adaptive_avg_pool,
    F.interpolate: emit_interpolate,
    torch.cat: emit_cat,
    torch.concat: emit_cat,
}


# ---------------------------------------------------------------------------- the optimizer's rewrites

def _merge_transposes(nodes: list[_Node], outputs: set[str]) -> None:
    """``Transpose(Transpose(x, p1), p2)`` -> ``Transpose(x, p1[p2])`` where the inner result has no other reader."""
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    producers = {node.outputs[0]: node for node in nodes if node.outputs}
    renamed: dict[str, str] = {}
    for node in nodes:
        node.inputs = [renamed.get(name, name) for name in node.inputs]
        if node.op_type != "Transpose":
            continue
        inner = producers.get(node.inputs[0])
        if (inner is None or inner.op_type != "Transpose" or readers.get(node.inputs[0], 0) != 1
                or node.inputs[0] in outputs):
            continue
        perm = [inner.attributes["perm"][axis] for axis in node.attributes["perm"]]
        node.inputs = [inner.inputs[0]]
        node.attributes = {**node.attributes, "perm": perm}
        if perm == sorted(perm) and node.outputs[0] not in outputs:
            renamed[node.outputs[0]] = inner.inputs[0]
            node.op_type = "Identity"
    nodes[:] = [node for node in nodes if node.op_type != "Identity"]


def _remove_unused(nodes: list[_Node], outputs: set[str]) -> None:
    """Drop nodes none of whose outputs is read (as ``RemoveUnusedNodesPass`` does)."""
    used = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(name in used for name in node.outputs):
            kept.append(node)
            used.update(node.inputs)
    nodes[:] = reversed(kept)


# ---------------------------------------------------------------------------- the model

def _add_attribute(node: onnx.NodeProto, name: str, value: Any) -> None:
    """``node.attribute.append(onnx.helper.make_attribute(name, value))`` for ints, floats, strings and their
    lists, written in place (``make_attribute`` infers types and copies: a third of a traced block's time)."""
    attribute = node.attribute.add(name=name)
    if isinstance(value, bool) or isinstance(value, int):
        attribute.type, attribute.i = onnx.AttributeProto.INT, int(value)
    elif isinstance(value, float):
        attribute.type, attribute.f = onnx.AttributeProto.FLOAT, value
    elif isinstance(value, str):
        attribute.type, attribute.s = onnx.AttributeProto.STRING, value.encode()
    elif all(isinstance(item, int) for item in value):
        attribute.type = onnx.AttributeProto.INTS
        attribute.ints.extend(value)
    else:
        attribute.type = onnx.AttributeProto.FLOATS
        attribute.floats.extend(float(item) for item in value)


def _onnx_model(graph: _Graph, outputs: Sequence[str]) -> onnx.ModelProto:
    model = onnx.ModelProto(ir_version=onnx.IR_VERSION, producer_name="nni_capsnas.onnx_tracing")
    model.opset_import.add(domain="", version=OPSET)
    proto = model.graph
    proto.name = "traced"
    for node in graph.nodes:
        written = proto.node.add(op_type=node.op_type, domain=node.domain, name=f"node_{node.outputs[0]}")
        written.input.extend(node.inputs)
        written.output.extend(node.outputs)
        for key, value in node.attributes.items():
            _add_attribute(written, key, value)
        written.metadata_props.add(key=CLASS_HIERARCHY_KEY, value=node.hierarchy)
        written.metadata_props.add(key=NAME_SCOPES_KEY, value=node.scopes)
    for name, (dims, element_type) in graph.initializers.items():
        proto.initializer.add(name=name, dims=dims, data_type=element_type)
    for name in graph.inputs:
        proto.input.append(onnx.helper.make_tensor_value_info(name, graph.types[name], graph.shapes[name]))
    for name in outputs:
        proto.output.append(onnx.helper.make_tensor_value_info(name, graph.types[name], graph.shapes[name]))
    return model


def trace_onnx(module: nn.Module, input_shapes: Sequence[Sequence[int]], *,
               dtype: torch.dtype = torch.float32) -> TracedOnnx:
    """The ONNX graph :func:`~nni_capsnas.export.export_onnx` would write for ``module``, from a meta-device run.

    Parameters
    ----------
    module
        The network or block, best built on the meta device (``with torch.device("meta"): ...``; a
        module with real weights is traced the same way, its weights are never read). It is put in
        eval mode for the trace and back afterwards.
    input_shapes
        Shape of each ``forward`` argument, batch included.
    dtype
        Element type of the inputs.

    Returns
    -------
    TracedOnnx
        The graph and the shapes of its tensors.

    Raises
    ------
    ValueError
        If the module does not run on meta tensors of these shapes (the message gives the cause), or
        calls a function the exporter would write differently in training mode.
    """
    inputs = [torch.empty(tuple(int(size) for size in shape), dtype=dtype, device="meta") for shape in input_shapes]
    trace = OnnxTrace(module)
    for position, tensor in enumerate(inputs):
        trace.add_input(tensor, f"input_{position}" if len(inputs) > 1 else "input")
    handles = []
    for child in module.modules():
        handles.append(child.register_forward_pre_hook(trace.enter))
        handles.append(child.register_forward_hook(trace.leave))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), trace:
            result = module(*inputs)
    except (RuntimeError, TypeError, IndexError, ValueError) as error:
        shapes = [tuple(shape) for shape in input_shapes]
        raise ValueError(f"cannot trace {type(module).__name__} with inputs of shape(s) {shapes} on the meta device: "
                         f"{type(error).__name__}: {' '.join(str(error).split())[:300]}") from error
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    names = [trace.name(tensor) for tensor in results]
    graph = trace.graph
    _merge_transposes(graph.nodes, set(names))
    _remove_unused(graph.nodes, set(names))
    tensors = TensorTable(shapes=dict(graph.shapes), types=dict(graph.types))
    return TracedOnnx(model=_onnx_model(graph, names), tensors=tensors,
                      output_shapes=tuple(tuple(tensor.shape) for tensor in results),
                      unknown_functions=dict(trace.unknown_functions))

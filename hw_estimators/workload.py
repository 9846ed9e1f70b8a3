"""The workload: a network as a list of typed layers, the estimator's only input.

Front ends (:mod:`hw_estimators.onnx_frontend`, :mod:`hw_estimators.chromosome`) build a
:class:`Workload`; cost models (:mod:`hw_estimators.cost_capsacc`,
:mod:`hw_estimators.cost_systolic`) price each :class:`Layer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

#: Layer kinds, the keys of every cost model's registry.
#:
#: ``conv``
#:     a convolution (2D or 3D; grouped allowed), including the convolutions inside
#:     primary capsules and 2D convolutional capsules.
#: ``matmul``
#:     a matrix product (MatMul, Gemm, two-operand Einsum) outside capsule routing modules.
#: ``capsule_votes``
#:     the vote (prediction vector) transform of a routing capsule layer: a product with
#:     trained weights inside ``ClassCaps`` or ``ConvCaps3d``.
#: ``routing``
#:     a routing-by-agreement step: an activation-by-activation product inside a routing
#:     capsule layer (the weighted vote sum ``s_j`` or the agreement update ``b_ij``).
#: ``elementwise``
#:     everything else that computes (activations, squash, softmax, normalisation,
#:     pooling, resizing), and unknown operators.
LAYER_KINDS: tuple[str, ...] = ("conv", "matmul", "capsule_votes", "routing", "elementwise")

#: Contraction kinds: layers with a GEMM view (``batch``, ``m``, ``k``, ``n``).
CONTRACTION_KINDS: frozenset[str] = frozenset({"conv", "matmul", "capsule_votes", "routing"})


@dataclass(frozen=True, kw_only=True)
class StationaryMapping:
    """An explicit weight-stationary mapping of a layer onto a systolic array.

    NASCaps describes every layer by three numbers; a front end that reproduces a model
    which is not derived from tensor shapes (NASCaps' class-capsule and routing layers)
    records them here, and the cost models that understand them use them verbatim.

    Parameters
    ----------
    weights
        ``W``: elements held stationary in the array over the whole layer.
    sums_per_output
        ``S``: partial sums accumulated per output.
    data_per_weight
        ``D``: input data streamed past each loaded weight tile (cycles of streaming).
    """

    weights: int
    sums_per_output: int
    data_per_weight: int

    def __post_init__(self) -> None:
        for name in ("weights", "sums_per_output", "data_per_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"StationaryMapping.{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One layer of a workload.

    Every contraction (``conv``, ``matmul``, ``capsule_votes``, ``routing``) has a GEMM
    view: ``batch`` independent products of an ``(m x k)`` streamed operand with a
    ``(k x n)`` stationary operand, so ``macs == batch * m * k * n``. Convolutions also
    keep their convolution geometry (``kernel`` non-empty).

    Parameters
    ----------
    name
        Unique name (the ONNX node name, or NASCaps' layer name).
    kind
        One of :data:`LAYER_KINDS`.
    op_type
        ONNX operator type (or NASCaps layer type for the chromosome front end).
    module
        Class name of the network module the layer belongs to (e.g. ``"ClassCaps"``).
    scope
        Module path inside the network (e.g. ``"cells.3.skip"``).
    detail
        Free text, e.g. an einsum equation.
    macs
        Multiply-accumulates.
    weights
        Stored weights (parameters, bias included) charged to this layer.
    input_elements, output_elements
        Activation elements read and written.
    ops
        Element-wise operations (``elementwise`` layers).
    batch, m, k, n
        GEMM view, see above.
    bias
        Whether the contraction adds a bias.
    in_channels, out_channels, kernel, stride, out_size, groups, images
        Convolution geometry: input/output channels, kernel and stride per spatial
        dimension, output spatial size, groups and the number of images convolved.
    weight_bits
        Bits per element of the stationary operand (the weights; for a product of two
        activations, the second operand); 0 when the front end does not say (the accelerator's
        native width).
    activation_bits
        Bits per element of the activations read (0: the accelerator's native width).
    output_bits
        Bits per element of the activations written (0: the accelerator's native width).
    mapping
        Explicit weight-stationary mapping, overriding the one a cost model derives.
    """

    name: str
    kind: str
    op_type: str = ""
    module: str = ""
    scope: str = ""
    detail: str = ""
    macs: int = 0
    weights: int = 0
    input_elements: int = 0
    output_elements: int = 0
    ops: int = 0
    batch: int = 1
    m: int = 0
    k: int = 0
    n: int = 0
    bias: bool = False
    in_channels: int = 0
    out_channels: int = 0
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    out_size: tuple[int, ...] = ()
    groups: int = 1
    images: int = 1
    weight_bits: int = 0
    activation_bits: int = 0
    output_bits: int = 0
    mapping: Optional[StationaryMapping] = field(default=None, compare=True)

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"Layer.kind must be one of {LAYER_KINDS}, got {self.kind!r} (layer {self.name!r})")
        values = (self.macs, self.weights, self.input_elements, self.output_elements, self.ops, self.batch, self.m,
                  self.k, self.n, self.in_channels, self.out_channels, self.groups, self.images, self.weight_bits,
                  self.activation_bits, self.output_bits)
        if any(type(value) is not int or value < 0 for value in values):
            for name in _COUNT_FIELDS:
                value = getattr(self, name)
                if type(value) is not int or value < 0:
                    raise ValueError(f"Layer.{name} must be a non-negative integer, got {value!r} "
                                     f"(layer {self.name!r})")

    @property
    def is_contraction(self) -> bool:
        """Whether the layer is a product with a GEMM view."""
        return self.kind in CONTRACTION_KINDS

    @property
    def shape(self) -> str:
        """Short human-readable dimensions, e.g. ``"256->256 k9x9 s2 out14x14"``."""
        if self.kernel:
            kernel = "x".join(map(str, self.kernel))
            stride = "x".join(map(str, self.stride)) if self.stride else "1"
            out = "x".join(map(str, self.out_size))
            groups = f" g{self.groups}" if self.groups > 1 else ""
            images = f" x{self.images}" if self.images > 1 else ""
            return f"{self.in_channels}->{self.out_channels} k{kernel} s{stride} out{out}{groups}{images}"
        if self.is_contraction:
            return f"{self.batch}x({self.m}x{self.k} @ {self.k}x{self.n})"
        return f"{self.ops} ops"

    def as_row(self) -> dict[str, Any]:
        """The layer as one flat table row (the mapping, if any, as ``W``/``S``/``D``)."""
        row = dict(self.__dict__)
        mapping = row.pop("mapping")
        row["shape"] = self.shape
        row["kernel"] = "x".join(map(str, self.kernel))
        row["stride"] = "x".join(map(str, self.stride))
        row["out_size"] = "x".join(map(str, self.out_size))
        row["explicit_mapping"] = mapping is not None
        return row


_COUNT_FIELDS = ("macs", "weights", "input_elements", "output_elements", "ops", "batch", "m", "k", "n",
                 "in_channels", "out_channels", "groups", "images", "weight_bits", "activation_bits", "output_bits")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A network as typed layers plus what the layer list alone does not say.

    Parameters
    ----------
    layers
        The layers in execution order.
    peak_activation_elements
        Largest number of activation elements alive at once.
    peak_activation_bits
        Largest number of activation bits alive at once, each tensor at its own width (0 when
        the front end does not know widths: cost models then use their native width).
    params
        Stored weights of the whole network.
    source
        ``"onnx"`` or ``"chromosome"``.
    unknown_ops
        Operator type the front end did not know (costed as element-wise work) -> number of
        nodes of that type.
    """

    layers: tuple[Layer, ...]
    peak_activation_elements: int = 0
    peak_activation_bits: int = 0
    params: int = 0
    source: str = "onnx"
    unknown_ops: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"Workload.layers must have unique names, got duplicates {duplicates}")

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all layers."""
        return sum(layer.macs for layer in self.layers)


def format_unknown_ops(unknown_ops: Mapping[str, int]) -> str:
    """``{"custom.FancyOp": 2, "Foo": 1}`` -> ``"Foo x1, custom.FancyOp x2"`` (one entry per operator type)."""
    return ", ".join(f"{op} x{count}" for op, count in sorted(unknown_ops.items()))


def ceil_div(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` for non-negative integers (exact, no floats)."""
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator!r}")
    return -(-numerator // denominator)


def prod(values: Any) -> int:
    """Product of integers (1 for an empty sequence)."""
    return int(math.prod(int(v) for v in values))

"""NASCaps' search space (Marchisio et al., ICCAD 2020) as an NNI multi-trial model space.

Every architecture decision is one labelled :class:`nni.mutable.Categorical`, registered on
the space with :meth:`~nni.nas.nn.pytorch.MutableModule.add_mutable`; ``__init__`` reads
the sampled values with :func:`nni.mutable.ensure_frozen` and builds the network those
values describe (NNI 3.0's "conditional structure": the default values during the dry run,
the sampled ones when a strategy re-creates the space in a ``model_context``). Sizes that
depend on earlier decisions are computed in Python, and decisions that would shrink a
feature map below the kernels are clamped (see :func:`fit_stride` and :func:`fit_kernel`),
so *every* integer vector over the labels is a valid network: no constraint has to be
honoured by the strategy (NNI's TPE cannot take one) and no sample is ever rejected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import nni
import torch
from nni.mutable import Categorical, ensure_frozen
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import model_context
from torch import nn

from nni_capsnas.blocks import Block
from nni_capsnas.modules import (
    CapsCell, ClassCaps, ConvCaps2d, ConvCaps3d, FlattenCaps, PrimaryCaps, ReconstructionDecoder, check_positive,
)
from ._geometry import check_shape, fit_kernel, fit_stride, is_integer, same_size

_logger = logging.getLogger(__name__)

FAMILIES = ("capsnet", "deepcaps")
"""The two capsule network families of NASCaps."""

DEEPCAPS_KERNEL = 3
"""Kernel of every convolution in a DeepCaps cell (as in DeepCaps and NASCaps)."""

MAX_STACK = 8
"""Upper bound of every searched depth (keeps the number of labels modest)."""


# --------------------------------------------------------------------------------------
# Argument checks shared with :mod:`search_spaces.cnn_space`
# --------------------------------------------------------------------------------------

def check_candidates(name: str, values: Any, *, low: int = 1, high: Optional[int] = None,
                     odd: bool = False) -> list[int]:
    """Validate a list of integer candidates and return it as a list.

    Parameters
    ----------
    name
        Argument name used in error messages.
    values
        The candidates received: a non-empty sequence of distinct integers.
    low, high
        Inclusive bounds of every candidate (``high=None``: no upper bound).
    odd
        Require odd values (kernels padded "same").
    """
    if isinstance(values, (str, bytes, set, frozenset, dict)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be an ordered sequence of integers, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} needs at least one candidate value, got an empty sequence")
    bound = f"[{low}, {high}]" if high is not None else f">= {low}"
    for value in values:
        if not is_integer(value):
            raise ValueError(f"{name} must contain integers, got {value!r} in {values!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"{name} values must be in {bound}, got {value!r} in {values!r}")
        if odd and value % 2 == 0:
            raise ValueError(f"{name} values must be odd (\"same\" padding), got {value!r} in {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value, got {values!r}")
    return [int(value) for value in values]


def check_names(name: str, values: Any, allowed: Sequence[str]) -> list[str]:
    """Validate a non-empty list of distinct names taken from ``allowed``."""
    if isinstance(values, (str, set, frozenset, dict)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be an ordered sequence of names from {list(allowed)}, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} needs at least one of {list(allowed)}, got an empty sequence")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name} values must be in {list(allowed)}, got {unknown!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value, got {values!r}")
    return values


def register_labels(space: ModelSpace, labels: dict[str, Categorical]) -> dict[str, Any]:
    """Register ``labels`` on ``space`` and return their current values (default or sampled)."""
    for mutable in labels.values():
        space.add_mutable(mutable)
    return {label: ensure_frozen(mutable) for label, mutable in labels.items()}


# --------------------------------------------------------------------------------------
# Options and architecture plan
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NASCapsOptions:
    """Validated candidate lists of :class:`NASCapsSpace` (see its parameters)."""

    families: tuple[str, ...]
    input_resizes: tuple[int, ...]
    conv_depths: tuple[int, ...]
    conv_kernels: tuple[int, ...]
    conv_strides: tuple[int, ...]
    conv_channels: tuple[int, ...]
    caps_layers: tuple[int, ...]
    caps_counts: tuple[int, ...]
    caps_dims: tuple[int, ...]
    caps_kernels: tuple[int, ...]
    caps_strides: tuple[int, ...]
    deepcaps_cells: tuple[int, ...]
    deepcaps_caps: tuple[int, ...]
    deepcaps_dims: tuple[int, ...]
    deepcaps_strides: tuple[int, ...]
    routing_iterations: tuple[int, ...]

    @property
    def min_map_size(self) -> int:
        """No stride may shrink a map below this size: the smallest kernel in the space."""
        kernels = list(self.conv_kernels)
        if "capsnet" in self.families:
            kernels += self.caps_kernels
        if "deepcaps" in self.families:
            kernels.append(DEEPCAPS_KERNEL)
        return min(kernels)


# name -> (low, high, odd) of every integer candidate list
_RULES: dict[str, tuple[int, Optional[int], bool]] = {
    "input_resizes": (1, 2, False),
    "conv_depths": (1, MAX_STACK, False),
    "conv_kernels": (1, None, True),
    "conv_strides": (1, 2, False),
    "conv_channels": (1, None, False),
    "caps_layers": (2, MAX_STACK, False),
    "caps_counts": (1, None, False),
    "caps_dims": (1, None, False),
    "caps_kernels": (1, None, True),
    "caps_strides": (1, 2, False),
    "deepcaps_cells": (1, MAX_STACK, False),
    "deepcaps_caps": (1, None, False),
    "deepcaps_dims": (1, None, False),
    "deepcaps_strides": (1, 2, False),
    "routing_iterations": (1, None, False),
}


def make_options(families: Any, candidates: Mapping[str, Any]) -> NASCapsOptions:
    """Validate every candidate list and return the options (``ValueError`` naming the culprit)."""
    checked = {name: tuple(check_candidates(name, candidates[name], low=low, high=high, odd=odd))
               for name, (low, high, odd) in _RULES.items()}
    return NASCapsOptions(families=tuple(check_names("families", families, FAMILIES)), **checked)


@dataclass(frozen=True)
class ConvSpec:
    """One convolution + batch norm + ReLU layer; ``size`` is its output ``(height, width)``."""

    channels: int
    kernel: int
    stride: int
    size: tuple[int, int]


@dataclass(frozen=True)
class CapsSpec:
    """Primary capsules (first) or a :class:`ConvCaps2d` layer of the CapsNet family."""

    caps: int
    dim: int
    kernel: int
    stride: int
    size: tuple[int, int]


@dataclass(frozen=True)
class CellSpec:
    """One DeepCaps :class:`CapsCell`; ``routing`` marks the 3D-routing skip of the last cell."""

    caps: int
    dim: int
    kernel: int
    stride: int
    routing: bool
    size: tuple[int, int]


@dataclass(frozen=True)
class NASCapsPlan:
    """The concrete architecture a sample describes, after clamping (hashable).

    Two samples with the same plan build the same network (e.g. they differ only in the
    genes of layers beyond the sampled depth, or in strides that were clamped to 1).
    """

    family: str
    input_resize: int
    convs: tuple[ConvSpec, ...]
    caps: tuple[CapsSpec, ...]
    cells: tuple[CellSpec, ...]
    skip: int
    iterations: int
    class_in_caps: int
    class_in_dim: int


def declare_labels(opts: NASCapsOptions) -> dict[str, Categorical]:
    """Every label of the space, as ``nni.choice`` over the candidate lists."""
    labels = {"family": nni.choice("family", list(opts.families)),
              "input_resize": nni.choice("input_resize", list(opts.input_resizes)),
              "conv_depth": nni.choice("conv_depth", list(opts.conv_depths))}
    for i in range(1, max(opts.conv_depths) + 1):
        labels.update(_choices(f"conv{i}", channels=opts.conv_channels, kernel=opts.conv_kernels,
                               stride=opts.conv_strides))
    if "capsnet" in opts.families:
        labels["caps_layers"] = nni.choice("caps_layers", list(opts.caps_layers))
        for j in range(1, max(opts.caps_layers)):
            labels.update(_choices(f"caps{j}", count=opts.caps_counts, dim=opts.caps_dims,
                                   kernel=opts.caps_kernels, stride=opts.caps_strides))
    if "deepcaps" in opts.families:
        labels.update(_choices("deepcaps", cells=opts.deepcaps_cells, caps=opts.deepcaps_caps,
                               dim=opts.deepcaps_dims, skip=tuple(range(min(opts.deepcaps_cells)))))
        for k in range(1, max(opts.deepcaps_cells) + 1):
            labels.update(_choices(f"cell{k}", stride=opts.deepcaps_strides))
    labels["routing_iterations"] = nni.choice("routing_iterations", list(opts.routing_iterations))
    return labels


def _choices(prefix: str, **candidates: Sequence[Any]) -> dict[str, Categorical]:
    return {f"{prefix}_{name}": nni.choice(f"{prefix}_{name}", list(values))
            for name, values in candidates.items()}


def make_plan(opts: NASCapsOptions, values: Mapping[str, Any], input_shape: Sequence[int]) -> NASCapsPlan:
    """Turn label values into the concrete, clamped architecture.

    Parameters
    ----------
    opts
        Validated candidate lists.
    values
        A value for every label of :func:`declare_labels`.
    input_shape
        ``(channels, height, width)`` of the images.
    """
    resize = values["input_resize"]
    height, width = input_shape[1] * resize, input_shape[2] * resize
    convs = []
    for i in range(1, values["conv_depth"] + 1):
        kernel, stride, height, width = _fit(values[f"conv{i}_kernel"], values[f"conv{i}_stride"],
                                             height, width, opts.min_map_size)
        convs.append(ConvSpec(values[f"conv{i}_channels"], kernel, stride, (height, width)))
    common = dict(family=values["family"], input_resize=resize, convs=tuple(convs),
                  iterations=values["routing_iterations"])
    if values["family"] == "capsnet":
        return _capsnet_plan(opts, values, height, width, common)
    return _deepcaps_plan(opts, values, height, width, common)


def _fit(kernel: int, stride: int, height: int, width: int, min_size: int) -> tuple[int, int, int, int]:
    """Clamped kernel and stride of a "same" convolution, and its output size."""
    kernel = fit_kernel(kernel, height, width)
    stride = fit_stride(stride, height, width, min_size)
    return kernel, stride, same_size(height, stride), same_size(width, stride)


def _capsnet_plan(opts: NASCapsOptions, values: Mapping[str, Any], height: int, width: int,
                  common: dict[str, Any]) -> NASCapsPlan:
    caps = []
    for j in range(1, values["caps_layers"]):
        kernel, stride, height, width = _fit(values[f"caps{j}_kernel"], values[f"caps{j}_stride"],
                                             height, width, opts.min_map_size)
        caps.append(CapsSpec(values[f"caps{j}_count"], values[f"caps{j}_dim"], kernel, stride, (height, width)))
    last = caps[-1]
    return NASCapsPlan(caps=tuple(caps), cells=(), skip=0, class_in_caps=last.caps * height * width,
                       class_in_dim=last.dim, **common)


def _deepcaps_plan(opts: NASCapsOptions, values: Mapping[str, Any], height: int, width: int,
                   common: dict[str, Any]) -> NASCapsPlan:
    cells = []
    count = values["deepcaps_cells"]
    for k in range(1, count + 1):
        kernel, stride, height, width = _fit(DEEPCAPS_KERNEL, values[f"cell{k}_stride"], height, width,
                                             opts.min_map_size)
        cells.append(CellSpec(values["deepcaps_caps"], values["deepcaps_dim"], kernel, stride, k == count,
                              (height, width)))
    skip = values["deepcaps_skip"]
    sources = [cells[-1]] + ([cells[-1 - skip]] if skip else [])
    in_caps = sum(cell.caps * cell.size[0] * cell.size[1] for cell in sources)
    return NASCapsPlan(caps=(), cells=tuple(cells), skip=skip, class_in_caps=in_caps,
                       class_in_dim=values["deepcaps_dim"], **common)


# --------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------

def input_resize(factor: int) -> nn.Module:
    """NASCaps' input resize: bilinear upsampling by ``factor`` (identity for 1)."""
    if factor > 1:
        return nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False)
    return nn.Identity()


def conv_block(in_channels: int, spec: ConvSpec) -> nn.Sequential:
    """Convolution ("same" padding, no bias) + batch norm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, spec.channels, spec.kernel, stride=spec.stride, padding=spec.kernel // 2, bias=False),
        nn.BatchNorm2d(spec.channels), nn.ReLU(inplace=True))


def primary_caps(in_channels: int, spec: CapsSpec) -> PrimaryCaps:
    """The primary capsules of the CapsNet family ("same" padding)."""
    return PrimaryCaps(in_channels=in_channels, out_caps=spec.caps, caps_dim=spec.dim, kernel_size=spec.kernel,
                       stride=spec.stride, padding=spec.kernel // 2)


def conv_caps(previous: CapsSpec, spec: CapsSpec) -> ConvCaps2d:
    """A convolutional capsule layer of the CapsNet family, reading the capsules of ``previous``."""
    return ConvCaps2d(in_caps=previous.caps, in_dim=previous.dim, out_caps=spec.caps, out_dim=spec.dim,
                      kernel_size=spec.kernel, stride=spec.stride)


def caps_cell(in_caps: int, in_dim: int, spec: CellSpec, iterations: int) -> CapsCell:
    """A DeepCaps cell reading ``in_caps`` capsule types of length ``in_dim``."""
    return CapsCell(in_caps=in_caps, in_dim=in_dim, out_caps=spec.caps, out_dim=spec.dim, kernel_size=spec.kernel,
                    stride=spec.stride, routing_skip=spec.routing, iterations=iterations)


class CellMerge(nn.Module):
    """The end of a DeepCaps cell, as its own block: ``l3(y2) + skip(x1)`` (:class:`CapsCell`'s ``forward``, with
    ``l3`` and ``skip`` built as :class:`CapsCell` builds them), from its second layer's output ``y2`` and its first
    layer's output ``x1``.

    Reading a cell as three blocks (first layer, second layer, this) lets cells that differ only in their
    input share two of them.
    """

    def __init__(self, *, caps: int, dim: int, kernel: int, routing: bool, iterations: int) -> None:
        super().__init__()
        self.l3 = ConvCaps2d(in_caps=caps, in_dim=dim, out_caps=caps, out_dim=dim, kernel_size=kernel)
        self.skip = (ConvCaps3d(in_caps=caps, in_dim=dim, out_caps=caps, out_dim=dim, kernel_size=kernel,
                                iterations=iterations) if routing
                     else ConvCaps2d(in_caps=caps, in_dim=dim, out_caps=caps, out_dim=dim, kernel_size=kernel))

    def forward(self, y2: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self.l3(y2) + self.skip(x1)


def cell_blocks(first: int, in_caps: int, in_dim: int, spec: CellSpec, iterations: int) -> list[Block]:
    """The blocks of :func:`caps_cell`, the first at position ``first``: its first layer (the only one that
    depends on the cell's input), its second layer, and :class:`CellMerge` (``forward``'s order)."""
    same = dict(out_caps=spec.caps, out_dim=spec.dim, kernel_size=spec.kernel)
    return [Block.of(ConvCaps2d, in_caps=in_caps, in_dim=in_dim, stride=spec.stride, **same),
            Block.of(ConvCaps2d, in_caps=spec.caps, in_dim=spec.dim, **same),
            Block.of(CellMerge, inputs=(first + 1, first), caps=spec.caps, dim=spec.dim, kernel=spec.kernel,
                     routing=spec.routing, iterations=iterations)]


def class_capsules(in_caps: int, in_dim: int, num_classes: int, class_dim: int, iterations: int) -> ClassCaps:
    """The class capsules with dynamic routing."""
    return ClassCaps(in_caps=in_caps, in_dim=in_dim, out_caps=num_classes, out_dim=class_dim, iterations=iterations)


class FeatureCapsules(nn.Module):
    """Feature maps ``(batch, channels, H, W)`` seen as one-dimensional capsules ``(batch, channels, 1, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(2)


class CapsuleGather(nn.Module):
    """The capsules the class capsules read: the last cell's, then those of the skipped-to cells, flattened."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = FlattenCaps()

    def forward(self, last: torch.Tensor, *skipped: torch.Tensor) -> torch.Tensor:
        if not skipped:
            return self.flatten(last)
        return torch.cat([self.flatten(last), *(self.flatten(grid) for grid in skipped)], dim=1)


class CapsNetBody(nn.Module):
    """Primary capsules then :class:`ConvCaps2d` layers; returns flattened capsules."""

    def __init__(self, in_channels: int, layers: Sequence[CapsSpec]) -> None:
        super().__init__()
        self.primary = primary_caps(in_channels, layers[0])
        self.layers = nn.Sequential(*(conv_caps(previous, spec) for previous, spec in zip(layers[:-1], layers[1:])))
        self.flatten = FlattenCaps()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.layers(self.primary(x)))


class DeepCapsBody(nn.Module):
    """DeepCaps cells on the feature maps seen as 1-D capsules; returns flattened capsules.

    With ``skip > 0`` the class capsules also read the output of the cell ``skip``
    positions before the last (DeepCaps itself uses ``skip=1``), concatenated.
    """

    def __init__(self, in_channels: int, cells: Sequence[CellSpec], skip: int, iterations: int) -> None:
        super().__init__()
        self.as_capsules = FeatureCapsules()
        blocks = []
        in_caps, in_dim = in_channels, 1
        for spec in cells:
            blocks.append(caps_cell(in_caps, in_dim, spec, iterations))
            in_caps, in_dim = spec.caps, spec.dim
        self.cells = nn.ModuleList(blocks)
        self.skip = skip
        self.gather = CapsuleGather()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.as_capsules(x)
        outputs = []
        for cell in self.cells:
            x = cell(x)
            outputs.append(x)
        return self.gather(x, *([outputs[-1 - self.skip]] if self.skip else []))


def plan_blocks(plan: NASCapsPlan, in_channels: int, num_classes: int, class_dim: int) -> tuple[Block, ...]:
    """The network :class:`NASCapsSpace` builds for ``plan``, as blocks for the pre-training estimate.

    The same modules as :meth:`NASCapsSpace._build` builds, in the order ``forward`` runs them (see
    :mod:`nni_capsnas.blocks`): the resize, each convolution block, then the primary capsules, each
    capsule layer and the flattening (CapsNet family) or the view as capsules, each cell (as the three
    blocks of :func:`cell_blocks`) and the gathering of the class capsules' inputs (DeepCaps family), then
    the class capsules.
    """
    blocks = [Block.of(input_resize, factor=plan.input_resize)] if plan.input_resize > 1 else []
    channels = in_channels
    for spec in plan.convs:
        blocks.append(Block.of(conv_block, in_channels=channels, spec=spec))
        channels = spec.channels
    if plan.family == "capsnet":
        blocks.append(Block.of(primary_caps, in_channels=channels, spec=plan.caps[0]))
        blocks += [Block.of(conv_caps, previous=previous, spec=spec)
                   for previous, spec in zip(plan.caps[:-1], plan.caps[1:])]
        blocks.append(Block.of(FlattenCaps))
    else:
        blocks.append(Block.of(FeatureCapsules))
        ends = []
        in_caps, in_dim = channels, 1
        for spec in plan.cells:
            blocks += cell_blocks(len(blocks), in_caps, in_dim, spec, plan.iterations)
            ends.append(len(blocks) - 1)
            in_caps, in_dim = spec.caps, spec.dim
        skipped = (ends[-1 - plan.skip],) if plan.skip else ()
        blocks.append(Block.of(CapsuleGather, inputs=(ends[-1], *skipped)))
    blocks.append(Block.of(class_capsules, in_caps=plan.class_in_caps, in_dim=plan.class_in_dim,
                           num_classes=num_classes, class_dim=class_dim, iterations=plan.iterations))
    return tuple(blocks)


class NASCapsSpace(ModelSpace):
    """NASCaps' space of CapsNet- and DeepCaps-style networks, for NNI's multi-trial strategies.

    A network is: optional x2 bilinear input resize; 1-8 (NASCaps: 3-6) convolutions with
    batch norm and ReLU ("same" padding); then either the **CapsNet** family — primary
    capsules, ``caps_layers - 2`` :class:`~nni_capsnas.modules.ConvCaps2d` layers — or the
    **DeepCaps** family — :class:`~nni_capsnas.modules.CapsCell` cells on the feature maps
    seen as 1-D capsules, the last with 3D dynamic routing on its skip branch, optionally
    an extra skip from an earlier cell to the class capsules; finally fully connected
    class capsules (:class:`~nni_capsnas.modules.ClassCaps`) with dynamic routing.
    ``forward`` returns the class capsules ``(batch, num_classes, class_dim)``;
    ``decoder`` (or ``None``) reconstructs the input for the training loss.

    Labels (each a :class:`nni.mutable.Categorical` over the named argument; ``i``, ``j``
    and ``k`` run up to the largest depth, so the set of labels is fixed):

    ==========================================  ======================  ======================================
    label                                       candidates              meaning
    ==========================================  ======================  ======================================
    ``family``                                  ``families``            ``"capsnet"`` or ``"deepcaps"``
    ``input_resize``                            ``input_resizes``       1 (none) or 2 (x2 upsampling)
    ``conv_depth``                              ``conv_depths``         number of convolutions
    ``conv{i}_channels/_kernel/_stride``        ``conv_*``              convolution ``i`` (1-based)
    ``caps_layers``                             ``caps_layers``         capsule layers incl. primary and class
    ``caps{j}_count/_dim/_kernel/_stride``      ``caps_*``              capsule layer ``j`` (1 = primary)
    ``deepcaps_cells``                          ``deepcaps_cells``      number of cells
    ``deepcaps_caps``, ``deepcaps_dim``         ``deepcaps_caps/_dims`` capsule types and length of every cell
    ``deepcaps_skip``                           ``0 .. min(cells)-1``   extra skip from ``skip`` cells before
                                                                        the last (0: none)
    ``cell{k}_stride``                          ``deepcaps_strides``    stride of cell ``k``
    ``routing_iterations``                      ``routing_iterations``  routing of class capsules and 3D cell
    ==========================================  ======================  ======================================

    The ``caps*`` labels exist only if ``"capsnet"`` is among ``families``, the
    ``deepcaps*``/``cell*`` labels only if ``"deepcaps"`` is. Genes of layers beyond the
    sampled depth, and of the family not sampled, are ignored.

    Validity: every convolution is "same"-padded, so sizes follow ``ceil(size / stride)``;
    a stride of 2 is clamped to 1 when it would leave a map smaller than the smallest
    kernel of the space (:attr:`NASCapsOptions.min_map_size`), and a kernel larger than
    its input map is clamped to the largest odd size that fits. Every sample is therefore
    a valid network, and :meth:`plan_for` gives the architecture it really builds.

    Parameters
    ----------
    input_shape
        ``(channels, height, width)`` of the images (the resize is part of the network).
    num_classes
        Number of classes (class capsules).
    families
        Families to search, a subset of ``("capsnet", "deepcaps")``.
    input_resizes
        Candidate input scale factors, from ``{1, 2}``.
    conv_depths, conv_kernels, conv_strides, conv_channels
        Candidate numbers of convolutions (1-8), their kernels (odd), strides (1 or 2) and
        output channels.
    caps_layers, caps_counts, caps_dims, caps_kernels, caps_strides
        CapsNet family: candidate numbers of capsule layers counting primary and class
        capsules (2-8, as NASCaps' genes count them), capsule types and lengths, kernels
        (odd) and strides (1 or 2) of the convolutional capsule layers.
    deepcaps_cells, deepcaps_caps, deepcaps_dims, deepcaps_strides
        DeepCaps family: candidate numbers of cells (1-8), capsule types and lengths shared
        by all cells, and strides of each cell's first convolution (kernels are 3).
    routing_iterations
        Candidate routing iterations of the class capsules (and of the last cell).
    class_dim
        Length of the class capsules (fixed; the decoder reads them).
    decoder
        Add the reconstruction decoder.
    decoder_hidden
        Hidden widths of the decoder.

    Attributes
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` the networks take (used for ONNX export).
    plan : NASCapsPlan
        The architecture this instance built (the default sample for the space itself).
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 families: Sequence[str] = FAMILIES, input_resizes: Sequence[int] = (1, 2),
                 conv_depths: Sequence[int] = (3, 4, 5, 6), conv_kernels: Sequence[int] = (3, 5, 9),
                 conv_strides: Sequence[int] = (1, 2), conv_channels: Sequence[int] = (4, 8, 16, 32, 64),
                 caps_layers: Sequence[int] = (2, 3, 4, 5, 6), caps_counts: Sequence[int] = (4, 8, 16),
                 caps_dims: Sequence[int] = (4, 8), caps_kernels: Sequence[int] = (3, 5, 9),
                 caps_strides: Sequence[int] = (1, 2), deepcaps_cells: Sequence[int] = (4, 5, 6, 7, 8),
                 deepcaps_caps: Sequence[int] = (4, 8, 16), deepcaps_dims: Sequence[int] = (4, 8),
                 deepcaps_strides: Sequence[int] = (1, 2), routing_iterations: Sequence[int] = (1, 2, 3),
                 class_dim: int = 16, decoder: bool = True, decoder_hidden: Sequence[int] = (64, 128)) -> None:
        super().__init__()
        self.input_shape = check_shape(input_shape)
        self.num_classes = check_positive("num_classes", num_classes)
        self.class_dim = check_positive("class_dim", class_dim)
        hidden = tuple(check_candidates("decoder_hidden", decoder_hidden)) if decoder else ()
        self.options = make_options(families, dict(
            input_resizes=input_resizes, conv_depths=conv_depths, conv_kernels=conv_kernels,
            conv_strides=conv_strides, conv_channels=conv_channels, caps_layers=caps_layers,
            caps_counts=caps_counts, caps_dims=caps_dims, caps_kernels=caps_kernels, caps_strides=caps_strides,
            deepcaps_cells=deepcaps_cells, deepcaps_caps=deepcaps_caps, deepcaps_dims=deepcaps_dims,
            deepcaps_strides=deepcaps_strides, routing_iterations=routing_iterations))
        values = register_labels(self, declare_labels(self.options))
        self.plan = make_plan(self.options, values, self.input_shape)
        _logger.debug("NASCaps architecture: %s", self.plan)
        self._build(self.plan, class_dim)
        self.decoder = (ReconstructionDecoder(num_caps=self.num_classes, caps_dim=class_dim,
                                              output_shape=self.input_shape, hidden=hidden)
                        if decoder else None)

    def _build(self, plan: NASCapsPlan, class_dim: int) -> None:
        self.resize = input_resize(plan.input_resize)
        blocks, channels = [], self.input_shape[0]
        for spec in plan.convs:
            blocks.append(conv_block(channels, spec))
            channels = spec.channels
        self.convs = nn.Sequential(*blocks)
        if plan.family == "capsnet":
            self.body: nn.Module = CapsNetBody(channels, plan.caps)
        else:
            self.body = DeepCapsBody(channels, plan.cells, plan.skip, plan.iterations)
        self.class_caps = class_capsules(plan.class_in_caps, plan.class_in_dim, self.num_classes, class_dim,
                                         plan.iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_caps(self.body(self.convs(self.resize(x))))

    def plan_for(self, sample: Mapping[str, Any]) -> NASCapsPlan:
        """The architecture ``sample`` builds, without building it (for de-duplication).

        Raises
        ------
        nni.mutable.SampleValidationError
            If ``sample`` misses a label or has a value outside its candidates.
        """
        self.validate(dict(sample))
        return make_plan(self.options, sample, self.input_shape)

    def cost_blocks(self, sample: Mapping[str, Any]) -> tuple[Block, ...]:
        """The network ``sample`` builds, as blocks for the pre-training estimate (:func:`plan_blocks`).

        Raises
        ------
        nni.mutable.SampleValidationError
            If ``sample`` misses a label or has a value outside its candidates.
        """
        return plan_blocks(self.plan_for(sample), self.input_shape[0], self.num_classes, self.class_dim)

    def freeze(self, sample: Mapping[str, Any]) -> "NASCapsSpace":
        """Build the network of ``sample`` (a value for every label of :meth:`simplify`)."""
        self.validate(dict(sample))
        with model_context(dict(sample)):
            return self.__class__(*self.trace_args, **self.trace_kwargs)

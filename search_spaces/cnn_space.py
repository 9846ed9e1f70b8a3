"""A traditional convolutional network space, so CNNs compete with capsule networks.

Built like :mod:`search_spaces.nascaps_space`: every decision is a labelled
:class:`nni.mutable.Categorical` registered on the space, ``__init__`` builds the network
the sampled values describe, and decisions that would shrink a map below the kernels are
clamped, so every sample is a valid network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import nni
import torch
from nni.mutable import Categorical
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import model_context
from torch import nn

from nni_capsnas.blocks import Block
from nni_capsnas.modules import check_positive
from ._geometry import check_shape, fit_kernel, fit_stride, same_size
from .nascaps_space import MAX_STACK, check_candidates, check_names, register_labels

_logger = logging.getLogger(__name__)

POOLINGS = ("none", "max", "avg")
"""Pooling after a block: none, or 2x2 max/average pooling with stride 2."""

MAX_FC_LAYERS = 4
"""Upper bound of the searched number of hidden fully connected layers."""

_POOL_LAYERS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


@dataclass(frozen=True)
class CNNOptions:
    """Validated candidate lists of :class:`CNNSpace` (see its parameters)."""

    depths: tuple[int, ...]
    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    poolings: tuple[str, ...]
    fc_layers: tuple[int, ...]
    fc_widths: tuple[int, ...]


@dataclass(frozen=True)
class BlockSpec:
    """Convolution + batch norm + ReLU (+ pooling); ``size`` is the block's output size."""

    channels: int
    kernel: int
    stride: int
    pool: str
    size: tuple[int, int]


@dataclass(frozen=True)
class CNNPlan:
    """The concrete architecture a sample describes, after clamping (hashable)."""

    blocks: tuple[BlockSpec, ...]
    fc_widths: tuple[int, ...]
    features: int


def make_cnn_options(*, depths: Any, channels: Any, kernels: Any, strides: Any, poolings: Any,
                     fc_layers: Any, fc_widths: Any) -> CNNOptions:
    """Validate the candidate lists (``ValueError`` naming the argument)."""
    return CNNOptions(
        depths=tuple(check_candidates("depths", depths, high=MAX_STACK)),
        channels=tuple(check_candidates("channels", channels)),
        kernels=tuple(check_candidates("kernels", kernels, odd=True)),
        strides=tuple(check_candidates("strides", strides, high=2)),
        poolings=tuple(check_names("poolings", poolings, POOLINGS)),
        fc_layers=tuple(check_candidates("fc_layers", fc_layers, low=0, high=MAX_FC_LAYERS)),
        fc_widths=tuple(check_candidates("fc_widths", fc_widths)))


def declare_cnn_labels(opts: CNNOptions) -> dict[str, Categorical]:
    """Every label of the space, as ``nni.choice`` over the candidate lists."""
    candidates: dict[str, Sequence[Any]] = {"cnn_depth": opts.depths}
    for i in range(1, max(opts.depths) + 1):
        candidates.update({f"cnn{i}_channels": opts.channels, f"cnn{i}_kernel": opts.kernels,
                           f"cnn{i}_stride": opts.strides, f"cnn{i}_pool": opts.poolings})
    candidates["fc_layers"] = opts.fc_layers
    for j in range(1, max(opts.fc_layers) + 1):
        candidates[f"fc{j}_width"] = opts.fc_widths
    return {label: nni.choice(label, list(values)) for label, values in candidates.items()}


def make_cnn_plan(opts: CNNOptions, values: Mapping[str, Any], input_shape: Sequence[int]) -> CNNPlan:
    """Turn label values into the concrete, clamped architecture.

    Strides and poolings that would leave a map smaller than the smallest kernel are
    dropped; kernels larger than their input map shrink to the largest odd size that fits.
    """
    height, width = input_shape[1], input_shape[2]
    min_size = min(opts.kernels)
    blocks = []
    for i in range(1, values["cnn_depth"] + 1):
        kernel = fit_kernel(values[f"cnn{i}_kernel"], height, width)
        stride = fit_stride(values[f"cnn{i}_stride"], height, width, min_size)
        height, width = same_size(height, stride), same_size(width, stride)
        pool = values[f"cnn{i}_pool"]
        if pool != "none" and min(height // 2, width // 2) < min_size:
            pool = "none"
        if pool != "none":
            height, width = height // 2, width // 2
        blocks.append(BlockSpec(values[f"cnn{i}_channels"], kernel, stride, pool, (height, width)))
    fc = tuple(values[f"fc{j}_width"] for j in range(1, values["fc_layers"] + 1))
    return CNNPlan(tuple(blocks), fc, blocks[-1].channels * height * width)


def cnn_block(in_channels: int, spec: BlockSpec) -> nn.Sequential:
    """Convolution ("same" padding, no bias) + batch norm + ReLU, then optional 2x2 pooling."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, spec.channels, spec.kernel, stride=spec.stride, padding=spec.kernel // 2, bias=False),
        nn.BatchNorm2d(spec.channels), nn.ReLU(inplace=True)]
    if spec.pool != "none":
        layers.append(_POOL_LAYERS[spec.pool](2))
    return nn.Sequential(*layers)


def mlp_head(features: int, hidden: Sequence[int], num_classes: int) -> nn.Sequential:
    """Flatten, ``len(hidden)`` Linear + ReLU layers, then the output Linear layer (logits)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class CNNSpace(ModelSpace):
    """A space of plain CNNs: conv blocks then a fully connected head; returns logits.

    Block ``i`` is a "same"-padded convolution (no bias), batch norm, ReLU and optionally
    2x2 max or average pooling; the head flattens the last map and applies 0 to
    ``max(fc_layers)`` hidden Linear + ReLU layers before the output layer. ``decoder`` is
    ``None`` (no reconstruction loss).

    Labels (each a :class:`nni.mutable.Categorical`; ``i`` runs to ``max(depths)``, ``j``
    to ``max(fc_layers)``, so the set of labels is fixed):

    ================================  ==============  ============================================
    label                             candidates      meaning
    ================================  ==============  ============================================
    ``cnn_depth``                     ``depths``      number of conv blocks
    ``cnn{i}_channels``               ``channels``    output channels of block ``i`` (1-based)
    ``cnn{i}_kernel``                 ``kernels``     kernel of block ``i``
    ``cnn{i}_stride``                 ``strides``     stride of block ``i``
    ``cnn{i}_pool``                   ``poolings``    ``"none"``, ``"max"`` or ``"avg"``
    ``fc_layers``                     ``fc_layers``   hidden fully connected layers
    ``fc{j}_width``                   ``fc_widths``   width of hidden layer ``j``
    ================================  ==============  ============================================

    Validity: a stride of 2 or a pooling is dropped when it would leave a map smaller than
    the smallest kernel candidate, and a kernel larger than its input map shrinks to the
    largest odd size that fits, so every sample is a valid network; :meth:`plan_for` gives
    the architecture a sample really builds. Genes of blocks beyond ``cnn_depth`` and of
    hidden layers beyond ``fc_layers`` are ignored.

    Parameters
    ----------
    input_shape
        ``(channels, height, width)`` of the images.
    num_classes
        Number of classes (logits).
    depths
        Candidate numbers of conv blocks (1-8).
    channels, kernels, strides, poolings
        Candidate output channels, kernels (odd), strides (1 or 2) and poolings of a block.
    fc_layers, fc_widths
        Candidate numbers of hidden fully connected layers (0-4) and their widths.

    Attributes
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` the networks take (used for ONNX export).
    plan : CNNPlan
        The architecture this instance built.
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 depths: Sequence[int] = (2, 3, 4, 5), channels: Sequence[int] = (8, 16, 32, 64),
                 kernels: Sequence[int] = (3, 5), strides: Sequence[int] = (1, 2),
                 poolings: Sequence[str] = POOLINGS, fc_layers: Sequence[int] = (0, 1, 2),
                 fc_widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        self.input_shape = check_shape(input_shape)
        self.num_classes = check_positive("num_classes", num_classes)
        self.options = make_cnn_options(depths=depths, channels=channels, kernels=kernels, strides=strides,
                                        poolings=poolings, fc_layers=fc_layers, fc_widths=fc_widths)
        values = register_labels(self, declare_cnn_labels(self.options))
        self.plan = make_cnn_plan(self.options, values, self.input_shape)
        _logger.debug("CNN architecture: %s", self.plan)
        blocks, in_channels = [], self.input_shape[0]
        for spec in self.plan.blocks:
            blocks.append(cnn_block(in_channels, spec))
            in_channels = spec.channels
        self.features = nn.Sequential(*blocks)
        self.head = mlp_head(self.plan.features, self.plan.fc_widths, self.num_classes)
        self.decoder: Optional[nn.Module] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def plan_for(self, sample: Mapping[str, Any]) -> CNNPlan:
        """The architecture ``sample`` builds, without building it (for de-duplication)."""
        self.validate(dict(sample))
        return make_cnn_plan(self.options, sample, self.input_shape)

    def cost_blocks(self, sample: Mapping[str, Any]) -> tuple[Block, ...]:
        """The network ``sample`` builds, as blocks for the pre-training estimate (:mod:`nni_capsnas.blocks`):
        each conv block, then the head (the modules ``__init__`` builds, in ``forward``'s order)."""
        plan = self.plan_for(sample)
        blocks, in_channels = [], self.input_shape[0]
        for spec in plan.blocks:
            blocks.append(Block.of(cnn_block, in_channels=in_channels, spec=spec))
            in_channels = spec.channels
        blocks.append(Block.of(mlp_head, features=plan.features, hidden=plan.fc_widths, num_classes=self.num_classes))
        return tuple(blocks)

    def freeze(self, sample: Mapping[str, Any]) -> "CNNSpace":
        """Build the network of ``sample`` (a value for every label of :meth:`simplify`)."""
        self.validate(dict(sample))
        with model_context(dict(sample)):
            return self.__class__(*self.trace_args, **self.trace_kwargs)

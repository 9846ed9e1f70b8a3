"""A one-shot capsule cell space: searched convolutional and capsule operations, searched capsule sizes."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import nni
import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from nni_capsnas.blocks import Block
from nni_capsnas.modules import (
    ClassCaps, ConvCaps2d, ConvCaps3d, FlattenCaps, PrimaryCaps, ReconstructionDecoder, capsule_oneshot_hooks,
    check_positive,
)
from ._geometry import check_input_shape, conv_output_size


def _conv_bn_relu(channels: int, kernel_size: int, dilation: int = 1) -> nn.Module:
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(channels), nn.ReLU())


def _sep_conv(channels: int, kernel_size: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                                   bias=False),
                         nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())


#: Feature-map operations: name -> factory(channels); each keeps ``(batch, channels, H, W)``.
#: Convolutions as in DARTS; the pooling operations are NASNet's (Zoph et al. 2018: max pooling
#: over 3x3, 5x5 and 7x7 windows, average pooling over 3x3), all with stride 1.
FEATURE_OPS: dict[str, Callable[[int], nn.Module]] = {
    "conv3x3": lambda c: _conv_bn_relu(c, 3),
    "conv5x5": lambda c: _conv_bn_relu(c, 5),
    "sep_conv3x3": lambda c: _sep_conv(c, 3),
    "dil_conv3x3": lambda c: _conv_bn_relu(c, 3, dilation=2),
    "max_pool3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "max_pool5x5": lambda c: nn.MaxPool2d(5, stride=1, padding=2),
    "max_pool7x7": lambda c: nn.MaxPool2d(7, stride=1, padding=3),
    "avg_pool3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "skip": lambda c: nn.Identity(),
}

#: Capsule-grid operations: name -> factory(caps, dim); each keeps ``(batch, caps, dim, H, W)``.
#: ``caps`` and ``dim`` are the searched primary-capsule choices, so these layers are searched
#: (and weight-shared) through the capsule modules' one-shot hooks.
CAPSULE_OPS: dict[str, Callable[[Any, Any], nn.Module]] = {
    "conv_caps": lambda caps, dim: ConvCaps2d(in_caps=caps, in_dim=dim, out_caps=caps, out_dim=dim, kernel_size=3),
    "conv_caps3d": lambda caps, dim: ConvCaps3d(in_caps=caps, in_dim=dim, out_caps=caps, out_dim=dim, kernel_size=3,
                                                iterations=2),
    "skip": lambda caps, dim: nn.Identity(),
}


def stem_block(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    """The fixed 3x3 stem: convolution (no bias), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(channels), nn.ReLU())


def stem_and_feature(in_channels: int, channels: int, stride: int, feature_op: str) -> nn.Sequential:
    """The stem and a feature operation, one block: a pooling reads the stem's ReLU, and the two element-wise
    layers merge (see :mod:`hw_estimators.onnx_fusion`)."""
    return nn.Sequential(stem_block(in_channels, channels, stride), FEATURE_OPS[feature_op](channels))


def capsule_and_flatten(capsule_op: str, caps: int, dim: int) -> nn.Sequential:
    """A capsule operation and the flattening after it, one block: ``ConvCaps3d`` ends with a permutation that
    the exporter merges with the flattening's."""
    return nn.Sequential(CAPSULE_OPS[capsule_op](caps, dim), FlattenCaps())


def _check_names(name: str, chosen: Sequence[str], registry: dict) -> list[str]:
    names = list(chosen)
    unknown = [n for n in names if n not in registry]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"{name} must be distinct names from {sorted(registry)}, got {tuple(chosen)!r}")
    return names


class CapsuleCellSpace(ModelSpace):
    """stem -> [feature op] -> primary capsules -> [capsule op] -> class capsules.

    Searched (labels in brackets): the feature-map operation ``[feature_op]`` (convolutions,
    separable and dilated convolutions, max and average pooling, skip), the number
    ``[primary_caps]`` and length ``[primary_dim]`` of the primary capsules (which also size the capsule operation and
    the class capsules' input), the capsule-grid operation ``[capsule_op]`` (a 2D capsule
    convolution, a 3D one with routing, or skip) and the routing iterations of the class
    capsules ``[routing_iterations]``. Operations are chosen with ``LayerChoice``; capsule
    sizes are mutable arguments that one-shot strategies weight-share through
    :func:`~nni_capsnas.modules.capsule_oneshot_hooks` (DARTS, GumbelDARTS, RandomOneShot,
    E2RNAS). Multi-trial strategies work as well.

    Parameters
    ----------
    input_shape
        ``(channels, height, width)`` of the images.
    num_classes
        Number of classes.
    stem_channels, stem_stride
        Width and stride of the (fixed) 3x3 stem convolution.
    feature_ops, capsule_ops
        Candidate operation names (keys of :data:`FEATURE_OPS`, :data:`CAPSULE_OPS`).
    primary_caps, primary_dim, routing_iterations
        Candidate values.
    primary_stride
        Stride of the 3x3 primary-capsule convolution.
    class_dim
        Length of the class capsules.
    decoder
        Add the reconstruction decoder (its loss is used by the capsule training loss).
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, stem_channels: int = 16,
                 stem_stride: int = 1, feature_ops: Sequence[str] = tuple(FEATURE_OPS),
                 primary_caps: Sequence[int] = (4, 8), primary_dim: Sequence[int] = (4, 8), primary_stride: int = 2,
                 capsule_ops: Sequence[str] = tuple(CAPSULE_OPS), routing_iterations: Sequence[int] = (1, 3),
                 class_dim: int = 8, decoder: bool = False) -> None:
        super().__init__()
        channels, height, width = check_input_shape(tuple(input_shape))
        for name, value in [("num_classes", num_classes), ("stem_channels", stem_channels),
                            ("stem_stride", stem_stride), ("primary_stride", primary_stride),
                            ("class_dim", class_dim)]:
            check_positive(name, value)
        for name, values in [("primary_caps", primary_caps), ("primary_dim", primary_dim),
                             ("routing_iterations", routing_iterations)]:
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} needs distinct candidate values, got {tuple(values)!r}")
            for value in values:
                check_positive(name, value)
        feature_names = _check_names("feature_ops", feature_ops, FEATURE_OPS)
        capsule_names = _check_names("capsule_ops", capsule_ops, CAPSULE_OPS)
        self.input_shape = (channels, height, width)
        self.num_classes = num_classes
        self.stem_channels, self.stem_stride, self.primary_stride = stem_channels, stem_stride, primary_stride
        self.class_dim = class_dim
        grid = self._grid()

        caps = nni.choice("primary_caps", list(primary_caps))
        dim = nni.choice("primary_dim", list(primary_dim))
        self.stem = stem_block(channels, stem_channels, stem_stride)
        self.feature = LayerChoice({name: FEATURE_OPS[name](stem_channels) for name in feature_names},
                                   label="feature_op")
        self.primary = PrimaryCaps(in_channels=stem_channels, out_caps=caps, caps_dim=dim, kernel_size=3,
                                   stride=primary_stride, padding=1)
        self.capsule = LayerChoice({name: CAPSULE_OPS[name](caps, dim) for name in capsule_names},
                                   label="capsule_op")
        self.flatten = FlattenCaps()
        self.class_caps = ClassCaps(in_caps=caps * grid[0] * grid[1], in_dim=dim, out_caps=num_classes,
                                    out_dim=class_dim,
                                    iterations=nni.choice("routing_iterations", list(routing_iterations)))
        self.decoder = (ReconstructionDecoder(num_caps=num_classes, caps_dim=class_dim,
                                              output_shape=self.input_shape, hidden=(64, 128))
                        if decoder else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature(self.stem(x))
        return self.class_caps(self.flatten(self.capsule(self.primary(x))))

    def _grid(self) -> tuple[int, int]:
        """Height and width of the primary capsule grid."""
        _, height, width = self.input_shape
        size = [conv_output_size(length, 3, self.stem_stride, 1) for length in (height, width)]
        return conv_output_size(size[0], 3, self.primary_stride, 1), conv_output_size(size[1], 3, self.primary_stride, 1)

    def cost_blocks(self, sample: Mapping[str, Any]) -> tuple[Block, ...]:
        """The network ``sample`` builds, as blocks for the pre-training estimate (:mod:`nni_capsnas.blocks`): the
        stem with the feature operation, the primary capsules, the capsule operation with the flattening, and
        the class capsules (the modules ``__init__`` builds, in ``forward``'s order).

        Raises
        ------
        nni.mutable.SampleValidationError
            If ``sample`` misses a label or has a value outside its candidates.
        """
        self.validate(dict(sample))
        caps, dim = sample["primary_caps"], sample["primary_dim"]
        height, width = self._grid()
        return (Block.of(stem_and_feature, in_channels=self.input_shape[0], channels=self.stem_channels,
                         stride=self.stem_stride, feature_op=sample["feature_op"]),
                Block.of(PrimaryCaps, in_channels=self.stem_channels, out_caps=caps, caps_dim=dim, kernel_size=3,
                         stride=self.primary_stride, padding=1),
                Block.of(capsule_and_flatten, capsule_op=sample["capsule_op"], caps=caps, dim=dim),
                Block.of(ClassCaps, in_caps=caps * height * width, in_dim=dim, out_caps=self.num_classes,
                         out_dim=self.class_dim, iterations=sample["routing_iterations"]))

    @classmethod
    def extra_oneshot_hooks(cls, strategy: Any) -> list[Callable]:
        return capsule_oneshot_hooks(strategy)

"""Reference capsule networks built only from :mod:`nni_capsnas.modules`."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nni_capsnas.modules import (
    CapsCell, ClassCaps, FlattenCaps, PrimaryCaps, ReconstructionDecoder, check_positive,
)
from ._geometry import check_input_shape, conv_output_size


class CapsNet(nn.Module):
    """Sabour et al. (2017): conv, primary capsules, class capsules with routing, decoder.

    ``forward`` returns the class capsules ``(batch, num_classes, class_dim)``; their
    lengths are the class scores. ``self.decoder`` reconstructs the input from masked
    class capsules (used by the training loss).
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 conv_channels: int = 256, conv_kernel: int = 9, primary_caps: int = 32,
                 primary_dim: int = 8, primary_kernel: int = 9, primary_stride: int = 2,
                 class_dim: int = 16, iterations: int = 3, decoder: bool = True) -> None:
        super().__init__()
        channels, height, width = check_input_shape(tuple(input_shape))
        check_positive("num_classes", num_classes)
        # Channels-last, so that its (ReLU) output is in the layout the primary capsules' kernel-row
        # GEMMs read, without a transpose either way.
        self.conv1 = nn.Conv2d(channels, conv_channels, conv_kernel).to(memory_format=torch.channels_last)
        self.primary = PrimaryCaps(in_channels=conv_channels, out_caps=primary_caps, caps_dim=primary_dim,
                                   kernel_size=primary_kernel, stride=primary_stride)
        h = conv_output_size(conv_output_size(height, conv_kernel), primary_kernel, primary_stride)
        w = conv_output_size(conv_output_size(width, conv_kernel), primary_kernel, primary_stride)
        self.flatten = FlattenCaps()
        self.class_caps = ClassCaps(in_caps=primary_caps * h * w, in_dim=primary_dim,
                                    out_caps=num_classes, out_dim=class_dim, iterations=iterations)
        self.decoder = (ReconstructionDecoder(num_caps=num_classes, caps_dim=class_dim,
                                              output_shape=(channels, height, width))
                        if decoder else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        return self.class_caps(self.flatten(self.primary(x)))


class DeepCaps(nn.Module):
    """DeepCaps (Rajasegaran et al. 2019): conv stem, four capsule cells, class capsules.

    The stem's 128 feature maps become 128 one-dimensional capsules; cells 1-4 map them
    to 32x4, 32x8, 32x8 and 32x8 capsules, halving the grid each time; the last cell's
    skip branch uses 3D convolutional capsules with dynamic routing.
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 stem_channels: int = 128, cell_caps: Sequence[tuple[int, int]] = ((32, 4), (32, 8), (32, 8), (32, 8)),
                 class_dim: int = 16, iterations: int = 3, decoder: bool = True) -> None:
        super().__init__()
        channels, height, width = check_input_shape(tuple(input_shape))
        check_positive("num_classes", num_classes)
        self.stem = nn.Sequential(nn.Conv2d(channels, stem_channels, 3, padding=1),
                                  nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True))
        cells = []
        in_caps, in_dim = stem_channels, 1
        for index, (out_caps, out_dim) in enumerate(cell_caps):
            cells.append(CapsCell(in_caps=in_caps, in_dim=in_dim, out_caps=out_caps, out_dim=out_dim,
                                  stride=2, routing_skip=index == len(cell_caps) - 1, iterations=iterations))
            in_caps, in_dim = out_caps, out_dim
            height, width = conv_output_size(height, 3, 2, 1), conv_output_size(width, 3, 2, 1)
        self.cells = nn.Sequential(*cells)
        self.flatten = FlattenCaps()
        self.class_caps = ClassCaps(in_caps=in_caps * height * width, in_dim=in_dim,
                                    out_caps=num_classes, out_dim=class_dim, iterations=iterations)
        self.decoder = (ReconstructionDecoder(num_caps=num_classes, caps_dim=class_dim,
                                              output_shape=tuple(input_shape))
                        if decoder else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x.unsqueeze(2)  # 128 capsules of dimension 1
        return self.class_caps(self.flatten(self.cells(x)))


def capsnet(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, **kwargs) -> CapsNet:
    """Sabour et al.'s CapsNet for ``input_shape`` and ``num_classes`` (see :class:`CapsNet`)."""
    return CapsNet(input_shape=input_shape, num_classes=num_classes, **kwargs)


def deepcaps(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, **kwargs) -> DeepCaps:
    """DeepCaps for ``input_shape`` and ``num_classes`` (see :class:`DeepCaps`)."""
    return DeepCaps(input_shape=input_shape, num_classes=num_classes, **kwargs)

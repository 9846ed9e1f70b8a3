"""DeepCaps' 2D convolutional capsules (Rajasegaran et al. 2019, "Conv2DCaps")."""

from __future__ import annotations

import torch
from torch import nn
from .base import CapsuleModule

from ._checks import check_positive, check_rank, check_sizes
from .squash import squash


class ConvCaps2d(CapsuleModule):
    """Convolution over a capsule grid, without routing.

    Parameters
    ----------
    in_caps, in_dim
        Capsule types and vector length of the input grid.
    out_caps, out_dim
        Capsule types and vector length of the output grid.
    kernel_size
        Kernel size; padding is ``kernel_size // 2`` ("same" for odd kernels).
    stride
        Convolution stride.

    Notes
    -----
    Input ``(batch, in_caps, in_dim, H, W)``; output ``(batch, out_caps, out_dim, H', W')``.
    """

    def __init__(self, *, in_caps: int, in_dim: int, out_caps: int, out_dim: int,
                 kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        for name, value in [("in_caps", in_caps), ("in_dim", in_dim), ("out_caps", out_caps),
                            ("out_dim", out_dim), ("kernel_size", kernel_size), ("stride", stride)]:
            check_positive(name, value)
        self.in_caps = in_caps
        self.in_dim = in_dim
        self.out_caps = out_caps
        self.out_dim = out_dim
        self.conv = nn.Conv2d(in_caps * in_dim, out_caps * out_dim, kernel_size,
                              stride=stride, padding=kernel_size // 2)

    def capsule_axes(self) -> dict[str, dict[int, tuple[int, int]]]:
        """Parameter axes laid out as (capsule types, capsule dim), for weight sharing."""
        out_layout, in_layout = (self.out_caps, self.out_dim), (self.in_caps, self.in_dim)
        return {"conv.weight": {0: out_layout, 1: in_layout}, "conv.bias": {0: out_layout}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rank("x", x, 5, "(batch, in_caps, in_dim, height, width)")
        check_sizes("x", x, [(1, self.in_caps, "in_caps"), (2, self.in_dim, "in_dim")])
        batch, _, _, height, width = x.shape
        y = self.conv(x.reshape(batch, self.in_caps * self.in_dim, height, width))
        y = y.view(batch, self.out_caps, self.out_dim, y.shape[2], y.shape[3])
        return squash(y, dim=2)

"""Primary capsules: a convolution whose channels are grouped into capsule vectors."""

from __future__ import annotations

import torch
from torch import nn
from .base import CapsuleModule

from ._checks import check_positive, check_rank, check_sizes
from .squash import squash
from .strided_conv import conv2d, is_row_gemm_sized


class PrimaryCaps(CapsuleModule):
    """Convolutional primary capsules (Sabour et al. 2017).

    Every argument is keyword-only and may be an ``nni.choice``.

    Parameters
    ----------
    in_channels
        Channels of the input feature map.
    out_caps
        Number of capsule types (capsule "channels").
    caps_dim
        Length of each capsule vector.
    kernel_size
        Convolution kernel size.
    stride
        Convolution stride.
    padding
        Zero padding on each side.

    Notes
    -----
    Input ``(batch, in_channels, H, W)``; output the squashed capsule grid
    ``(batch, out_caps, caps_dim, H', W')``.
    """

    def __init__(self, *, in_channels: int, out_caps: int, caps_dim: int, kernel_size: int,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        for name, value in [("in_channels", in_channels), ("out_caps", out_caps),
                            ("caps_dim", caps_dim), ("kernel_size", kernel_size), ("stride", stride)]:
            check_positive(name, value)
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        self.in_channels = in_channels
        self.out_caps = out_caps
        self.caps_dim = caps_dim
        self.conv = nn.Conv2d(in_channels, out_caps * caps_dim, kernel_size, stride=stride, padding=padding)
        if is_row_gemm_sized(self.conv.weight):  # kernel rows as views, gradient without a transpose
            self.conv.to(memory_format=torch.channels_last)

    def capsule_axes(self) -> dict[str, dict[int, tuple[int, int]]]:
        """Parameter axes laid out as (capsule types, capsule dim), for weight sharing."""
        layout = (self.out_caps, self.caps_dim)
        return {"conv.weight": {0: layout}, "conv.bias": {0: layout}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rank("x", x, 4, "(batch, in_channels, height, width)")
        check_sizes("x", x, [(1, self.in_channels, "in_channels")])
        # Same result as self.conv(x); large kernels run as kernel-row GEMMs on the CPU.
        y = conv2d(x, self.conv.weight, self.conv.bias, stride=self.conv.stride[0],
                   padding=self.conv.padding[0])
        y = y.view(y.shape[0], self.out_caps, self.caps_dim, y.shape[2], y.shape[3])
        return squash(y, dim=2)

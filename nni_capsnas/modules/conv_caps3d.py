"""DeepCaps' 3D convolutional capsules with dynamic routing ("ConvCaps3D")."""

from __future__ import annotations

import torch
from torch import nn
from .base import CapsuleModule

from ._checks import check_positive, check_rank, check_sizes
from .routing import dynamic_routing


class ConvCaps3d(CapsuleModule):
    """Votes from a 3D convolution shared by all input capsule types, routed per position.

    A single 3D kernel of depth ``in_dim`` slides over every input capsule type, so each
    type ``i`` casts a vote ``u_hat[i, j]`` for every output type ``j`` at every position;
    the votes are routed by agreement over ``i`` independently at each position.

    Parameters
    ----------
    in_caps, in_dim
        Capsule types and vector length of the input grid.
    out_caps, out_dim
        Capsule types and vector length of the output grid.
    kernel_size
        Spatial kernel size (padding ``kernel_size // 2``, stride 1).
    iterations
        Routing iterations (at least 1).

    Notes
    -----
    Input ``(batch, in_caps, in_dim, H, W)``; output ``(batch, out_caps, out_dim, H, W)``.
    """

    def __init__(self, *, in_caps: int, in_dim: int, out_caps: int, out_dim: int,
                 kernel_size: int = 3, iterations: int = 3) -> None:
        super().__init__()
        for name, value in [("in_caps", in_caps), ("in_dim", in_dim), ("out_caps", out_caps),
                            ("out_dim", out_dim), ("kernel_size", kernel_size),
                            ("iterations", iterations)]:
            check_positive(name, value)
        self.in_caps = in_caps
        self.in_dim = in_dim
        self.out_caps = out_caps
        self.out_dim = out_dim
        self.iterations = iterations
        pad = kernel_size // 2
        self.conv = nn.Conv3d(1, out_caps * out_dim, (in_dim, kernel_size, kernel_size),
                              stride=(in_dim, 1, 1), padding=(0, pad, pad))

    def capsule_axes(self) -> dict[str, dict[int, tuple[int, int]]]:
        """Parameter axes laid out as (capsule types, capsule dim), for weight sharing."""
        layout = (self.out_caps, self.out_dim)
        return {"conv.weight": {0: layout}, "conv.bias": {0: layout}}

    def votes(self, x: torch.Tensor) -> torch.Tensor:
        """Votes of shape ``(batch, in_caps, out_caps, out_dim, H, W)``."""
        check_rank("x", x, 5, "(batch, in_caps, in_dim, height, width)")
        check_sizes("x", x, [(1, self.in_caps, "in_caps"), (2, self.in_dim, "in_dim")])
        batch, _, _, height, width = x.shape
        y = self.conv(x.reshape(batch * self.in_caps, 1, self.in_dim, height, width))
        return y.view(batch, self.in_caps, self.out_caps, self.out_dim, y.shape[-2], y.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u_hat = self.votes(x)
        batch, in_caps, out_caps, out_dim, height, width = u_hat.shape
        per_position = u_hat.permute(0, 4, 5, 1, 2, 3).reshape(batch * height * width, in_caps, out_caps, out_dim)
        v = dynamic_routing(per_position, self.iterations)
        return v.view(batch, height, width, out_caps, out_dim).permute(0, 3, 4, 1, 2)

"""DeepCaps cell: three 2D capsule convolutions plus a skip branch."""

from __future__ import annotations

import torch
from .base import CapsuleModule

from .conv_caps2d import ConvCaps2d
from .conv_caps3d import ConvCaps3d


class CapsCell(CapsuleModule):
    """A DeepCaps cell (Rajasegaran et al. 2019, Fig. 2).

    ``x1 = l1(x)`` (stride ``stride``), then ``l3(l2(x1)) + skip(x1)``, where ``skip`` is
    a 2D capsule convolution, or a 3D one with dynamic routing when ``routing_skip`` is set
    (DeepCaps uses it in the last cell).

    Parameters
    ----------
    in_caps, in_dim, out_caps, out_dim
        Capsule types and vector lengths of input and output grids.
    kernel_size
        Kernel size of every convolution in the cell.
    stride
        Stride of the first convolution.
    routing_skip
        Use :class:`ConvCaps3d` (routing) on the skip branch.
    iterations
        Routing iterations of the 3D skip branch.
    """

    def __init__(self, *, in_caps: int, in_dim: int, out_caps: int, out_dim: int,
                 kernel_size: int = 3, stride: int = 2, routing_skip: bool = False,
                 iterations: int = 3) -> None:
        super().__init__()
        common = dict(out_caps=out_caps, out_dim=out_dim, kernel_size=kernel_size)
        self.l1 = ConvCaps2d(in_caps=in_caps, in_dim=in_dim, stride=stride, **common)
        self.l2 = ConvCaps2d(in_caps=out_caps, in_dim=out_dim, **common)
        self.l3 = ConvCaps2d(in_caps=out_caps, in_dim=out_dim, **common)
        if routing_skip:
            self.skip = ConvCaps3d(in_caps=out_caps, in_dim=out_dim, iterations=iterations, **common)
        else:
            self.skip = ConvCaps2d(in_caps=out_caps, in_dim=out_dim, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.l1(x)
        return self.l3(self.l2(x1)) + self.skip(x1)

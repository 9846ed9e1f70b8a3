"""NNI's DARTS cell space (``nni.nas.hub.pytorch.DARTS``) for small and grey-scale images.

The hub space is built for CIFAR (3 channels; its ``dataset="cifar"`` stem keeps the spatial
size and two reduction cells halve it twice) and always has 10 classes. This wrapper adapts the
input: grey-scale images are replicated to 3 channels (parameter-free, exact), other channel
counts go through a learned 1x1 convolution. Any image of at least 4x4 pixels works (8x8
digits end in 2x2 maps, 28x28 MNIST in 7x7). Freezing re-creates the hub space with the
sample, so exported architectures retrain with ``space.freeze(sample)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from nni.nas.hub.pytorch import DARTS as DartsHubSpace
from nni.nas.nn.pytorch import ModelSpace
from torch import nn

from nni_capsnas.modules import check_positive
from ._geometry import check_input_shape


class _RepeatChannels(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1)


class DartsCellSpace(ModelSpace):
    """NNI's DARTS cell space with an input adapter (see the module docstring).

    Labels are the hub space's: ``normal/op_<node>_<k>``, ``normal/input_<node>_<k>`` and the
    same for ``reduce``. One-shot strategies (DARTS, E2RNAS) search them through
    ``DifferentiableMixedCell``, one architecture parameter per cell edge.

    Parameters
    ----------
    input_shape
        ``(channels, height, width)``; height and width at least 4.
    num_classes
        Must be 10 (the hub space's CIFAR head).
    width
        Channels of the first cell (the hub's ``width``; keep it small on CPUs).
    num_cells
        Cells in total (split over three stages).
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, width: int = 4,
                 num_cells: int = 3) -> None:
        super().__init__()
        channels, height, width_px = check_input_shape(tuple(input_shape))
        if num_classes != 10:
            raise ValueError(f"num_classes must be 10 (NNI's DARTS hub space has a 10-class CIFAR head), "
                             f"got {num_classes}")
        if min(height, width_px) < 4:
            raise ValueError(f"images must be at least 4x4 (two reduction cells), got {height}x{width_px}")
        check_positive("width", width)
        check_positive("num_cells", num_cells)
        if num_cells < 3:
            raise ValueError(f"num_cells must be at least 3 (one per stage), got {num_cells}")
        self.input_shape = (channels, height, width_px)
        self.num_classes = num_classes
        if channels == 3:
            self.adapter: nn.Module = nn.Identity()
        elif channels == 1:
            self.adapter = _RepeatChannels(3)
        else:
            self.adapter = nn.Conv2d(channels, 3, 1)
        self.body = DartsHubSpace(width=width, num_cells=num_cells, dataset="cifar")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.adapter(x))

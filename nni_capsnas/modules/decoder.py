"""Reconstruction decoder (Sabour et al. 2017, Fig. 2)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ._checks import check_positive, check_rank


class ReconstructionDecoder(nn.Module):
    """Fully connected decoder from masked class capsules back to the input image.

    Parameters
    ----------
    num_caps, caps_dim
        Shape of the class capsules it reads.
    output_shape
        Image shape ``(channels, height, width)`` to reconstruct (pixels in [0, 1]).
    hidden
        Hidden layer widths.
    """

    def __init__(self, *, num_caps: int, caps_dim: int, output_shape: Sequence[int],
                 hidden: Sequence[int] = (512, 1024)) -> None:
        super().__init__()
        check_positive("num_caps", num_caps)
        check_positive("caps_dim", caps_dim)
        self.output_shape = tuple(int(s) for s in output_shape)
        widths = [num_caps * caps_dim, *hidden]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True)]
        layers += [nn.Linear(widths[-1], math.prod(self.output_shape)), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, masked_caps: torch.Tensor) -> torch.Tensor:
        check_rank("masked_caps", masked_caps, 3, "(batch, caps, dim)")
        return self.net(masked_caps.flatten(1)).view(-1, *self.output_shape)

"""Fully connected capsules with dynamic routing (Sabour et al. 2017, "DigitCaps")."""

from __future__ import annotations

import torch
from torch import nn
from .base import CapsuleModule

from ._checks import check_positive, check_rank, check_sizes
from .routing import dynamic_routing


class ClassCaps(CapsuleModule):
    """Capsules fully connected to every input capsule, routed by agreement.

    Parameters
    ----------
    in_caps
        Number of input capsules.
    in_dim
        Length of the input capsule vectors.
    out_caps
        Number of output capsules (classes when last).
    out_dim
        Length of the output capsule vectors.
    iterations
        Routing iterations (at least 1).

    Notes
    -----
    Input ``(batch, in_caps, in_dim)``; output ``(batch, out_caps, out_dim)``. The votes
    ``u_hat[b, i, j] = W[i, j] u[b, i]`` are one batched matrix product over ``i``, never
    an expanded copy of the weight per sample.
    """

    def __init__(self, *, in_caps: int, in_dim: int, out_caps: int, out_dim: int,
                 iterations: int = 3) -> None:
        super().__init__()
        for name, value in [("in_caps", in_caps), ("in_dim", in_dim), ("out_caps", out_caps),
                            ("out_dim", out_dim), ("iterations", iterations)]:
            check_positive(name, value)
        self.in_caps = in_caps
        self.in_dim = in_dim
        self.out_caps = out_caps
        self.out_dim = out_dim
        self.iterations = iterations
        self.weight = nn.Parameter(0.01 * torch.randn(in_caps, in_dim, out_caps * out_dim))

    def capsule_axes(self) -> dict[str, dict[int, tuple[int, int]]]:
        """Parameter axes laid out as (capsule types, capsule dim), for weight sharing."""
        return {"weight": {2: (self.out_caps, self.out_dim)}}

    def votes(self, u: torch.Tensor) -> torch.Tensor:
        """Prediction vectors ``u_hat`` of shape ``(batch, in_caps, out_caps, out_dim)``."""
        check_rank("u", u, 3, "(batch, in_caps, in_dim)")
        check_sizes("u", u, [(1, self.in_caps, "in_caps"), (2, self.in_dim, "in_dim")])
        batch = u.shape[0]
        # (in_caps, batch, in_dim) @ (in_caps, in_dim, out_caps*out_dim)
        u_hat = torch.bmm(u.transpose(0, 1), self.weight)
        # Stored as (batch, out_caps, in_caps, out_dim), the layout routing contracts in.
        u_hat = u_hat.view(self.in_caps, batch, self.out_caps, self.out_dim).permute(1, 2, 0, 3).contiguous()
        return u_hat.transpose(1, 2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return dynamic_routing(self.votes(u), self.iterations)

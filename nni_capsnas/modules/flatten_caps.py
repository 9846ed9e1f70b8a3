"""Flatten a capsule grid into a list of capsules."""

from __future__ import annotations

import torch
from .base import CapsuleModule

from ._checks import check_rank


class FlattenCaps(CapsuleModule):
    """Turn ``(batch, caps, dim, H, W)`` into ``(batch, caps * H * W, dim)``.

    The capsule type is the outermost index, so the first capsules belong to the first
    capsule types (one-shot supernets rely on this when they mask unused types).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rank("x", x, 5, "(batch, caps, dim, height, width)")
        batch, caps, dim, height, width = x.shape
        return x.permute(0, 1, 3, 4, 2).reshape(batch, caps * height * width, dim)

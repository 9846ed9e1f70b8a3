"""The capsule non-linearity of Sabour et al. (2017), eq. 1."""

from __future__ import annotations

import torch


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Shrink vectors to a length in [0, 1) while keeping their direction.

    ``v = |s|^2 / (1 + |s|^2) * s / sqrt(|s|^2 + eps)``. The epsilon sits inside the
    square root, so the gradient stays finite at ``s = 0`` and the result is exactly 0 there.
    Half-precision inputs (mixed-precision training) are squashed in float32, where ``eps`` and
    small squared norms do not round to zero, and returned in their own precision.

    Parameters
    ----------
    s
        Input capsules; the vector runs along ``dim``.
    dim
        Dimension holding the capsule vector.
    eps
        Small positive number added under the square root.

    Returns
    -------
    torch.Tensor
        Tensor of the same shape as ``s``.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    wide = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
    squared_norm = (wide * wide).sum(dim=dim, keepdim=True)
    scale = squared_norm / (1.0 + squared_norm) / torch.sqrt(squared_norm + eps)
    return (wide * scale).to(s.dtype)

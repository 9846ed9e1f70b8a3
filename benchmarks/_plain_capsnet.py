"""A plain PyTorch CapsNet: the baseline ``capsnet_speed.py --device cuda`` measures ours against.

Sabour et al.'s network written the way public PyTorch implementations write it: NCHW
convolutions, votes from one ``einsum`` against a ``(in_caps, out_caps, out_dim, in_dim)``
weight, routing by broadcast multiply-and-sum with autograd's backward, the decoder on the
masked class capsules, Adam with PyTorch's default (``foreach``) update. The loss is the same
margin + reconstruction loss as ours (``trials.losses.ClassificationLoss``), so both networks do
the same training step.
"""

from __future__ import annotations

import torch
from torch import nn


def plain_squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    squared_norm = (s * s).sum(dim=dim, keepdim=True)
    return squared_norm / (1 + squared_norm) * s / torch.sqrt(squared_norm + 1e-8)


class PlainCapsNet(nn.Module):
    """Conv 256@9x9, 32x8D primary capsules 9x9 stride 2, 10x16D class capsules, 3 routing iterations."""

    def __init__(self, num_classes: int = 10, iterations: int = 3) -> None:
        super().__init__()
        self.iterations = iterations
        self.conv1 = nn.Conv2d(1, 256, 9)
        self.primary = nn.Conv2d(256, 32 * 8, 9, stride=2)
        self.weight = nn.Parameter(0.01 * torch.randn(32 * 6 * 6, num_classes, 16, 8))
        self.decoder = nn.Sequential(nn.Flatten(), nn.Linear(16 * num_classes, 512), nn.ReLU(), nn.Linear(512, 1024),
                                     nn.ReLU(), nn.Linear(1024, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        u = self.primary(torch.relu(self.conv1(x)))                       # (B, 256, 6, 6)
        u = u.view(batch, 32, 8, 6, 6).permute(0, 1, 3, 4, 2).reshape(batch, -1, 8)
        u = plain_squash(u)                                                # (B, 1152, 8)
        u_hat = torch.einsum("ijkl,bil->bijk", self.weight, u)            # (B, 1152, 10, 16)
        logits = torch.zeros(u_hat.shape[:3], device=x.device, dtype=u_hat.dtype)
        for iteration in range(self.iterations):
            couplings = torch.softmax(logits, dim=2)
            v = plain_squash((couplings.unsqueeze(-1) * u_hat).sum(dim=1))  # (B, 10, 16)
            if iteration + 1 < self.iterations:
                logits = logits + (u_hat * v.unsqueeze(1)).sum(dim=-1)
        return v

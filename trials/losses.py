"""Losses and predictions for both capsule networks and plain classifiers.

A model's output is either class capsules ``(batch, classes, dim)`` (their lengths are the
scores) or logits ``(batch, classes)``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nni_capsnas.modules import MarginLoss, class_scores, mask_capsules

__all__ = ["ClassificationLoss", "class_scores"]


class ClassificationLoss(nn.Module):
    """Margin loss plus weighted reconstruction error for capsules; cross-entropy for logits.

    Parameters
    ----------
    reconstruction_weight
        Weight of the summed squared reconstruction error (Sabour et al. use 0.0005).
    """

    def __init__(self, *, reconstruction_weight: float = 0.0005) -> None:
        super().__init__()
        if reconstruction_weight < 0:
            raise ValueError(f"reconstruction_weight must be >= 0, got {reconstruction_weight}")
        self.margin = MarginLoss()
        self.reconstruction_weight = reconstruction_weight

    def forward(self, output: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                decoder: Optional[nn.Module] = None) -> torch.Tensor:
        if output.dim() == 2:
            return nn.functional.cross_entropy(output, labels)
        loss = self.margin(class_scores(output), labels)
        if decoder is not None and self.reconstruction_weight > 0:
            reconstruction = decoder(mask_capsules(output, labels))
            error = ((reconstruction - images) ** 2).flatten(1).sum(dim=1).mean()
            loss = loss + self.reconstruction_weight * error
        return loss

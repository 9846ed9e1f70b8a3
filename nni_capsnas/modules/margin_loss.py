"""Margin loss for class capsules (Sabour et al. 2017, eq. 4)."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_rank


class MarginLoss(nn.Module):
    """``T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2``, summed over classes.

    Parameters
    ----------
    m_plus, m_minus
        Margins for the present and absent classes.
    down_weight
        ``lambda``, the weight of absent classes.
    """

    def __init__(self, *, m_plus: float = 0.9, m_minus: float = 0.1, down_weight: float = 0.5) -> None:
        super().__init__()
        if not 0 <= m_minus < m_plus <= 1:
            raise ValueError(f"margins must satisfy 0 <= m_minus < m_plus <= 1, got m_minus={m_minus}, m_plus={m_plus}")
        self.m_plus = m_plus
        self.m_minus = m_minus
        self.down_weight = down_weight

    def forward(self, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch.

        Parameters
        ----------
        lengths
            Class capsule lengths ``(batch, classes)``.
        labels
            Integer class labels ``(batch,)``.
        """
        check_rank("lengths", lengths, 2, "(batch, classes)")
        if labels.shape != (lengths.shape[0],):
            raise ValueError(f"labels must have shape ({lengths.shape[0]},), got {tuple(labels.shape)}")
        present = torch.nn.functional.one_hot(labels, lengths.shape[1]).to(lengths.dtype)
        loss = present * torch.relu(self.m_plus - lengths) ** 2
        loss = loss + self.down_weight * (1 - present) * torch.relu(lengths - self.m_minus) ** 2
        return loss.sum(dim=1).mean()

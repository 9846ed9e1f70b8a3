"""Routing-by-agreement (Sabour et al. 2017, Procedure 1)."""

from __future__ import annotations

import torch

from ._checks import check_positive, check_rank
from .squash import squash


def dynamic_routing(u_hat: torch.Tensor, iterations: int) -> torch.Tensor:
    """Route prediction vectors to output capsules by agreement.

    Logits ``b`` start at zero; in every iteration the coupling coefficients are
    ``c = softmax(b)`` over the *output* capsules, ``v = squash(sum_i c_ij u_hat_ij)``,
    and, between iterations, ``b_ij += <u_hat_ij, v_j>``.

    Parameters
    ----------
    u_hat
        Prediction vectors of shape ``(batch, in_caps, out_caps, out_dim)``.
    iterations
        Number of routing iterations, at least 1.

    Returns
    -------
    torch.Tensor
        Output capsules ``v`` of shape ``(batch, out_caps, out_dim)``.
    """
    check_rank("u_hat", u_hat, 4, "(batch, in_caps, out_caps, out_dim)")
    check_positive("iterations", iterations)
    # Work in (batch, out_caps, in_caps, out_dim) layout: both contractions are then plain
    # batched matrix products without a copy of u_hat per iteration (votes from ClassCaps already
    # come in this layout, so the transpose below is free for them).
    votes = u_hat.transpose(1, 2).contiguous()
    logits = votes.new_zeros(votes.shape[:3])  # (batch, out_caps, in_caps)
    for iteration in range(iterations):
        coupling = torch.softmax(logits, dim=1)
        v = squash(torch.matmul(coupling.unsqueeze(2), votes).squeeze(2))
        if iteration + 1 < iterations:
            logits = logits + torch.matmul(votes, v.unsqueeze(-1)).squeeze(-1)
    return v

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
    logits = u_hat.new_zeros(u_hat.shape[:3])
    for iteration in range(iterations):
        coupling = torch.softmax(logits, dim=2)
        v = squash(torch.einsum("bij,bijd->bjd", coupling, u_hat))
        if iteration + 1 < iterations:
            logits = logits + torch.einsum("bijd,bjd->bij", u_hat, v)
    return v

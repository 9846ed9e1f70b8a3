"""Routing-by-agreement (Sabour et al. 2017, Procedure 1)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ._checks import check_positive, check_rank
from ._eager import runs_eagerly
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
    if torch.is_grad_enabled() and votes.requires_grad and runs_eagerly(votes):
        return _RoutingWithFusedBackward.apply(votes, iterations)
    _, _, outputs = _routing_iterations(votes, iterations)
    return outputs[-1]


def _routing_iterations(votes: torch.Tensor, iterations: int) -> tuple[list[torch.Tensor], ...]:
    """Procedure 1 on votes ``(batch, out_caps, in_caps, dim)``: every iteration's couplings
    ``(batch, out_caps, in_caps)``, weighted sums and outputs ``(batch, out_caps, dim)``."""
    logits = votes.new_zeros(votes.shape[:3])
    couplings, sums, outputs = [], [], []
    for iteration in range(iterations):
        couplings.append(torch.softmax(logits, dim=1))
        sums.append(torch.matmul(couplings[-1].unsqueeze(2), votes).squeeze(2))
        outputs.append(squash(sums[-1]))
        if iteration + 1 < iterations:
            logits = logits + torch.matmul(votes, outputs[-1].unsqueeze(-1)).squeeze(-1)
    return couplings, sums, outputs


class _RoutingWithFusedBackward(torch.autograd.Function):
    """:func:`_routing_iterations` with a hand-written backward that writes the votes' gradient once.

    Autograd's backward of the loop materialises one votes-sized gradient per contraction
    (``2 * iterations - 1`` of them) and adds them up. All of them are rank-one in the capsule
    dimension per ``(batch, out_caps)`` pair, so they are gathered as coefficient columns
    ``(batch, out_caps, in_caps, K)`` and rows ``(batch, out_caps, K, out_dim)`` and multiplied
    once: ``dvotes = sum_t c_t (x) ds_t + sum_t da_t (x) v_t``. Saves only the small per-iteration
    tensors (couplings, sums, outputs) besides the votes. First-order only.
    """

    @staticmethod
    def forward(ctx, votes: torch.Tensor, iterations: int) -> torch.Tensor:
        couplings, sums, outputs = _routing_iterations(votes, iterations)
        ctx.iterations = iterations
        ctx.save_for_backward(votes, *couplings, *sums, *outputs)
        return outputs[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        iterations = ctx.iterations
        votes, *saved = ctx.saved_tensors
        couplings, sums = saved[:iterations], saved[iterations:2 * iterations]
        outputs = saved[2 * iterations:]
        columns, rows = [], []
        grad_agreement = None  # dL/da_t for a_t = <votes, v_t>, which the logits b_{t+1} add up
        for iteration in reversed(range(iterations)):
            if grad_agreement is None:
                grad_v = grad_output
            else:  # v_t reached the loss only through the agreement a_t
                grad_v = torch.matmul(grad_agreement.unsqueeze(2), votes).squeeze(2)
                columns.append(grad_agreement)
                rows.append(outputs[iteration])
            grad_s = _squash_backward(sums[iteration], grad_v)
            columns.append(couplings[iteration])
            rows.append(grad_s)
            if iteration == 0:  # the first logits are the constant zero
                break
            grad_coupling = torch.matmul(votes, grad_s.unsqueeze(-1)).squeeze(-1)
            coupling = couplings[iteration]
            grad_logits = coupling * (grad_coupling - (coupling * grad_coupling).sum(dim=1, keepdim=True))
            grad_agreement = grad_logits if grad_agreement is None else grad_agreement + grad_logits
        # columns stacked as (batch, out_caps, K, in_caps): a contiguous stack, read transposed
        grad_votes = torch.matmul(torch.stack(columns, dim=2).transpose(-1, -2), torch.stack(rows, dim=-2))
        return grad_votes, None


def _squash_backward(s: torch.Tensor, grad_v: torch.Tensor) -> torch.Tensor:
    """Vector-Jacobian product of :func:`squash` along the last dimension (small tensors)."""
    with torch.enable_grad():
        s = s.detach().requires_grad_()
        (grad_s,) = torch.autograd.grad(squash(s), s, grad_v)
    return grad_s

"""``dynamic_routing`` against a loop-by-loop reference of Sabour et al.'s Procedure 1."""

from __future__ import annotations

import math

import pytest
import torch

from nni_capsnas.modules import dynamic_routing


EPS = 1e-8  # squash's documented default, inside the square root


def _reference_squash(s: list[float]) -> list[float]:
    norm2 = sum(x * x for x in s)
    scale = norm2 / (1 + norm2) / math.sqrt(norm2 + EPS)
    return [x * scale for x in s]


def _reference_routing(u_hat: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedure 1 with explicit loops; returns ``v`` and the last coupling coefficients."""
    u = u_hat.tolist()
    batch, in_caps, out_caps, out_dim = u_hat.shape
    v_all, c_all = [], []
    for b in range(batch):
        logits = [[0.0] * out_caps for _ in range(in_caps)]
        v: list[list[float]] = []
        c: list[list[float]] = []
        for iteration in range(iterations):
            c = []
            for i in range(in_caps):
                top = max(logits[i])
                exps = [math.exp(logits[i][j] - top) for j in range(out_caps)]
                total = sum(exps)
                c.append([e / total for e in exps])
            v = []
            for j in range(out_caps):
                s = [0.0] * out_dim
                for i in range(in_caps):
                    for d in range(out_dim):
                        s[d] += c[i][j] * u[b][i][j][d]
                v.append(_reference_squash(s))
            if iteration + 1 < iterations:
                for i in range(in_caps):
                    for j in range(out_caps):
                        logits[i][j] += sum(u[b][i][j][d] * v[j][d] for d in range(out_dim))
        v_all.append(v)
        c_all.append(c)
    return torch.tensor(v_all, dtype=u_hat.dtype), torch.tensor(c_all, dtype=u_hat.dtype)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_matches_loop_reference(iterations: int) -> None:
    u_hat = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    expected, _ = _reference_routing(u_hat, iterations)
    actual = dynamic_routing(u_hat, iterations)
    assert actual.shape == (3, 4, 5)
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-13)


def test_routing_iterations_change_the_result() -> None:
    u_hat = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    one, three = dynamic_routing(u_hat, 1), dynamic_routing(u_hat, 3)
    assert not torch.allclose(one, three)


def test_one_iteration_is_squash_of_the_uniform_mean() -> None:
    u_hat = torch.randn(2, 7, 3, 4, dtype=torch.float64)
    s = u_hat.sum(dim=1) / 3  # uniform coupling 1/out_caps
    norm2 = (s * s).sum(-1, keepdim=True)
    torch.testing.assert_close(dynamic_routing(u_hat, 1), s * norm2 / (1 + norm2) / (norm2 + EPS).sqrt(),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_coupling_sums_to_one_over_output_capsules(iterations: int) -> None:
    """Recover the coupling of a tiny case from the output and check it is a distribution.

    One input capsule casting positive scalar votes ``u_j`` to four output capsules gives
    ``v_j = squash(c_j u_j)``; inverting the increasing 1-D squash (by bisection) yields
    ``c_j = s_j / u_j``.
    """
    votes = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    v = dynamic_routing(votes.view(1, 1, 4, 1), iterations).view(4)
    low, high = torch.zeros_like(v), torch.full_like(v, 10.0)
    for _ in range(200):
        mid = (low + high) / 2
        too_small = mid ** 3 / (1 + mid ** 2) / torch.sqrt(mid ** 2 + EPS) < v
        low, high = torch.where(too_small, mid, low), torch.where(too_small, high, mid)
    coupling = low / votes
    assert float(coupling.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((coupling > 0).all())
    if iterations == 1:
        torch.testing.assert_close(coupling, torch.full_like(coupling, 0.25), rtol=0, atol=1e-12)
    else:  # agreement moved the coupling towards the longest vote
        assert bool((coupling[1:] > coupling[:-1]).all())


def test_routing_coupling_is_softmax_over_output_capsules() -> None:
    """A single input capsule with two output capsules, worked out by hand.

    After one update the logits are ``<u_j, v_j>``; the coupling is a softmax over the two
    *outputs* (summing to one), so ``v_j = squash(c_j u_j)``. A softmax over the input
    capsules instead would give ``c = 1`` for both and a different result.
    """
    u1, u2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64)
    u_hat = torch.stack([u1, u2])[None, None]  # (1, 1, 2, 2)

    def sq(s: torch.Tensor) -> torch.Tensor:
        n2 = (s * s).sum()
        return s * n2 / (1 + n2) / (n2 + EPS).sqrt()

    v1, v2 = sq(0.5 * u1), sq(0.5 * u2)
    logits = torch.stack([u1 @ v1, u2 @ v2])
    c = torch.softmax(logits, dim=0)
    assert float(c.sum()) == pytest.approx(1.0)
    expected = torch.stack([sq(c[0] * u1), sq(c[1] * u2)])[None]
    torch.testing.assert_close(dynamic_routing(u_hat, 2), expected, rtol=1e-12, atol=1e-12)


def test_routing_with_identical_votes_keeps_uniform_coupling() -> None:
    # one input capsule voting the same vector for all three outputs: every logit grows
    # by the same agreement, so the softmax over outputs stays 1/3 for any iteration count
    u = torch.randn(4, dtype=torch.float64)
    u_hat = u.expand(1, 1, 3, 4).clone()
    s = u / 3
    n2 = (s * s).sum()
    expected = (s * n2 / (1 + n2) / (n2 + EPS).sqrt()).expand(1, 3, 4)
    for iterations in (1, 3):
        torch.testing.assert_close(dynamic_routing(u_hat, iterations), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("iterations", [1, 3])
def test_routing_output_lengths_are_below_one(iterations: int) -> None:
    u_hat = 50 * torch.randn(4, 10, 6, 8)
    lengths = dynamic_routing(u_hat, iterations).norm(dim=-1)
    assert bool((lengths < 1).all())
    assert bool((lengths >= 0).all())


def test_routing_is_differentiable_with_finite_gradient() -> None:
    u_hat = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: dynamic_routing(u, 3), (u_hat,))


@pytest.mark.parametrize("iterations", [0, -1, 1.5, True])
def test_routing_rejects_bad_iterations(iterations: object) -> None:
    with pytest.raises(ValueError, match="iterations"):
        dynamic_routing(torch.randn(1, 2, 3, 4), iterations)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 4, 5), (4,)])
def test_routing_rejects_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"u_hat must have 4 dimensions"):
        dynamic_routing(torch.randn(*shape), 3)


@pytest.mark.parametrize("iterations", [1, 2, 3, 4])
def test_fused_backward_gives_autograd_gradients(monkeypatch, iterations: int) -> None:
    from nni_capsnas.modules import routing

    generator = torch.Generator().manual_seed(iterations)
    u_hat = torch.randn(3, 7, 4, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    grad_v = torch.randn(3, 4, 5, dtype=torch.float64, generator=generator)

    fused = dynamic_routing(u_hat, iterations)
    assert "FusedBackward" in type(fused.grad_fn).__name__
    (fused_grad,) = torch.autograd.grad(fused, u_hat, grad_v)

    monkeypatch.setattr(routing, "runs_eagerly", lambda tensor: False)  # the plain loop, autograd's backward
    plain = dynamic_routing(u_hat, iterations)
    assert "FusedBackward" not in type(plain.grad_fn).__name__
    (plain_grad,) = torch.autograd.grad(plain, u_hat, grad_v)

    torch.testing.assert_close(fused, plain, rtol=0, atol=0)
    torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda votes: dynamic_routing(votes, iterations), (u_hat,))


def test_fused_backward_refuses_a_second_derivative() -> None:
    """No silently wrong second derivative: differentiating the gradient again raises."""
    u_hat = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(dynamic_routing(u_hat, 3).sum(), u_hat, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_inference_uses_the_plain_loop() -> None:
    u_hat = torch.randn(2, 5, 3, 4, requires_grad=True)
    with torch.no_grad():
        assert dynamic_routing(u_hat, 3).grad_fn is None
    assert "FusedBackward" not in type(dynamic_routing(u_hat.detach(), 3).grad_fn).__name__

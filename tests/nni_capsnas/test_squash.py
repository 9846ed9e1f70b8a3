"""Properties of the capsule non-linearity ``squash``."""

from __future__ import annotations

import pytest
import torch

from nni_capsnas.modules import squash

EPS = 1e-8


def _random_vectors(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64) * 3


def test_squash_keeps_shape_and_direction() -> None:
    s = _random_vectors(5, 7, 6)
    v = squash(s)
    assert v.shape == s.shape
    cosine = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=0, atol=1e-12)


def test_squash_length_is_squared_norm_over_one_plus_squared_norm() -> None:
    s = _random_vectors(64, 8)
    norm2 = (s * s).sum(-1)
    expected = norm2 / (1 + norm2) * torch.sqrt(norm2) / torch.sqrt(norm2 + EPS)
    torch.testing.assert_close(squash(s, eps=EPS).norm(dim=-1), expected, rtol=1e-12, atol=1e-12)
    # and, away from zero, eps is negligible
    torch.testing.assert_close(squash(s).norm(dim=-1), norm2 / (1 + norm2), rtol=1e-6, atol=0)


def test_squash_lengths_stay_below_one() -> None:
    s = _random_vectors(100, 4) * 100
    assert bool((squash(s).norm(dim=-1) < 1).all())


def test_squash_maps_zero_to_exact_zero_with_finite_gradient() -> None:
    s = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    v = squash(s)
    assert bool((v == 0).all())
    v.sum().backward()
    assert s.grad is not None
    assert bool(torch.isfinite(s.grad).all())


def test_squash_gradient_is_finite_for_mixed_zero_and_nonzero_capsules() -> None:
    s = torch.zeros(2, 4, dtype=torch.float32)
    s[1] = torch.tensor([1.0, -2.0, 0.5, 3.0])
    s.requires_grad_(True)
    (squash(s) ** 2).sum().backward()
    assert bool(torch.isfinite(s.grad).all())
    assert bool((s.grad[1] != 0).any())


def test_squash_length_is_monotone_in_input_length() -> None:
    direction = torch.nn.functional.normalize(_random_vectors(1, 5), dim=-1)
    scales = torch.linspace(0.0, 50.0, 401, dtype=torch.float64)[:, None]
    lengths = squash(scales * direction).norm(dim=-1)
    assert bool((lengths[1:] > lengths[:-1]).all())
    assert float(lengths[0]) == 0.0


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2, -3])
def test_squash_works_along_any_dim(dim: int) -> None:
    s = _random_vectors(3, 4, 5)
    moved = squash(s.movedim(dim, -1), dim=-1).movedim(-1, dim)
    torch.testing.assert_close(squash(s, dim=dim), moved, rtol=0, atol=1e-14)
    # each vector along ``dim`` has the squash length
    norm2 = (s * s).sum(dim)
    torch.testing.assert_close(squash(s, dim=dim).norm(dim=dim), norm2 / (1 + norm2), rtol=1e-6, atol=0)


@pytest.mark.parametrize("eps", [0.0, -1e-3])
def test_squash_rejects_non_positive_eps(eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        squash(torch.ones(2, 3), eps=eps)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_squash_keeps_zero_and_tiny_vectors_finite(dtype: torch.dtype) -> None:
    """Mixed-precision training: eps would round to zero in float16, and 0/0 poison the gradients."""
    s = torch.tensor([[0.0, 0.0], [1e-4, 0.0], [3.0, 4.0]], dtype=dtype, requires_grad=True)
    v = squash(s)
    assert v.dtype == dtype
    v.float().sum().backward()
    assert bool(torch.isfinite(v).all()) and bool(torch.isfinite(s.grad).all())
    reference = squash(s.detach().double())
    torch.testing.assert_close(v.double(), reference, rtol=1e-2, atol=1e-6)

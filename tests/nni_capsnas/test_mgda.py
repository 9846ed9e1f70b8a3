"""MGDA min-norm solver and gradient normalisation, against brute force and known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from nni_capsnas.strategy.mgda import (
    NORMALIZATIONS, mgda_weights, min_norm_weights, normalize_gradients, project_to_simplex,
)


def _point(gradients: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return weights.to(torch.float64) @ gradients.to(torch.float64)


def _assert_on_simplex(weights: torch.Tensor) -> None:
    assert weights.dtype == torch.float64
    assert bool((weights >= 0).all())
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)


def _grid_min_norm(gradients: torch.Tensor, step: float) -> float:
    """Smallest |sum w_i g_i|^2 over a dense simplex grid (brute force, vectorised)."""
    k = gradients.shape[0]
    gram = (gradients @ gradients.T).double().numpy()
    ticks = np.arange(0, 1 + step / 2, step)
    heads = np.stack(np.meshgrid(*([ticks] * (k - 1)), indexing="ij"), axis=-1).reshape(-1, k - 1)
    heads = heads[heads.sum(axis=1) <= 1 + 1e-12]
    points = np.concatenate([heads, np.clip(1 - heads.sum(axis=1, keepdims=True), 0, None)], axis=1)
    return float(np.einsum("ni,ij,nj->n", points, gram, points).min())


def _scipy_min_norm(gradients: torch.Tensor) -> float:
    gram = (gradients @ gradients.T).double().numpy()
    k = gram.shape[0]
    best = float("inf")
    for start in [np.full(k, 1 / k), *np.eye(k)]:
        result = minimize(lambda w: w @ gram @ w, start, jac=lambda w: 2 * gram @ w, method="SLSQP",
                          bounds=[(0, 1)] * k, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                          options={"ftol": 1e-15, "maxiter": 1000})
        best = min(best, float(result.fun))
    return best


# --- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_orthogonal_unit_gradients_get_equal_weights(k: int) -> None:
    weights = min_norm_weights(torch.eye(k)[:, :k])
    _assert_on_simplex(weights)
    assert torch.allclose(weights, torch.full((k,), 1 / k, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_colinear_opposing_gradients_give_the_zero_vector(scale: float) -> None:
    g = torch.tensor([1.0, -2.0, 0.5])
    weights = min_norm_weights(torch.stack([g, -scale * g]))
    _assert_on_simplex(weights)
    assert torch.allclose(weights, torch.tensor([scale / (1 + scale), 1 / (1 + scale)], dtype=torch.float64))
    assert float(_point(torch.stack([g, -scale * g]), weights).norm()) < 1e-9


def test_a_gradient_on_the_hull_of_the_others_is_the_min_norm_point() -> None:
    # g3 = (g1 + g2) / 2 lies on the segment of the two others, at its closest point to 0
    gradients = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    weights = min_norm_weights(gradients)
    _assert_on_simplex(weights)
    assert torch.allclose(_point(gradients, weights), torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-9)


def test_a_vertex_closest_to_the_origin_takes_all_the_weight() -> None:
    # g1 . (g_j - g1) >= 0 for every j: the min-norm point is g1 itself
    gradients = torch.tensor([[1.0, 1.0], [2.0, 3.0], [3.0, 1.0]])
    assert torch.allclose(min_norm_weights(gradients), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-9)


def test_three_gradients_whose_hull_contains_the_origin() -> None:
    # 120 degrees apart: the origin is the centroid, reached with equal weights
    angles = torch.tensor([0.0, 2.0943951, 4.1887902])
    gradients = torch.stack([angles.cos(), angles.sin()], dim=1)
    weights = min_norm_weights(gradients)
    assert torch.allclose(weights, torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-6)
    assert float(_point(gradients, weights).norm()) < 1e-6


def test_two_gradients_closed_form() -> None:
    g1, g2 = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0])
    # gamma = (g2.g2 - g1.g2) / |g1 - g2|^2 = 1 / 10
    assert torch.allclose(min_norm_weights(torch.stack([g1, g2])), torch.tensor([0.1, 0.9], dtype=torch.float64))


def test_single_and_all_zero_gradients() -> None:
    assert torch.equal(min_norm_weights(torch.tensor([[1.0, 2.0]])), torch.tensor([1.0], dtype=torch.float64))
    assert torch.allclose(min_norm_weights(torch.zeros(4, 3)), torch.full((4,), 0.25, dtype=torch.float64))


def test_list_of_shaped_gradients_is_flattened() -> None:
    gradients = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    assert torch.allclose(min_norm_weights(gradients), torch.tensor([0.5, 0.5], dtype=torch.float64))


# --- brute force -----------------------------------------------------------------------------


@pytest.mark.parametrize("k, dims, step", [(2, 4, 0.001), (3, 5, 0.004), (3, 2, 0.004)])
def test_min_norm_matches_a_dense_simplex_grid(k: int, dims: int, step: float) -> None:
    generator = torch.Generator().manual_seed(k * 10 + dims)
    for _ in range(5):
        gradients = torch.randn(k, dims, generator=generator, dtype=torch.float64)
        weights = min_norm_weights(gradients)
        _assert_on_simplex(weights)
        ours = float(_point(gradients, weights).norm() ** 2)
        grid = _grid_min_norm(gradients, step)
        assert ours <= grid + 1e-12  # never worse than any grid point
        assert ours == pytest.approx(grid, rel=0.02, abs=1e-4)  # and the grid gets close to it


@pytest.mark.parametrize("k, trials", [(3, 10), (4, 10), (6, 6), (12, 3)])  # k = 12: projected gradient
def test_min_norm_matches_scipy(k: int, trials: int) -> None:
    generator = torch.Generator().manual_seed(k)
    for trial in range(trials):
        dims = 2 if trial % 2 else 8  # low dimension: the origin often lies inside the hull
        gradients = torch.randn(k, dims, generator=generator, dtype=torch.float64) + 0.5 * (trial % 3)
        weights = min_norm_weights(gradients)
        _assert_on_simplex(weights)
        ours = float(_point(gradients, weights).norm() ** 2)
        assert ours <= _scipy_min_norm(gradients) + 1e-10


def test_min_norm_point_is_optimal_by_the_kkt_conditions() -> None:
    """At the min-norm point d, g_i . d >= |d|^2 for all i, with equality where w_i > 0."""
    generator = torch.Generator().manual_seed(7)
    gradients = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    weights = min_norm_weights(gradients)
    d = _point(gradients, weights)
    products = gradients @ d
    assert bool((products >= d @ d - 1e-9).all())
    assert torch.allclose(products[weights > 1e-9], (d @ d).expand(int((weights > 1e-9).sum())), atol=1e-9)


def test_invalid_gradients_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one gradient"):
        min_norm_weights([])
    with pytest.raises(ValueError, match="finite"):
        min_norm_weights(torch.tensor([[float("nan"), 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="max_iterations must be a positive integer, got 0"):
        min_norm_weights(torch.eye(3), max_iterations=0)


def test_projection_onto_the_simplex() -> None:
    assert torch.allclose(project_to_simplex(torch.tensor([0.2, 0.3, 0.5])), torch.tensor([0.2, 0.3, 0.5]))
    assert torch.allclose(project_to_simplex(torch.tensor([2.0, 0.0])), torch.tensor([1.0, 0.0]))
    assert torch.allclose(project_to_simplex(torch.tensor([1.0, 1.0, -5.0])), torch.tensor([0.5, 0.5, 0.0]))


# --- normalisation ---------------------------------------------------------------------------


def test_normalization_modes() -> None:
    gradients = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    losses = torch.tensor([2.0, 0.5, 1.0])
    l2 = normalize_gradients(gradients, losses, normalization="l2")
    assert torch.allclose(l2[:2].norm(dim=1), torch.ones(2, dtype=torch.float64))
    assert torch.equal(l2[2], torch.zeros(2, dtype=torch.float64))  # a zero gradient stays zero
    assert torch.allclose(normalize_gradients(gradients, losses, normalization="loss"),
                          (gradients / losses[:, None]).double())
    assert torch.allclose(normalize_gradients(gradients, losses, normalization="loss+"),
                          torch.tensor([[0.3, 0.4], [0.0, 2.0], [0.0, 0.0]], dtype=torch.float64))
    assert torch.equal(normalize_gradients(gradients, losses, normalization="none"), gradients.double())


def test_l2_normalisation_makes_the_weights_scale_free() -> None:
    gradients = torch.tensor([[10.0, 0.0], [0.0, 1.0]])
    losses = torch.tensor([1.0, 1.0])
    assert torch.allclose(mgda_weights(gradients, losses, normalization="l2"),
                          torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(mgda_weights(gradients, losses, normalization="none"),
                          torch.tensor([1 / 101, 100 / 101], dtype=torch.float64))
    # "loss": dividing by the loss values rebalances by loss magnitude
    assert torch.allclose(mgda_weights(gradients, torch.tensor([10.0, 1.0]), normalization="loss"),
                          torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_normalization_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalize_gradients(torch.eye(2), [1.0, 1.0], normalization="max")
    with pytest.raises(ValueError, match="one value per gradient \\(2\\), got 3"):
        normalize_gradients(torch.eye(2), [1.0, 1.0, 1.0])
    assert NORMALIZATIONS == ("l2", "loss", "loss+", "none")

"""Multiple-gradient descent (MGDA): the min-norm point of the convex hull of k gradients.

For objectives with gradients ``g_1 .. g_k`` MGDA (Désidéri 2012; Sener & Koltun 2018) takes
the convex combination ``d = sum_i w_i g_i`` of minimum norm, ``w`` on the probability
simplex. ``-d`` decreases every objective at once unless ``d = 0`` (a Pareto-stationary point).

The solver here works on the Gram matrix ``G = [g_i . g_j]`` (k x k, in float64):

- ``k = 2``: closed form, ``w_1 = clip((g_2.g_2 - g_1.g_2) / |g_1 - g_2|^2, 0, 1)``;
- ``3 <= k <= 10``: exact active-set enumeration. The minimiser lies on some face of the
  simplex; for every support ``S`` the KKT system ``G_SS w_S = lambda 1``, ``sum w_S = 1`` is
  solved (least squares, so singular faces are fine) and the best feasible, consistent solution
  is kept. By Caratheodory some affinely independent support reaches the min-norm point, so
  the enumeration is exact; ``2^k - 1`` tiny solves are cheap for the handful of objectives a
  search has;
- ``k > 10``: accelerated projected gradient (FISTA) on ``w^T G w`` over the simplex, started
  from the best pair's closed-form solution, then polished with the KKT system of its support.

Gradient normalisation before the solve follows Sener & Koltun's ``gradient_normalizers`` (also
used by E2RNAS): ``"l2"`` divides ``g_i`` by its norm, ``"loss"`` by the loss value, ``"loss+"``
by ``loss * norm``, ``"none"`` leaves it. A zero normaliser leaves the gradient unscaled.
"""

from __future__ import annotations

import itertools
import logging
from typing import Optional, Sequence, Union

import torch

_logger = logging.getLogger(__name__)

NORMALIZATIONS: tuple[str, ...] = ("l2", "loss", "loss+", "none")
_TINY = 1e-12
_MAX_ENUMERATED = 10

TensorLike = Union[torch.Tensor, Sequence[float]]


def _as_matrix(gradients: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    if isinstance(gradients, torch.Tensor):
        matrix = gradients
    else:
        if not gradients:
            raise ValueError("gradients must hold at least one gradient, got none")
        matrix = torch.stack([g.reshape(-1) for g in gradients])
    if matrix.dim() != 2 or matrix.shape[0] < 1:
        raise ValueError(f"gradients must be a (objectives, dimensions) matrix with at least one row, "
                         f"got shape {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ValueError("gradients must be finite, got NaN or infinite entries")
    return matrix


def project_to_simplex(vector: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a vector onto the probability simplex (sort-based, exact)."""
    if vector.dim() != 1 or vector.numel() == 0:
        raise ValueError(f"vector must be one-dimensional and non-empty, got shape {tuple(vector.shape)}")
    ordered, _ = torch.sort(vector, descending=True)
    cumulative = torch.cumsum(ordered, 0) - 1
    index = torch.arange(1, vector.numel() + 1, dtype=vector.dtype, device=vector.device)
    support = ordered - cumulative / index > 0
    rho = int(torch.nonzero(support).max())
    theta = cumulative[rho] / (rho + 1)
    return torch.clamp(vector - theta, min=0)


def _pair_solution(gram: torch.Tensor, i: int, j: int) -> tuple[float, float]:
    """Weight of ``i`` in the min-norm combination of gradients ``i`` and ``j``, and that norm^2."""
    gii, gij, gjj = gram[i, i], gram[i, j], gram[j, j]
    denominator = gii - 2 * gij + gjj
    if denominator <= _TINY * max(float(gii + gjj), 1.0):
        gamma = 1.0 if gii <= gjj else 0.0
    else:
        gamma = float(torch.clamp((gjj - gij) / denominator, 0.0, 1.0))
    value = gamma ** 2 * gii + 2 * gamma * (1 - gamma) * gij + (1 - gamma) ** 2 * gjj
    return gamma, float(value)


def _objective(gram: torch.Tensor, weights: torch.Tensor) -> float:
    return float(weights @ gram @ weights)


def _face_solution(gram: torch.Tensor, support: torch.Tensor) -> Optional[torch.Tensor]:
    """Min-norm weights restricted to ``support`` by its KKT system, or ``None`` if infeasible."""
    size = support.numel()
    system = torch.zeros(size + 1, size + 1, dtype=gram.dtype)
    system[:size, :size] = gram[support][:, support]
    system[:size, size] = -1
    system[size, :size] = 1
    rhs = torch.zeros(size + 1, 1, dtype=gram.dtype)
    rhs[size] = 1
    solution = torch.linalg.lstsq(system, rhs, driver="gelsd").solution
    if not torch.isfinite(solution).all() or float((system @ solution - rhs).abs().max()) > 1e-9:
        return None
    weights = solution.flatten()[:size]
    if bool((weights < -1e-10).any()):
        return None
    full = torch.zeros(gram.shape[0], dtype=gram.dtype)
    full[support] = torch.clamp(weights, min=0)
    total = float(full.sum())
    return full / total if total > 0 else None


def _enumerate_faces(gram: torch.Tensor) -> torch.Tensor:
    k = gram.shape[0]
    best, best_value = None, float("inf")
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            weights = _face_solution(gram, torch.tensor(support))
            if weights is not None:
                value = _objective(gram, weights)
                if value < best_value - 1e-15:
                    best, best_value = weights, value
    assert best is not None  # every single vertex is a feasible face
    return best


def _polish(gram: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Exact KKT solution on the support of ``weights`` when it is feasible and no worse."""
    candidate = _face_solution(gram, torch.nonzero(weights > 1e-9).flatten())
    if candidate is None:
        return weights
    return candidate if _objective(gram, candidate) <= _objective(gram, weights) + 1e-15 else weights


def min_norm_weights(gradients: Union[torch.Tensor, Sequence[torch.Tensor]], *, max_iterations: int = 2000,
                     tolerance: float = 1e-12) -> torch.Tensor:
    """Weights ``w`` on the simplex minimising ``|sum_i w_i g_i|``.

    Parameters
    ----------
    gradients
        A ``(k, d)`` matrix, or k tensors of any shapes with d elements each.
    max_iterations
        Iterations of the projected-gradient solver (``k > 10``).
    tolerance
        Stop when the weights move less than this (L1) in one iteration.

    Returns
    -------
    torch.Tensor
        ``k`` float64 weights, non-negative, summing to 1. If every gradient is zero the
        weights are uniform (any point is then the min-norm point).
    """
    matrix = _as_matrix(gradients).detach().to(torch.float64)
    k = matrix.shape[0]
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    gram = matrix @ matrix.T
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    scale = float(torch.diagonal(gram).max())
    if scale <= 0:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    gram = gram / scale  # same minimiser, better conditioned
    best_pair, best_gamma, best_value = (0, 1), 1.0, float("inf")
    for i, j in itertools.combinations(range(k), 2):
        gamma, value = _pair_solution(gram, i, j)
        if value < best_value:
            best_pair, best_gamma, best_value = (i, j), gamma, value
    weights = torch.zeros(k, dtype=torch.float64)
    weights[best_pair[0]], weights[best_pair[1]] = best_gamma, 1 - best_gamma
    if k == 2:
        return weights
    if k <= _MAX_ENUMERATED:
        return _enumerate_faces(gram)
    lipschitz = 2 * float(torch.linalg.eigvalsh(gram).max())
    step = 1 / lipschitz
    momentum_point, previous, t = weights.clone(), weights.clone(), 1.0
    for iteration in range(max_iterations):
        current = project_to_simplex(momentum_point - step * 2 * (gram @ momentum_point))
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum_point = current + ((t - 1) / t_next) * (current - previous)
        moved = float((current - previous).abs().sum())
        previous, t = current, t_next
        if moved < tolerance:
            break
    else:
        _logger.debug("min-norm solver stopped after %d iterations (last move %.3g)", max_iterations, moved)
    weights = _polish(gram, previous)
    return weights / weights.sum()


def normalize_gradients(gradients: Union[torch.Tensor, Sequence[torch.Tensor]], losses: TensorLike, *,
                        normalization: str = "l2") -> torch.Tensor:
    """Scale each gradient as in Sener & Koltun's ``gradient_normalizers``.

    Parameters
    ----------
    gradients
        ``(k, d)`` matrix or k tensors.
    losses
        The k loss values (used by ``"loss"`` and ``"loss+"``).
    normalization
        ``"l2"``, ``"loss"``, ``"loss+"`` or ``"none"``.

    Returns
    -------
    torch.Tensor
        The ``(k, d)`` normalised gradients (float64).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    matrix = _as_matrix(gradients).detach().to(torch.float64)
    values = torch.as_tensor(losses, dtype=torch.float64).detach().reshape(-1)
    if values.numel() != matrix.shape[0]:
        raise ValueError(f"losses must hold one value per gradient ({matrix.shape[0]}), got {values.numel()}")
    norms = matrix.norm(dim=1)
    if normalization == "l2":
        scale = norms
    elif normalization == "loss":
        scale = values
    elif normalization == "loss+":
        scale = values * norms
    else:
        scale = torch.ones_like(norms)
    scale = torch.where(scale.abs() > _TINY, scale, torch.ones_like(scale))
    return matrix / scale.unsqueeze(1)


def mgda_weights(gradients: Union[torch.Tensor, Sequence[torch.Tensor]], losses: TensorLike, *,
                 normalization: str = "l2") -> torch.Tensor:
    """MGDA weights: the min-norm weights of the normalised gradients.

    As in Sener & Koltun's and E2RNAS' code, the weights are meant to combine the *raw* losses
    (``sum_i w_i L_i``), the normalisation only deciding how the weights are found.
    """
    return min_norm_weights(normalize_gradients(gradients, losses, normalization=normalization))

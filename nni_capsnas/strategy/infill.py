"""Which candidates to train next: greedy optimistic hypervolume gain, batch-aware.

Each pick is the candidate whose (optimistic) objective vector adds the most hypervolume to
the front of what is trained plus what was already picked for this batch, optionally per
expected training second. Adding each pick to the front before the next one is what keeps a
batch of concurrent trials from spending itself on near-duplicates (a second point next to the
first adds almost nothing); candidates closer than ``min_distance`` genes to a pick are also
skipped while others remain. Candidates that would add nothing are ranked by how far they are
from being non-dominated (the additive epsilon to the front), so a batch is always full.

Written here because pymoo's infill criteria work on one candidate at a time and know nothing
of batches or costs; the hypervolumes themselves are pymoo's.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .pareto import hypervolume, non_dominated


def hypervolume_gains(front: np.ndarray, candidates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume each candidate alone would add to ``front`` (all objectives minimised)."""
    base = hypervolume(front, reference) if len(front) else 0.0
    gains = np.zeros(len(candidates))
    for index, point in enumerate(candidates):
        if np.any(point >= reference) or (len(front) and _dominated(point, front)):
            continue
        gains[index] = hypervolume(np.vstack([front, point]) if len(front) else point[None], reference) - base
    return gains


def _dominated(point: np.ndarray, front: np.ndarray) -> bool:
    return bool(np.any(np.all(front <= point, axis=1)))


def epsilon_to_front(front: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Smallest uniform improvement that makes each candidate non-dominated by ``front`` (0 if it is)."""
    if not len(front):
        return np.zeros(len(candidates))
    # for each front point f: the candidate escapes f once some objective beats f's: min_j (c_j - f_j)
    escape = np.min(candidates[:, None, :] - front[None, :, :], axis=2)
    return np.maximum(escape.max(axis=1), 0.0)


def select_batch(trained: np.ndarray, candidates: np.ndarray, genes: np.ndarray, count: int, *,
                 reference: np.ndarray, costs: Optional[np.ndarray] = None, min_distance: int = 2) -> list[int]:
    """Indices of ``count`` candidates to train, in pick order.

    Parameters
    ----------
    trained
        Objective vectors (minimised, normalised) of what is trained.
    candidates
        Optimistic objective vectors of the candidates, same scale.
    genes
        Gene vectors of the candidates (for the distance between picks).
    count
        Batch size.
    reference
        Hypervolume reference point.
    costs
        Expected training cost of each candidate (positive): gains are divided by it.
    min_distance
        Genes by which picks should differ (Hamming distance), while candidates allow.
    """
    front = trained[non_dominated(trained)] if len(trained) else np.zeros((0, candidates.shape[1]))
    remaining = np.ones(len(candidates), dtype=bool)
    picks: list[int] = []
    while len(picks) < count and remaining.any():
        index = _best(front, candidates, remaining, reference, costs)
        picks.append(index)
        remaining[index] = False
        front = np.vstack([front, candidates[index]])
        front = front[non_dominated(front)]
        near = np.sum(genes != genes[index], axis=1) < min_distance
        if (remaining & ~near).sum() >= count - len(picks):
            remaining &= ~near
    return picks


def _best(front: np.ndarray, candidates: np.ndarray, remaining: np.ndarray, reference: np.ndarray,
          costs: Optional[np.ndarray]) -> int:
    open_ = np.flatnonzero(remaining)
    gains = hypervolume_gains(front, candidates[open_], reference)
    if costs is not None:
        gains = gains / costs[open_]
    if gains.max() > 0:
        return int(open_[int(np.argmax(gains))])
    distance = epsilon_to_front(front, candidates[open_])
    return int(open_[int(np.argmin(distance))])

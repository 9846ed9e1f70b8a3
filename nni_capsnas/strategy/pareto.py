"""Pareto fronts and hypervolume through pymoo."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .objectives import Objectives


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``points`` (all objectives minimised)."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(NonDominatedSorting().do(points, only_non_dominated_front=True), dtype=int)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` up to ``reference`` (all objectives minimised)."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return 0.0
    return float(HV(ref_point=np.asarray(reference, dtype=float))(points))


def normalised_hypervolume(points: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """Hypervolume of ``points`` scaled so the box from ``ideal`` to ``nadir`` has volume 1."""
    ideal, nadir = np.asarray(ideal, dtype=float), np.asarray(nadir, dtype=float)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    return hypervolume((np.asarray(points, dtype=float) - ideal) / span, np.ones_like(ideal))


def feasible_front(rows: Sequence[Mapping[str, Any]], objectives: Objectives) -> list[int]:
    """Indices (ascending) of the rows on the Pareto front of ``objectives``.

    A row takes part when it has a finite value for every objective and constraint metric
    and stays within every constraint; the front is its non-dominated subset. The strategy's
    archive and the report both call this, so they always agree on the front.
    """
    usable = [index for index, row in enumerate(rows)
              if not objectives.missing(row) and all(v <= 0 for v in objectives.violations(row).values())]
    if not usable:
        return []
    points = np.stack([objectives.to_minimisation(rows[index]) for index in usable])
    return sorted(usable[i] for i in non_dominated(points))

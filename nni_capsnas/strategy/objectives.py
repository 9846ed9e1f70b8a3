"""Objectives and constraints of a multi-objective search, as minimisation vectors."""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np

from ..metrics import DEFAULT_OBJECTIVES, check_directions


class Objectives:
    """Metric names with a direction, and upper bounds on metrics.

    Parameters
    ----------
    directions
        Metric name -> ``"max"`` or ``"min"``.
    constraints
        Metric name -> upper bound (the metric must stay at or below it).
    """

    def __init__(self, directions: Optional[Mapping[str, str]] = None,
                 constraints: Optional[Mapping[str, float]] = None) -> None:
        self.directions = check_directions(DEFAULT_OBJECTIVES if directions is None else directions)
        self.constraints = check_constraints(constraints or {})

    @property
    def names(self) -> list[str]:
        return list(self.directions)

    def missing(self, metrics: Mapping[str, float]) -> list[str]:
        """Objective or constraint metrics absent from ``metrics`` (or not finite)."""
        wanted = [*self.directions, *self.constraints]
        return [name for name in wanted if not _is_finite_number(metrics.get(name))]

    def to_minimisation(self, metrics: Mapping[str, float]) -> np.ndarray:
        """Objective vector to minimise (maximised metrics negated)."""
        return np.array([-float(metrics[name]) if direction == "max" else float(metrics[name])
                         for name, direction in self.directions.items()])

    def violations(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Relative excess ``metric / bound - 1`` of every constraint present in ``metrics``."""
        return {name: float(metrics[name]) / bound - 1.0 for name, bound in self.constraints.items()
                if _is_finite_number(metrics.get(name))}


def check_constraints(constraints: Mapping[str, float], owner: str = "constraints") -> dict[str, float]:
    """Validate ``{metric: upper bound}`` (positive finite numbers); returns them as floats.

    Raises
    ------
    ValueError
        Naming the first bad bound (``<owner>.<metric>``).
    """
    checked = {}
    for name, bound in constraints.items():
        if not _is_finite_number(bound) or bound <= 0:
            raise ValueError(f"{owner}.{name}: must be a positive finite number, got {bound!r}")
        checked[name] = float(bound)
    return checked


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

"""Objectives and constraints of a multi-objective search, as minimisation vectors."""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np

DEFAULT_OBJECTIVES: dict[str, str] = {
    "accuracy": "max", "energy_mj": "min", "latency_ms": "min", "memory_kib": "min",
}


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
        directions = dict(DEFAULT_OBJECTIVES if directions is None else directions)
        if not directions:
            raise ValueError("objectives must name at least one metric")
        for name, direction in directions.items():
            if direction not in ("max", "min"):
                raise ValueError(f"objectives[{name!r}] must be 'max' or 'min', got {direction!r}")
        self.directions = directions
        self.constraints = {name: float(bound) for name, bound in (constraints or {}).items()}
        for name, bound in self.constraints.items():
            if not math.isfinite(bound) or bound <= 0:
                raise ValueError(f"constraints[{name!r}] must be a positive finite number, got {bound!r}")

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


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

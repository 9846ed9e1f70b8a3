"""Objective vectors on the scale a search compares them on, and a hypervolume with a fixed box.

Costs such as energy span decades across a space: compared linearly, every cheap network
bunches at zero and hypervolume differences among them vanish. Metrics the registry marks as
``log_scale`` are compared by their base-10 logarithm. The box (ideal and reference point) is
fixed once, from the first trained generation, so the hypervolume a search logs never goes down
as trials are added (a box re-normalised every generation can shrink it).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..metrics import is_log_scale
from .objectives import Objectives
from .pareto import hypervolume

#: Floor of log-scaled metrics (a zero cost would otherwise be minus infinity).
LOG_FLOOR = 1e-12
#: The reference point lies this fraction of the first generation's range beyond its worst values.
REFERENCE_MARGIN = 0.1


class ObjectiveScale:
    """Minimisation vectors of metric dicts, log10 for log-scale metrics; an optional fixed box.

    Parameters
    ----------
    objectives
        The search's objectives (directions).
    """

    def __init__(self, objectives: Objectives) -> None:
        self.objectives = objectives
        self._log = np.array([is_log_scale(name) for name in objectives.names])
        self._sign = np.array([-1.0 if objectives.directions[name] == "max" else 1.0 for name in objectives.names])
        self.ideal: Optional[np.ndarray] = None
        self.reference: Optional[np.ndarray] = None

    def points(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(len(rows), n_objectives)`` minimisation vectors on the comparison scale."""
        if not rows:
            return np.zeros((0, len(self.objectives.names)))
        raw = np.stack([self.objectives.to_minimisation(row) for row in rows]).astype(float)
        return self.transform(raw)

    def transform(self, minimisation: np.ndarray) -> np.ndarray:
        """Minimisation vectors (as :meth:`Objectives.to_minimisation` gives) on the comparison scale."""
        values = np.array(minimisation, dtype=float, copy=True)
        if self._log.any():
            sign = self._sign[self._log]
            values[..., self._log] = sign * np.log10(np.maximum(sign * values[..., self._log], LOG_FLOOR))
        return values

    def metric_value(self, column: int, value: float) -> float:
        """A comparison-scale value of objective ``column`` back in the metric's own units."""
        metric = self._sign[column] * value
        return float(10.0 ** metric) if self._log[column] else float(metric)

    @property
    def is_fixed(self) -> bool:
        return self.ideal is not None

    def fix(self, points: np.ndarray) -> None:
        """Fix the box from ``points`` (comparison scale): ideal = best values, reference = worst
        values plus :data:`REFERENCE_MARGIN` of the range."""
        points = np.asarray(points, dtype=float)
        ideal, worst = points.min(axis=0), points.max(axis=0)
        span = np.where(worst > ideal, worst - ideal, 1.0)
        self.ideal, self.reference = ideal, worst + REFERENCE_MARGIN * span

    def hypervolume(self, points: np.ndarray) -> float:
        """Hypervolume of ``points`` (comparison scale) inside the fixed box, as a fraction of the box."""
        if self.ideal is None or self.reference is None:
            raise RuntimeError("the hypervolume box is not fixed yet (call fix first)")
        span = self.reference - self.ideal
        return hypervolume((np.asarray(points, dtype=float) - self.ideal) / span, np.ones_like(span))

    def state_dict(self) -> dict[str, Optional[list[float]]]:
        """Plain lists (checkpoint-safe)."""
        return {"ideal": None if self.ideal is None else [float(v) for v in self.ideal],
                "reference": None if self.reference is None else [float(v) for v in self.reference]}

    def load_state_dict(self, state: Mapping[str, Optional[Sequence[float]]]) -> None:
        ideal, reference = state.get("ideal"), state.get("reference")
        self.ideal = None if ideal is None else np.array(ideal, dtype=float)
        self.reference = None if reference is None else np.array(reference, dtype=float)

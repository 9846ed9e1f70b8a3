"""A resource objective of E2RNAS' upper level: an expected cost turned into a loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..metrics import ESTIMATOR_METRICS

#: Metrics a resource objective may constrain: everything the hardware estimator answers.
RESOURCE_METRICS: tuple[str, ...] = ESTIMATOR_METRICS
#: How the expected cost becomes a loss.
CONSTRAINT_MODES: tuple[str, ...] = ("abs", "max", "none")


@dataclass(frozen=True)
class ResourceConstraint:
    """One resource term of the upper-level objectives.

    With ``r = E[cost] / target`` the loss is

    - ``"abs"``: ``|r - 1|``, pulling the architecture towards the target size (E2RNAS'
      ``abs`` constraint);
    - ``"max"``: ``max(r - 1, 0)``, a hinge that is zero (and has zero gradient, so the
      objective drops out of MGDA) while the budget holds;
    - ``"none"``: ``r``, simply smaller is better (``target`` is then only the unit).

    Attributes
    ----------
    metric
        ``"params"`` (exact expectation) or a hardware metric (``"energy_mj"``,
        ``"latency_ms"``, ``"memory_kib"``, ``"macs"``: first-order estimate).
    target
        Target (or budget, or unit) in the metric's units; positive.
    mode
        ``"abs"``, ``"max"`` or ``"none"``.
    """

    metric: str = "params"
    target: float = 1.0
    mode: str = "abs"

    def __post_init__(self) -> None:
        if self.metric not in RESOURCE_METRICS:
            raise ValueError(f"metric must be one of {RESOURCE_METRICS}, got {self.metric!r}")
        if self.mode not in CONSTRAINT_MODES:
            raise ValueError(f"mode must be one of {CONSTRAINT_MODES}, got {self.mode!r}")
        if (isinstance(self.target, bool) or not isinstance(self.target, (int, float))
                or not math.isfinite(self.target) or self.target <= 0):
            raise ValueError(f"target of {self.metric} must be a positive number, got {self.target!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ResourceConstraint:
        """Build from a config table such as ``{"metric": "params", "target": 2e4, "mode": "abs"}``."""
        if not isinstance(options, Mapping):
            raise ValueError(f"a resource constraint must be a mapping, got {type(options).__name__}")
        unknown = sorted(set(options) - {"metric", "target", "mode"})
        if unknown:
            raise ValueError(f"unknown resource option(s) {unknown}; expected metric, target, mode")
        return cls(**dict(options))

    @property
    def name(self) -> str:
        """Objective name used in logs."""
        return self.metric

    def loss(self, expected: torch.Tensor) -> torch.Tensor:
        """The loss of an expected cost (a differentiable scalar)."""
        ratio = expected / self.target
        if self.mode == "abs":
            return (ratio - 1).abs()
        if self.mode == "max":
            return torch.relu(ratio - 1)
        return ratio

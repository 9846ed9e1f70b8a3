"""An early-stopping rule on learning curves: stop a trial that cannot reach the front.

After epoch ``e`` a trial's final accuracy is at most its accuracy now plus the largest gain
the finished trials made after epoch ``e`` (a high quantile of it, to be robust to one lucky
curve). Its hardware cost is known before training. If even that optimistic point is dominated
by the current front, training it on cannot change the front: the rule says stop.

How much this saves and what it costs in front quality is measured by
``benchmarks/search_quality.py --early-stopping`` on measured learning curves (docs/benchmarks.md):
on 3-epoch curves a rule that saves a useful share of the epochs (13-22%) also drops front
members (gap +0.04 to +0.07), and one that keeps the front saves 2-5%. It does not pay, so it is
not wired into the strategy. (Wiring it would need NNI's REST ``kill_trial_job`` with trial ids
that NNI 3.0's NAS engine keeps privately: its engines have no call to stop a model.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def remaining_gain(curves: Sequence[Sequence[float]], epoch: int, quantile: float = 0.9) -> float:
    """The ``quantile`` of (final accuracy - accuracy after ``epoch``) over finished ``curves``.

    ``epoch`` counts from 1; curves are per-epoch accuracies. Returns ``inf`` (never stop)
    without finished curves that long.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    gains = [curve[-1] - curve[epoch - 1] for curve in curves if len(curve) > epoch]
    return float(np.quantile(gains, quantile)) if gains else float("inf")


def cannot_reach_front(accuracy: float, gain: float, cost_point: np.ndarray, front: np.ndarray) -> bool:
    """Whether (accuracy + gain, cost) is dominated by a front point.

    Parameters
    ----------
    accuracy
        The trial's accuracy now.
    gain
        Largest plausible remaining gain (see :func:`remaining_gain`).
    cost_point
        The trial's hardware objectives, minimised (e.g. log10 energy, log10 latency).
    front
        Front points ``(n, 1 + len(cost_point))``: negated accuracy first, then the same costs.
    """
    if len(front) == 0 or not np.isfinite(gain):
        return False
    hopeful = np.concatenate([[-(accuracy + gain)], np.asarray(cost_point, dtype=float)])
    return bool(np.any(np.all(front <= hopeful, axis=1) & np.any(front < hopeful, axis=1)))

"""One surrogate-assisted generation: fit, screen a large pool, pick the batch worth training.

In the spirit of NSGANetV2 / MSuNAS (Lu et al. 2020): objectives the hardware estimator answers
are exact before training; the others (accuracy, ...) are predicted by a surrogate fitted on
the trained architectures, with an uncertainty. A pool of thousands of candidates (variations
of the trained architectures and everything NSGA-II visits while optimising the predicted
objectives) is screened, constraints applied with the exact estimates, and the batch with the
best optimistic hypervolume gain (optionally per expected training second) is trained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from scipy.stats import kendalltau
from threadpoolctl import threadpool_limits

from .candidate_pool import crossovers, mutants, nsga2_on_predictions, unique_new
from .infill import epsilon_to_front, select_batch
from .objective_scale import ObjectiveScale
from .pareto import non_dominated
from .surrogate import Surrogate

_logger = logging.getLogger(__name__)

Key = tuple[int, ...]
#: Exact metrics of an architecture before training (the hardware estimator), or ``None``.
ExactMetrics = Callable[[Key], Optional[Mapping[str, float]]]
#: Training-time metric the cost-aware selection predicts.
TRAIN_SECONDS = "train_seconds"


@dataclass
class Proposal:
    """What a surrogate generation chose.

    Attributes
    ----------
    keys
        Gene vectors to train, in pick order.
    predicted
        Key -> predicted metric values (original units) of the objectives the surrogate answered.
    pool_size
        Candidates screened (after removing known and infeasible architectures).
    """

    keys: list[Key]
    predicted: dict[Key, dict[str, float]] = field(default_factory=dict)
    pool_size: int = 0


@dataclass
class SurrogateSettings:
    """Knobs of :class:`SurrogateProposer` (see :class:`~nni_capsnas.strategy.NSGA2`)."""

    pool_size: int = 2000
    optimism: float = 1.0
    cost_aware: bool = True
    min_distance: int = 2
    screened: int = 400

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")
        if self.optimism < 0:
            raise ValueError(f"optimism must be >= 0, got {self.optimism}")
        if self.min_distance < 0:
            raise ValueError(f"min_distance must be >= 0, got {self.min_distance}")


class SurrogateProposer:
    """Proposes the next batch of architectures to train (see the module docstring).

    Parameters
    ----------
    scale
        The search's objectives on their comparison scale.
    surrogate_factory
        Builds a fresh surrogate (one per predicted objective, refitted every generation).
    settings
        Pool size, optimism (standard deviations added in the hopeful direction), cost
        awareness, distance between picks.
    """

    def __init__(self, scale: ObjectiveScale, surrogate_factory: Callable[[], Surrogate],
                 settings: SurrogateSettings) -> None:
        self.scale = scale
        self.surrogate_factory = surrogate_factory
        self.settings = settings
        self._exact: ExactMetrics = lambda key: None

    def propose(self, trained: Sequence[tuple[Key, Mapping[str, float]]], known: set[Key],
                exact: ExactMetrics, upper_bounds: np.ndarray, count: int, rng: np.random.Generator) -> Proposal:
        """The next ``count`` architectures to train (see :meth:`_propose`).

        The surrogates' small matrix products run on one BLAS thread: 3x faster than on two
        (measured with a Gaussian process at 30-200 points on 2 cores), and the cores belong to
        the trials training meanwhile.
        """
        with threadpool_limits(1):
            return self._propose(trained, known, exact, upper_bounds, count, rng)

    def _propose(self, trained: Sequence[tuple[Key, Mapping[str, float]]], known: set[Key],
                 exact: ExactMetrics, upper_bounds: np.ndarray, count: int, rng: np.random.Generator) -> Proposal:
        """The next ``count`` architectures to train.

        Parameters
        ----------
        trained
            Trained architectures and their reported metrics (at least two).
        known
            Every architecture the search has seen (trained, failed, rejected, running).
        exact
            Metrics known before training (``None`` where there is no estimator).
        upper_bounds
            Largest index of every gene.
        count
            Batch size.
        rng
            The search's generator.
        """
        objectives = self.scale.objectives
        self._exact = exact
        genes = np.array([key for key, _ in trained], dtype=int)
        predicted_names = [name for name in objectives.names if not _answers(exact(trained[0][0]), name)]
        models = self._fit(genes, [metrics for _, metrics in trained], predicted_names, rng)
        objective_vectors = self._objective_function(models, predicted_names, exact, optimistic=False)
        pool = unique_new(self._pool_sources(genes, trained, objective_vectors, upper_bounds, rng), known)
        pool = [key for key in pool if _feasible(exact(key), objectives.constraints)]
        if len(pool) > self.settings.pool_size:
            pool = [pool[i] for i in sorted(rng.choice(len(pool), self.settings.pool_size, replace=False))]
        if not pool:
            return Proposal([], {}, 0)
        pool_genes = np.array(pool, dtype=int)
        hopeful = self._objective_function(models, predicted_names, exact, optimistic=True)(pool_genes)
        trained_points = self.scale.points([metrics for _, metrics in trained])
        ideal, worst = trained_points.min(axis=0), trained_points.max(axis=0)
        span = np.where(worst > ideal, worst - ideal, 1.0)
        normalise = lambda points: (points - ideal) / span  # noqa: E731
        shortlist = self._shortlist(normalise(trained_points), normalise(hopeful))
        costs = self._costs(models, pool_genes[shortlist]) if self.settings.cost_aware else None
        picks = select_batch(normalise(trained_points), normalise(hopeful[shortlist]), pool_genes[shortlist], count,
                             reference=np.full(len(objectives.names), 1.1), costs=costs,
                             min_distance=self.settings.min_distance)
        chosen = [pool[shortlist[i]] for i in picks]
        return Proposal(chosen, self._predictions(models, predicted_names, chosen), len(pool))

    # --- fitting and predicting --------------------------------------------------------------

    def _inputs(self, genes: np.ndarray) -> np.ndarray:
        """Surrogate inputs: the genes, and the log10 of every positive metric known before training
        (the network's size and cost say much of its accuracy, and they are exact)."""
        rows = [self._exact(tuple(int(g) for g in row)) for row in genes]
        if not rows or rows[0] is None:
            return genes.astype(float)
        names = sorted(name for name, value in rows[0].items() if value > 0)
        known = np.array([[row.get(name, 0.0) for name in names] for row in rows], dtype=float)
        return np.hstack([genes.astype(float), np.log10(np.maximum(known, 1e-12))])

    def _fit(self, genes: np.ndarray, rows: Sequence[Mapping[str, float]], names: Sequence[str],
             rng: np.random.Generator) -> dict[str, Surrogate]:
        """One surrogate per predicted objective (on the comparison scale), plus training time when
        cost-aware and reported."""
        targets = {name: self._comparison_values(rows, name) for name in names}
        if self.settings.cost_aware and all(TRAIN_SECONDS in row for row in rows):
            targets[TRAIN_SECONDS] = np.log10(np.maximum([float(row[TRAIN_SECONDS]) for row in rows], 1e-3))
        models = {}
        for name, values in targets.items():
            model = self.surrogate_factory()
            model.fit(self._inputs(genes), values, seed=int(rng.integers(2 ** 31)))
            models[name] = model
        return models

    def _comparison_values(self, rows: Sequence[Mapping[str, float]], name: str) -> np.ndarray:
        column = self.scale.objectives.names.index(name)
        return self.scale.points(rows)[:, column]

    def _objective_function(self, models: Mapping[str, Surrogate], predicted_names: Sequence[str],
                            exact: ExactMetrics, *, optimistic: bool) -> Callable[[np.ndarray], np.ndarray]:
        """Gene vectors -> minimisation vectors (comparison scale): exact where known, else predicted
        (mean, or mean minus ``optimism`` standard deviations)."""
        objectives = self.scale.objectives
        optimism = self.settings.optimism if optimistic else 0.0

        def evaluate(genes: np.ndarray) -> np.ndarray:
            points = np.zeros((len(genes), len(objectives.names)))
            exact_names = [name for name in objectives.names if name not in predicted_names]
            if exact_names:
                rows = [dict(exact(tuple(int(g) for g in row)) or {}) for row in genes]
                filled = [{**row, **{name: 1.0 for name in predicted_names}} for row in rows]
                points = self.scale.points(filled)
            for name in predicted_names:
                mean, std = models[name].predict(self._inputs(genes))
                points[:, objectives.names.index(name)] = mean - optimism * std
            return points

        return evaluate

    def _predictions(self, models: Mapping[str, Surrogate], names: Sequence[str],
                     keys: Sequence[Key]) -> dict[Key, dict[str, float]]:
        """Predicted means in the metrics' own units, for the surrogate's rank correlation later."""
        result: dict[Key, dict[str, float]] = {key: {} for key in keys}
        if not keys:
            return result
        genes = np.array(keys, dtype=int)
        for name in names:
            column = self.scale.objectives.names.index(name)
            for key, value in zip(keys, models[name].predict(self._inputs(genes))[0]):
                result[key][name] = self.scale.metric_value(column, float(value))
        return result

    def _costs(self, models: Mapping[str, Surrogate], genes: np.ndarray) -> Optional[np.ndarray]:
        model = models.get(TRAIN_SECONDS)
        if model is None:
            return None
        return 10.0 ** model.predict(self._inputs(genes))[0]

    # --- the pool --------------------------------------------------------------------------------

    def _pool_sources(self, genes: np.ndarray, trained: Sequence[tuple[Key, Mapping[str, float]]],
                      objective_vectors: Callable[[np.ndarray], np.ndarray], upper_bounds: np.ndarray,
                      rng: np.random.Generator) -> list[np.ndarray]:
        points = self.scale.points([metrics for _, metrics in trained])
        front = genes[non_dominated(points)]
        share = max(self.settings.pool_size // 4, 1)
        return [
            mutants(front, upper_bounds, rng, per_parent=max(share // max(len(front), 1), 1)),
            mutants(genes, upper_bounds, rng, per_parent=max(share // max(len(genes), 1), 1)),
            crossovers(front if len(front) >= 2 else genes, upper_bounds, rng, share),
            nsga2_on_predictions(objective_vectors, upper_bounds, front, points.shape[1], rng,
                                 population=min(100, max(share // 10, 20)), generations=10),
        ]

    def _shortlist(self, trained: np.ndarray, hopeful: np.ndarray) -> np.ndarray:
        """The candidates closest to (or beyond) the trained front, at most ``screened`` of them."""
        front = trained[non_dominated(trained)]
        distance = epsilon_to_front(front, hopeful)
        return np.argsort(distance, kind="stable")[:self.settings.screened]


def _answers(metrics: Optional[Mapping[str, float]], name: str) -> bool:
    return metrics is not None and name in metrics


def _feasible(metrics: Optional[Mapping[str, float]], constraints: Mapping[str, float]) -> bool:
    """Within every constraint the exact metrics answer (unknown metrics are checked after training)."""
    if metrics is None:
        return True
    return all(float(metrics[name]) <= bound for name, bound in constraints.items() if name in metrics)


def rank_correlation(predicted: Sequence[float], actual: Sequence[float]) -> Optional[float]:
    """Kendall's tau between predictions and outcomes (``None`` with fewer than 3 or no spread)."""
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return None
    tau = kendalltau(predicted, actual).statistic
    return None if not np.isfinite(tau) else float(tau)

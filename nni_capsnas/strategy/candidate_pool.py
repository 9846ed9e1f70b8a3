"""Candidate architectures for a surrogate-assisted generation: variations of what is trained,
and what NSGA-II finds on the predicted objectives.

Every function returns integer gene vectors ``(n, n_genes)`` within ``[0, upper_bounds]``;
duplicates and already-known architectures are removed by :func:`unique_new`.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.optimize import minimize

from .mutation import ResampleMutation
from .sampling import DistinctIntegerSampling

Key = tuple[int, ...]
#: Objective vectors (minimised) of a batch of gene vectors.
BatchObjectives = Callable[[np.ndarray], np.ndarray]


def mutants(parents: np.ndarray, upper_bounds: np.ndarray, rng: np.random.Generator, per_parent: int,
            max_genes: int = 2) -> np.ndarray:
    """``per_parent`` copies of each parent with 1 to ``max_genes`` genes set to another value."""
    if len(parents) == 0 or per_parent < 1:
        return np.zeros((0, len(upper_bounds)), dtype=int)
    mutable = np.flatnonzero(upper_bounds > 0)
    children = np.repeat(np.asarray(parents, dtype=int), per_parent, axis=0)
    if len(mutable) == 0:
        return children
    for child in children:
        changes = rng.integers(1, min(max_genes, len(mutable)) + 1)
        for gene in rng.choice(mutable, size=changes, replace=False):
            shift = rng.integers(1, upper_bounds[gene] + 1)  # any other value
            child[gene] = (child[gene] + shift) % (upper_bounds[gene] + 1)
    return children


def crossovers(parents: np.ndarray, upper_bounds: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uniform crossovers of random parent pairs, each then mutated in one gene."""
    if len(parents) < 2 or count < 1:
        return np.zeros((0, len(upper_bounds)), dtype=int)
    parents = np.asarray(parents, dtype=int)
    pairs = np.array([rng.choice(len(parents), size=2, replace=False) for _ in range(count)])
    mask = rng.random((count, parents.shape[1])) < 0.5
    children = np.where(mask, parents[pairs[:, 0]], parents[pairs[:, 1]])
    return mutants(children, upper_bounds, rng, per_parent=1, max_genes=1)


class _PredictedProblem(Problem):
    """pymoo problem on gene vectors whose objectives come from ``objectives`` (vectorised)."""

    def __init__(self, upper_bounds: np.ndarray, n_objectives: int, objectives: BatchObjectives) -> None:
        super().__init__(n_var=len(upper_bounds), n_obj=n_objectives, xl=np.zeros(len(upper_bounds)),
                         xu=upper_bounds.astype(float), vtype=int)
        self._objectives = objectives
        self.seen: list[np.ndarray] = []

    def _evaluate(self, x: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
        genes = np.rint(x).astype(int)
        self.seen.append(genes)
        out["F"] = self._objectives(genes)


def nsga2_on_predictions(objectives: BatchObjectives, upper_bounds: np.ndarray, starts: np.ndarray,
                         n_objectives: int, rng: np.random.Generator, *, population: int = 50,
                         generations: int = 20) -> np.ndarray:
    """Every gene vector pymoo's NSGA-II evaluates while optimising the predicted objectives.

    ``starts`` (e.g. the trained architectures) seed the first population, topped up with random
    vectors; all generations' vectors are returned, not only the last front, so the pool also
    holds near-front variety.
    """
    problem = _PredictedProblem(np.asarray(upper_bounds, dtype=int), n_objectives, objectives)
    seed_rng = np.random.default_rng(rng.integers(2 ** 32))
    extra = DistinctIntegerSampling()._do(problem, population, random_state=seed_rng)
    initial = np.vstack([np.asarray(starts, dtype=float).reshape(-1, len(upper_bounds)), extra])[:population]
    algorithm = PymooNSGA2(pop_size=population, sampling=initial, crossover=UniformCrossover(prob=0.9),
                           mutation=ResampleMutation(), eliminate_duplicates=True)
    minimize(problem, algorithm, ("n_gen", generations), seed=int(rng.integers(2 ** 31)), verbose=False)
    return np.vstack(problem.seen) if problem.seen else np.zeros((0, len(upper_bounds)), dtype=int)


def unique_new(vectors: Iterable[np.ndarray], known: set[Key]) -> list[Key]:
    """Distinct gene vectors not in ``known``, in first-seen order."""
    seen: dict[Key, None] = {}
    for block in vectors:
        for row in np.asarray(block, dtype=int):
            key = tuple(int(g) for g in row)
            if key not in known:
                seen.setdefault(key, None)
    return list(seen)

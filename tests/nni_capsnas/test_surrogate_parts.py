"""The surrogate-assisted search's pure parts, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import kendalltau

from nni_capsnas.strategy.candidate_pool import crossovers, mutants, unique_new
from nni_capsnas.strategy.early_stopping import cannot_reach_front, remaining_gain
from nni_capsnas.strategy.infill import epsilon_to_front, hypervolume_gains, select_batch
from nni_capsnas.strategy.objective_scale import ObjectiveScale
from nni_capsnas.strategy.objectives import Objectives
from nni_capsnas.strategy.pareto import hypervolume
from nni_capsnas.strategy.surrogate import ExtraTreesSurrogate

RNG = np.random.default_rng(0)


def _grid_hypervolume(points: np.ndarray, reference: np.ndarray, steps: int = 60) -> float:
    """Brute-force 2-D hypervolume on a grid (cell centres dominated by some point)."""
    xs = (np.arange(steps) + 0.5) / steps * reference[0]
    ys = (np.arange(steps) + 0.5) / steps * reference[1]
    covered = sum(any(p[0] <= x and p[1] <= y for p in points) for x, y in itertools.product(xs, ys))
    return covered / steps ** 2 * reference[0] * reference[1]


def test_hypervolume_gains_equal_the_brute_force_difference() -> None:
    front = np.array([[0.2, 0.8], [0.5, 0.4], [0.8, 0.1]])
    candidates = np.array([[0.3, 0.5], [0.9, 0.9], [0.1, 0.95], [0.5, 0.4]])
    reference = np.array([1.0, 1.0])
    gains = hypervolume_gains(front, candidates, reference)
    for point, gain in zip(candidates, gains):
        brute = _grid_hypervolume(np.vstack([front, point]), reference) - _grid_hypervolume(front, reference)
        assert gain == pytest.approx(brute, abs=0.02)
    assert gains[1] == 0 and gains[3] == 0  # dominated, and already on the front


def test_epsilon_is_the_smallest_shift_that_escapes_domination() -> None:
    front = RNG.random((8, 3))
    candidates = RNG.random((50, 3)) + 0.3
    epsilon = epsilon_to_front(front, candidates)
    for point, eps in zip(candidates, epsilon):
        dominated = lambda p: bool(np.any(np.all(front <= p, axis=1)))  # noqa: E731
        if eps == 0:
            assert not dominated(point)
        else:
            assert dominated(point - 0.999 * eps) and not dominated(point - 1.001 * eps)


def test_a_batch_takes_the_best_gain_first_and_no_near_duplicate() -> None:
    trained = np.array([[0.0, 1.0], [1.0, 0.0]])
    candidates = np.array([[0.4, 0.4], [0.41, 0.41], [0.2, 0.9], [0.9, 0.2]])
    genes = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 1], [2, 2, 2]])
    picks = select_batch(trained, candidates, genes, 3, reference=np.array([1.1, 1.1]))
    assert picks[0] == 0 and 1 not in picks and len(set(picks)) == 3


def test_the_cost_aware_batch_prefers_cheap_gains() -> None:
    trained = np.array([[0.0, 1.0], [1.0, 0.0]])
    candidates = np.array([[0.3, 0.3], [0.5, 0.5]])
    genes = np.array([[0, 0], [1, 1]])
    reference = np.array([1.1, 1.1])
    assert select_batch(trained, candidates, genes, 1, reference=reference) == [0]
    assert select_batch(trained, candidates, genes, 1, reference=reference, costs=np.array([100.0, 1.0])) == [1]


def test_mutants_and_crossovers_stay_in_bounds_and_change_genes() -> None:
    upper = np.array([3, 0, 5, 1])
    parents = np.array([[0, 0, 2, 1], [3, 0, 5, 0]])
    children = mutants(parents, upper, RNG, per_parent=50, max_genes=2)
    changed = np.sum(children != np.repeat(parents, 50, axis=0), axis=1)
    assert changed.min() >= 1 and changed.max() <= 2
    assert np.all(children >= 0) and np.all(children <= upper) and np.all(children[:, 1] == 0)
    mixed = crossovers(parents, upper, RNG, 40)
    assert mixed.shape == (40, 4) and np.all(mixed >= 0) and np.all(mixed <= upper)


def test_unique_new_drops_known_and_repeated_architectures() -> None:
    assert unique_new([np.array([[1, 2], [1, 2], [3, 4]]), np.array([[5, 6]])], {(3, 4)}) == [(1, 2), (5, 6)]


def test_log_scale_metrics_compare_by_their_logarithm_and_map_back() -> None:
    scale = ObjectiveScale(Objectives({"accuracy": "max", "energy_mj": "min"}))
    points = scale.points([{"accuracy": 0.9, "energy_mj": 100.0}])
    assert points.tolist() == [[-0.9, 2.0]]
    assert scale.metric_value(0, points[0, 0]) == pytest.approx(0.9)
    assert scale.metric_value(1, points[0, 1]) == pytest.approx(100.0)


def test_the_fixed_box_hypervolume_never_goes_down_as_points_are_added() -> None:
    scale = ObjectiveScale(Objectives({"accuracy": "max", "energy_mj": "min", "latency_ms": "min"}))
    rows = [{"accuracy": a, "energy_mj": e, "latency_ms": l}
            for a, e, l in zip(RNG.uniform(0.5, 1, 60), 10 ** RNG.uniform(-2, 2, 60), 10 ** RNG.uniform(-1, 1, 60))]
    scale.fix(scale.points(rows[:10]))
    volumes = [scale.hypervolume(scale.points(rows[:n])) for n in range(10, 61, 5)]
    assert all(later >= earlier - 1e-12 for earlier, later in zip(volumes, volumes[1:]))
    assert 0 < volumes[0] <= 1


def test_extra_trees_rank_unseen_architectures_and_know_what_they_have_not_seen() -> None:
    genes = np.array(list(itertools.product(range(5), range(5), range(4))))
    values = 0.5 * genes[:, 0] - 0.3 * (genes[:, 1] - 2) ** 2 + 0.2 * genes[:, 2] + RNG.normal(0, 0.1, len(genes))
    seen = RNG.choice(len(genes), 40, replace=False)
    unseen = np.setdiff1d(np.arange(len(genes)), seen)
    model = ExtraTreesSurrogate()
    model.fit(genes[seen], values[seen], seed=0)
    mean, std = model.predict(genes[unseen])
    assert kendalltau(mean, values[unseen]).statistic > 0.6
    _, std_seen = model.predict(genes[seen])
    assert std.mean() > std_seen.mean() >= 0


def test_surrogate_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="n_estimators must be >= 2"):
        ExtraTreesSurrogate(n_estimators=1)
    with pytest.raises(RuntimeError, match="not been fitted"):
        ExtraTreesSurrogate().predict(np.zeros((1, 2)))


def test_early_stopping_rule() -> None:
    curves = [[0.5, 0.7, 0.75], [0.6, 0.72, 0.8], [0.4, 0.5, 0.52]]
    assert remaining_gain(curves, 1, quantile=1.0) == pytest.approx(0.25)  # 0.5 -> 0.75
    assert remaining_gain([], 1) == float("inf")
    front = np.array([[-0.9, 1.0, 1.0]])
    assert cannot_reach_front(0.5, 0.2, np.array([1.5, 1.0]), front)       # 0.7 < 0.9 and no cheaper
    assert not cannot_reach_front(0.5, 0.2, np.array([0.5, 1.0]), front)   # cheaper: may join the front
    assert not cannot_reach_front(0.8, 0.2, np.array([1.5, 1.0]), front)   # could be more accurate

"""Unit tests of the NSGA-II strategy's pure parts: encoding, objectives, archive, fronts."""

from __future__ import annotations

import itertools

import nni
import numpy as np
import pytest
import torch

from nni_capsnas.strategy import NSGA2
from nni_capsnas.strategy.archive import FAILED, PENALTY, REJECTED, TRAINED, Archive, Evaluation
from nni_capsnas.strategy.encoding import SampleCodec
from nni_capsnas.strategy.objectives import Objectives
from nni_capsnas.strategy.pareto import hypervolume, non_dominated
from search_spaces import CapsNetSpace


def test_codec_round_trips_every_sample_of_a_space() -> None:
    codec = SampleCodec(CapsNetSpace().simplify())
    assert codec.labels == ["stem_channels", "primary_caps", "primary_dim", "primary_kernel", "iterations"]
    assert codec.space_size == 32
    seen = set()
    for vector in itertools.product(*(range(n + 1) for n in codec.upper_bounds)):
        sample = codec.decode(vector)
        assert codec.encode(sample) == vector
        seen.add(tuple(sorted(sample.items())))
    assert len(seen) == 32


def test_codec_rejects_bad_vectors_and_samples() -> None:
    codec = SampleCodec({"a": nni.choice("a", [1, 2]), "b": nni.choice("b", ["x", "y", "z"])})
    with pytest.raises(ValueError, match="gene 'b' must be in \\[0, 2\\], got 3"):
        codec.decode([0, 3])
    with pytest.raises(ValueError, match="2 genes, got 1"):
        codec.decode([0])
    with pytest.raises(ValueError, match="label 'a' must be one of \\[1, 2\\], got 5"):
        codec.encode({"a": 5, "b": "x"})
    with pytest.raises(ValueError, match="lacks label 'b'"):
        codec.encode({"a": 1})


def test_codec_refuses_non_categorical_labels() -> None:
    with pytest.raises(ValueError, match="label 'lr' is a Numerical"):
        SampleCodec({"lr": nni.uniform("lr", 0.1, 1.0)})


def test_objectives_minimisation_and_violations() -> None:
    objectives = Objectives({"accuracy": "max", "energy_mj": "min"}, {"energy_mj": 50})
    metrics = {"accuracy": 0.9, "energy_mj": 60.0}
    np.testing.assert_allclose(objectives.to_minimisation(metrics), [-0.9, 60.0])
    assert objectives.violations(metrics) == pytest.approx({"energy_mj": 0.2})
    assert objectives.missing({"accuracy": float("nan"), "energy_mj": 1.0}) == ["accuracy"]


@pytest.mark.parametrize("directions, constraints, message", [
    ({"accuracy": "maximise"}, None, "objectives.accuracy: must be 'max' or 'min', got 'maximise'"),
    ({}, None, "at least one metric"),
    (None, {"energy_mj": -1}, "constraints.energy_mj: must be a positive finite number, got -1"),
])
def test_objectives_reject_bad_specs(directions, constraints, message) -> None:
    with pytest.raises(ValueError, match=message):
        Objectives(directions, constraints)


def test_non_dominated_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(60, 3)).astype(float)
    brute = [i for i, p in enumerate(points)
             if not any(np.all(q <= p) and np.any(q < p) for q in points)]
    assert sorted(non_dominated(points)) == brute


def test_hypervolume_of_two_points_by_hand() -> None:
    # union of [1,4]x[2,4] and [2,4]x[1,4]: 6 + 6 - 4
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([4.0, 4.0])) == pytest.approx(8.0)


def _archive_with_outcomes() -> tuple[Archive, Objectives]:
    objectives = Objectives({"accuracy": "max", "energy_mj": "min"}, {"energy_mj": 50})
    archive = Archive()
    archive.record((0,), Evaluation({"a": 0}, TRAINED, {"accuracy": 0.9, "energy_mj": 40.0}))
    archive.record((1,), Evaluation({"a": 1}, TRAINED, {"accuracy": 0.8, "energy_mj": 10.0}))
    archive.record((2,), Evaluation({"a": 2}, TRAINED, {"accuracy": 0.7, "energy_mj": 20.0}))  # dominated
    archive.record((3,), Evaluation({"a": 3}, TRAINED, {"accuracy": 0.99, "energy_mj": 70.0}))  # breaks budget
    archive.record((4,), Evaluation({"a": 4}, FAILED, {}, "trial failed"))
    archive.record((5,), Evaluation({"a": 5}, REJECTED, {"energy_mj": 80.0}, "energy"))
    return archive, objectives


def test_front_excludes_dominated_failed_rejected_and_infeasible() -> None:
    archive, objectives = _archive_with_outcomes()
    assert [key for key, _ in archive.front(objectives)] == [(0,), (1,)]


def test_failed_and_rejected_are_infeasible_for_pymoo() -> None:
    archive, objectives = _archive_with_outcomes()
    F, G = archive.objective_arrays([(0,), (3,), (4,), (5,)], objectives)
    np.testing.assert_allclose(F[0], [-0.9, 40.0])
    assert np.all(G[0] <= 0)
    assert G[1, 1] == pytest.approx(0.4)          # 70 / 50 - 1
    assert G[2, 0] == 1.0 and np.all(F[2] == PENALTY)
    assert G[3, 1] == pytest.approx(0.6) and np.all(F[3] == PENALTY)


def test_archive_state_round_trips_through_torch_weights_only(tmp_path) -> None:
    archive, objectives = _archive_with_outcomes()
    archive.record((6,), Evaluation({"a": 6}, "running"))
    path = tmp_path / "state.pt"
    torch.save({"archive": archive.state_dict()}, path)
    restored = Archive()
    restored.load_state_dict(torch.load(path, weights_only=True)["archive"])
    assert restored.state_dict() == archive.state_dict()
    assert restored.forget_running() == 1 and (6,) not in restored
    assert [k for k, _ in restored.front(objectives)] == [(0,), (1,)]


def test_strategy_state_dict_is_plain_and_restores(tmp_path) -> None:
    strategy = NSGA2(population_size=4, objectives={"accuracy": "max", "params": "min"}, surrogate=None)
    strategy.archive.record((1, 0), Evaluation({"x": 1}, TRAINED, {"accuracy": 0.5, "params": 3.0}))
    strategy.generation = 3
    strategy.load_state_dict({**strategy.state_dict(), "population": [[1, 0], [0, 1]]})
    path = tmp_path / "strategy.pt"
    torch.save(strategy.state_dict(), path)
    other = NSGA2(population_size=4, objectives={"accuracy": "max", "params": "min"}, surrogate=None)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert other.generation == 3 and other.state_dict()["population"] == [[1, 0], [0, 1]]
    assert other.pareto_front() == [{"sample": {"x": 1}, "accuracy": 0.5, "params": 3.0}]


@pytest.mark.parametrize("kwargs, message", [
    ({"population_size": 1}, "population_size must be >= 2, got 1"),
    ({"offspring_size": 0}, "offspring_size must be >= 1, got 0"),
    ({"objectives": {"accuracy": "up"}}, "must be 'max' or 'min'"),
])
def test_strategy_rejects_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        NSGA2(**kwargs)

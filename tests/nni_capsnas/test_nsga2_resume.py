"""NSGA2 on NNI's sequential engine: a stopped and resumed search proposes exactly what an
uninterrupted one does; the surrogate-assisted search never trains an architecture twice and
screens its pool with the exact hardware metrics and constraints."""

from __future__ import annotations

import io
from typing import Any, Mapping

import nni
import pytest
import torch
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import SimplifiedModelSpace, model_context

from nni_capsnas.strategy import NSGA2
from nni_capsnas.strategy.archive import TRAINED
from search_spaces.nascaps_space import register_labels

CHOICES = {"width": [1, 2, 3, 4, 5], "depth": [1, 2, 3, 4], "kernel": [1, 3, 5], "skip": [0, 1, 2]}


class ArithmeticSpace(ModelSpace):
    """300 architectures whose metrics are arithmetic on their choices (no training needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.arch = register_labels(self, {label: nni.choice(label, values) for label, values in CHOICES.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def freeze(self, sample: Mapping[str, Any]) -> "ArithmeticSpace":
        self.validate(dict(sample))
        with model_context(dict(sample)):
            return self.__class__()


def _report(model: Any) -> None:
    values = model.arch
    width, depth, kernel, skip = (values[label] for label in CHOICES)
    accuracy = 1 - 1 / (1 + width * depth + kernel / 2 + 0.3 * skip)
    nni.report_final_result({"default": accuracy, "accuracy": accuracy,
                             "energy_mj": width * depth * kernel + skip, "latency_ms": depth * kernel + 2 * skip})


def _run(budget: int, state: dict | None = None, surrogate: Any = None) -> NSGA2:
    strategy = NSGA2(population_size=6, offspring_size=4, seed=3, surrogate=surrogate, pool_size=300,
                     objectives={"accuracy": "max", "energy_mj": "min", "latency_ms": "min"})
    if state is not None:
        strategy.load_state_dict(state)
    space = SimplifiedModelSpace.from_model(ArithmeticSpace(), FunctionalEvaluator(_report))
    strategy(space, SequentialExecutionEngine(max_model_count=budget))
    return strategy


def _trained(strategy: NSGA2) -> list[tuple[int, ...]]:
    return [key for key, entry in strategy.archive.items() if entry.status == TRAINED]


@pytest.mark.parametrize("surrogate", [None, "gaussian-process"], ids=["plain", "surrogate"])
@pytest.mark.parametrize("first_budget", [14, 12], ids=["at-a-generation-end", "mid-generation"])
def test_stop_and_resume_proposes_the_uninterrupted_sequence(first_budget: int, surrogate: Any) -> None:
    total = 30  # 6 initial + 6 generations of 4 offspring
    uninterrupted = _trained(_run(total, surrogate=surrogate))
    assert len(uninterrupted) == total and len(set(uninterrupted)) == total

    stopped = _run(first_budget, surrogate=surrogate)
    state = stopped.state_dict()
    torch.save(state, io.BytesIO())
    assert _trained(stopped) == uninterrupted[:first_budget]
    resumed = _run(total - first_budget, _reloaded(state), surrogate=surrogate)
    assert _trained(resumed) == uninterrupted


def _reloaded(state: dict) -> dict:
    """The state as NNI's checkpoint gives it back (``torch.load(weights_only=True)``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_checkpoint_holds_the_generator_state_as_plain_data() -> None:
    state = _reloaded(_run(10).state_dict())
    assert isinstance(state["rng_state"], str) and "PCG64" in state["rng_state"]
    assert len(state["population"]) == len(state["population_rank"]) == len(state["population_crowding"]) == 6
    state = _reloaded(_run(10, surrogate="gaussian-process").state_dict())
    assert "PCG64" in state["surrogate_rng_state"] and state["hypervolume_box"]["reference"] is not None


def _hardware(sample: Mapping[str, Any]) -> dict[str, float]:
    width, depth, kernel, skip = (sample[label] for label in CHOICES)
    return {"energy_mj": width * depth * kernel + skip, "latency_ms": depth * kernel + 2 * skip}


@pytest.mark.parametrize("surrogate", ["gaussian-process", "extra-trees"])
def test_surrogate_search_screens_the_pool_with_exact_costs_and_constraints(surrogate: str) -> None:
    strategy = NSGA2(population_size=6, offspring_size=4, seed=1, surrogate=surrogate, pool_size=300,
                     objectives={"accuracy": "max", "energy_mj": "min", "latency_ms": "min"},
                     constraints={"energy_mj": 40}, hardware_estimator=_hardware)
    space = SimplifiedModelSpace.from_model(ArithmeticSpace(), FunctionalEvaluator(_report))
    strategy(space, SequentialExecutionEngine(max_model_count=26))
    trained = [entry for _, entry in strategy.archive.items() if entry.status == TRAINED]
    assert len(trained) == 26 and len({str(e.sample) for e in trained}) == 26
    # the random first generation may break the budget (rejected before training); the surrogate's picks never do
    later = [e for e in list(strategy.archive._entries.values())[6:] if e.status != "rejected"]
    assert all(e.metrics["energy_mj"] <= 40 for e in later)
    assert strategy.pareto_front() and all(m["energy_mj"] <= 40 for m in strategy.pareto_front())


def test_a_bad_surrogate_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="surrogate must be one of extra-trees, gaussian-process"):
        NSGA2(surrogate="neural-net")
    with pytest.raises(ValueError, match="fit\\(\\) and predict\\(\\)"):
        NSGA2(surrogate=object())

"""A stopped and resumed NSGA2 proposes exactly what an uninterrupted one does (NNI's sequential engine)."""

from __future__ import annotations

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


def _run(budget: int, state: dict | None = None) -> NSGA2:
    strategy = NSGA2(population_size=6, offspring_size=4, seed=3,
                     objectives={"accuracy": "max", "energy_mj": "min", "latency_ms": "min"})
    if state is not None:
        strategy.load_state_dict(state)
    space = SimplifiedModelSpace.from_model(ArithmeticSpace(), FunctionalEvaluator(_report))
    strategy(space, SequentialExecutionEngine(max_model_count=budget))
    return strategy


def _trained(strategy: NSGA2) -> list[tuple[int, ...]]:
    return [key for key, entry in strategy.archive.items() if entry.status == TRAINED]


@pytest.mark.parametrize("first_budget", [14, 12], ids=["at-a-generation-end", "mid-generation"])
def test_stop_and_resume_proposes_the_uninterrupted_sequence(first_budget: int) -> None:
    total = 30  # 6 initial + 6 generations of 4 offspring
    uninterrupted = _trained(_run(total))
    assert len(uninterrupted) == total and len(set(uninterrupted)) == total

    stopped = _run(first_budget)
    state = stopped.state_dict()
    assert _trained(stopped) == uninterrupted[:first_budget]
    resumed = _run(total - first_budget, state)
    assert _trained(resumed) == uninterrupted


def test_checkpoint_holds_the_generator_state_as_plain_data() -> None:
    state = _run(10).state_dict()
    assert isinstance(state["rng_state"], str) and "PCG64" in state["rng_state"]
    assert len(state["population"]) == len(state["population_rank"]) == len(state["population_crowding"]) == 6
    torch.save(state, "/dev/null")  # plain data: loadable with weights_only=True (checked in the crash drill)

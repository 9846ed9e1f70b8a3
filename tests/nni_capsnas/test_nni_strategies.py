"""NNI's own strategies run the same space and hardware-aware evaluator as NSGA2."""

from __future__ import annotations

from typing import Any

import pytest
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.space import ModelStatus, SimplifiedModelSpace
from nni.nas.strategy import TPE, Random, RegularizedEvolution

from nni_capsnas.strategy import NSGA2
from search_spaces import CapsNetSpace
from trials.evaluator import hardware_aware_evaluator

TINY = {"stem_channels": [8], "primary_caps": [2, 4], "primary_dim": [4], "primary_kernel": [3],
        "iterations": [1, 2], "decoder": False}
HARDWARE_KEYS = {"energy_mj", "latency_ms", "memory_kib", "params", "macs"}


@pytest.mark.parametrize("strategy", [
    Random(seed=0), RegularizedEvolution(population_size=2, sample_size=2, seed=0), TPE(),
    NSGA2(population_size=2, offspring_size=1, seed=0),
], ids=["random", "regularized-evolution", "tpe", "nsga2"])
def test_strategy_trains_and_costs_every_sampled_network(strategy: Any) -> None:
    evaluator = hardware_aware_evaluator(dataset="digits", epochs=1, measure_host=False)
    space = SimplifiedModelSpace.from_model(CapsNetSpace(**TINY), evaluator)
    reported: list[dict] = []
    engine = SequentialExecutionEngine(max_model_count=3)
    engine.register_model_event_callback("final_metric", lambda event: reported.append(dict(event.metric)))
    strategy(space, engine)
    models = list(strategy.list_models(sort=False))
    assert len(models) == 3 and all(model.status == ModelStatus.Trained for model in models)
    assert len(reported) == 3
    for metric in reported:
        assert metric["default"] == metric["accuracy"] and 0.0 <= metric["accuracy"] <= 1.0
        assert HARDWARE_KEYS <= set(metric) and metric["energy_mj"] > 0

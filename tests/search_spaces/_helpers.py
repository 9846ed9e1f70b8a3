"""Helpers shared by the model-space tests."""

from __future__ import annotations

from typing import Any

import nni
import numpy as np
import torch
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import ExecutableModelSpace, SimplifiedModelSpace


def random_sample(space: ModelSpace, seed: int, **overrides: Any) -> dict[str, Any]:
    """A seeded random architecture of ``space``, with some labels overridden."""
    sample: dict[str, Any] = {}
    state = np.random.RandomState(seed)
    for mutable in space.simplify().values():
        mutable.random(sample, state)
    return {**sample, **overrides}


def _report_output_scale(model: torch.nn.Module) -> None:
    with torch.no_grad():
        out = model.eval()(torch.rand(2, *model.input_shape))
    nni.report_final_result(float(out.abs().mean()))


def run_nni_strategy(space: ModelSpace, strategy: Any, models: int = 3) -> list[ExecutableModelSpace]:
    """Run one of NNI's multi-trial strategies on ``space`` in-process for ``models`` evaluations."""
    executable = SimplifiedModelSpace.from_model(space, FunctionalEvaluator(_report_output_scale))
    strategy(executable, SequentialExecutionEngine(max_model_count=models))
    return list(strategy.list_models())

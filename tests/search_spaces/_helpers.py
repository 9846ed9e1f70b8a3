"""Helpers shared by the model-space tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nni
import numpy as np
import onnxruntime
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


def assert_sampling_is_seeded(space: ModelSpace) -> None:
    """Equal seeds give equal samples and plans; another seed gives another sample."""
    first = space.random(memo=(a := {}), random_state=np.random.RandomState(7))
    second = space.random(memo=(b := {}), random_state=np.random.RandomState(7))
    space.random(memo=(c := {}), random_state=np.random.RandomState(8))
    assert a == b and a != c
    assert first.plan == second.plan


def assert_round_trips_through_serialization(space: ModelSpace, output_shape: tuple[int, ...]) -> None:
    """A sample in NNI's simplified format survives ``nni.dump``/``nni.load`` and runs."""
    model = SimplifiedModelSpace.from_model(space).random(random_state=np.random.RandomState(5))
    network = nni.load(nni.dump(model)).executable_model()
    assert network.plan == space.plan_for(model.sample)
    assert network(torch.rand(2, *space.input_shape)).shape == output_shape


def assert_onnx_matches_torch(model: torch.nn.Module, input_shape: tuple[int, ...], tmp_path: Path) -> None:
    """The dynamo ONNX export of ``model`` gives torch's output in onnxruntime (atol 1e-4)."""
    x = torch.rand(1, *input_shape)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, model(x).numpy(), rtol=0, atol=1e-4)

"""One-shot (weight-sharing) search over capsule layers with NNI's DARTS, GumbelDARTS and RandomOneShot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from nni.nas.experiment import NasExperiment
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.strategy import DARTS, GumbelDARTS, RandomOneShot
from nni.tools.nnictl import config_utils
from torch import nn

from nni_capsnas.modules import ClassCaps, PrimaryCaps
from nni_capsnas.modules.oneshot import MixedCapsOperation, MixedClassCaps, MixedPrimaryCaps
from search_spaces import CapsNetSpace
from trials.lightning import capsule_evaluator


@pytest.fixture()
def nni_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point NNI's experiment manifest (``~/nni-experiments/.experiment``) into ``tmp_path``."""
    home = tmp_path / "nni-home"
    monkeypatch.setattr(config_utils.Experiments.__init__, "__defaults__", (str(home),))
    return home


def _space_grid() -> list[dict[str, Any]]:
    mutables = CapsNetSpace().simplify()
    return [dict(zip(mutables, values)) for values in itertools.product(*(m.values for m in mutables.values()))]


def _config(op: MixedCapsOperation, sample: dict[str, Any]) -> dict[str, Any]:
    """The concrete layer arguments of ``op`` for ``sample``."""
    config = dict(op.init_arguments)
    config.update({name: expr.freeze(sample) for name, expr in op.mutable_arguments.items()})
    return config


def _resample(supernet: nn.Module, sample: dict[str, Any]) -> None:
    for module in supernet.modules():
        if isinstance(module, BaseSuperNetModule):
            module.resample(sample)


def _pad_to(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    out = tensor.new_zeros(shape)
    out[tuple(slice(0, n) for n in tensor.shape)] = tensor
    return out


# --- mixed operations --------------------------------------------------------------------


def test_strategies_turn_capsule_layers_into_mixed_operations() -> None:
    for strategy in (DARTS(), GumbelDARTS(), RandomOneShot()):
        supernet = strategy.mutate_model(CapsNetSpace())
        assert type(supernet.primary) is MixedPrimaryCaps
        assert type(supernet.class_caps) is MixedClassCaps
        # the super-kernel is the largest layer
        kernel = supernet.primary.kernel
        assert (kernel.in_channels, kernel.out_caps, kernel.caps_dim) == (32, 8, 8)
        assert kernel.conv.kernel_size == (5, 5)
        assert (supernet.class_caps.kernel.in_caps, supernet.class_caps.kernel.in_dim) == (8 * 64, 8)


@pytest.mark.parametrize("name, in_shape", [("primary", (2, 32, 8, 8)), ("class_caps", (2, 8 * 64, 8))])
def test_frozen_mixed_op_equals_the_supernet_configuration(name: str, in_shape: tuple[int, ...]) -> None:
    supernet = RandomOneShot().mutate_model(CapsNetSpace())
    op: MixedCapsOperation = getattr(supernet, name)
    x = torch.rand(*in_shape)
    for sample in _space_grid():
        config = _config(op, sample)
        frozen = op.freeze(sample)
        assert type(frozen) is op.bound_type
        narrowed = x[:, :config["in_channels"]] if name == "primary" else x[:, :config["in_caps"], :config["in_dim"]]
        torch.testing.assert_close(frozen(narrowed), op.run_config(config, x), rtol=0, atol=0)


def test_frozen_primary_caps_shares_its_capsules_and_the_centre_of_the_super_kernel() -> None:
    supernet = DARTS().mutate_model(CapsNetSpace())
    frozen = supernet.primary.freeze({"stem_channels": 16, "primary_caps": 4, "primary_dim": 4, "primary_kernel": 3})
    assert isinstance(frozen, PrimaryCaps)
    # super-kernel: 8 capsule types x 8 dims, 32 input channels, 5x5; the frozen layer keeps
    # capsules 0-3 and, in each, dims 0-3 (not the first 16 flat channels)
    super_weight = supernet.primary.kernel.conv.weight.view(8, 8, 32, 5, 5)
    expected = super_weight[:4, :4].reshape(16, 32, 5, 5)[:, :16, 1:4, 1:4]
    torch.testing.assert_close(frozen.conv.weight, expected, rtol=0, atol=0)
    super_bias = supernet.primary.kernel.conv.bias.view(8, 8)
    torch.testing.assert_close(frozen.conv.bias, super_bias[:4, :4].reshape(16), rtol=0, atol=0)


def test_path_sampling_supernet_runs_the_sampled_network_with_shared_weights() -> None:
    supernet = RandomOneShot().mutate_model(CapsNetSpace())
    images = torch.rand(2, 1, 8, 8)
    for sample in _space_grid()[::5]:
        _resample(supernet, sample)
        model = supernet.freeze(sample)
        assert isinstance(model.class_caps, ClassCaps) and model.class_caps.iterations == sample["iterations"]
        torch.testing.assert_close(supernet(images), model(images), rtol=0, atol=0)


# In a differentiable supernet a layer mixes the candidates of the labels that shape its
# output; labels that only size its input (the upstream layer's choices) are read whole,
# since that input already is the upstream mix, zero-padded to the largest candidate.
DIFFERENTIABLE_CASES = [
    ("primary", (2, 32, 8, 8), ["primary_caps", "primary_dim", "primary_kernel"], {"stem_channels": 32}),
    ("class_caps", (2, 8 * 64, 8), ["iterations"], {"primary_caps": 8, "primary_dim": 8}),
]


@pytest.mark.parametrize("name, in_shape, mixed, input_only", DIFFERENTIABLE_CASES)
def test_differentiable_mixed_op_is_the_probability_weighted_sum_of_padded_outputs(
        name: str, in_shape: tuple[int, ...], mixed: list[str], input_only: dict[str, int]) -> None:
    supernet = DARTS().mutate_model(CapsNetSpace())
    op: MixedCapsOperation = getattr(supernet, name)
    assert set(op.simplify()) == set(mixed) | set(input_only)
    with torch.no_grad():
        for alpha in op._arch_alpha.values():
            alpha.copy_(torch.randn_like(alpha))
    candidates = {label: op.simplify()[label].values for label in mixed}
    probs = {label: torch.softmax(op._arch_alpha[label].detach(), dim=-1) for label in mixed}
    x = torch.rand(*in_shape)
    outputs, weights = [], []
    for values in itertools.product(*candidates.values()):
        sample = dict(zip(mixed, values))
        outputs.append(op.run_config(_config(op, {**sample, **input_only}), x).detach())
        weights.append(torch.stack([probs[label][candidates[label].index(value)]
                                    for label, value in sample.items()]).prod())
    assert len(outputs) > 1
    assert float(torch.stack(weights).sum()) == pytest.approx(1.0, abs=1e-6)
    shape = tuple(max(sizes) for sizes in zip(*(o.shape for o in outputs)))
    expected = sum(w * _pad_to(o, shape) for w, o in zip(weights, outputs))
    actual = op(x)
    torch.testing.assert_close(actual.detach(), expected, rtol=1e-5, atol=1e-6)
    actual.square().sum().backward()
    for label in mixed:
        grad = op._arch_alpha[label].grad
        assert grad is not None and bool(grad.abs().sum() > 0), f"no gradient for {label}"


# --- one-shot experiments ----------------------------------------------------------------


class _RecordsInitialAlphas:
    """Mixin for a differentiable strategy: remember the architecture parameters as initialised."""

    def mutate_model(self, model):  # type: ignore[no-untyped-def]
        model = super().mutate_model(model)  # type: ignore[misc]
        self.initial_alphas = {name: p.detach().clone() for name, p in model.named_parameters()
                               if "_arch_alpha" in name}
        return model


class _RecordingDARTS(_RecordsInitialAlphas, DARTS):
    pass


class _RecordingGumbelDARTS(_RecordsInitialAlphas, GumbelDARTS):
    pass


def _run_oneshot(strategy: Any, tmp_path: Path) -> tuple[NasExperiment, dict[str, Any]]:
    exp = NasExperiment(CapsNetSpace(), capsule_evaluator("digits", epochs=1, limit_train_batches=5), strategy)
    exp.config.experiment_working_directory = str(tmp_path / "experiments")
    try:
        exp.run()
        architecture = exp.export_top_models(formatter="dict")[0]
    finally:
        exp.stop()
    return exp, architecture


def _assert_valid_sample(architecture: dict[str, Any]) -> None:
    space = CapsNetSpace().simplify()
    assert set(architecture) == set(space)
    for label, value in architecture.items():
        assert value in space[label].values, f"{label}={value!r} is not a candidate"
    CapsNetSpace().freeze(architecture)


def _assert_stopped_in(exp: NasExperiment, tmp_path: Path, nni_home: Path) -> None:
    assert (tmp_path / "experiments" / exp.id / "checkpoint" / "config.json").is_file()
    assert config_utils.Experiments(str(nni_home)).experiments[exp.id]["status"] == "STOPPED"


@pytest.mark.parametrize("strategy_type", [_RecordingDARTS, _RecordingGumbelDARTS])
def test_differentiable_search_learns_architecture_parameters(strategy_type: type, tmp_path: Path,
                                                              nni_home: Path) -> None:
    strategy = strategy_type()
    exp, architecture = _run_oneshot(strategy, tmp_path)
    _assert_valid_sample(architecture)
    _assert_stopped_in(exp, tmp_path, nni_home)
    final = {name: p.detach() for name, p in strategy.supernet.named_parameters() if "_arch_alpha" in name}
    assert set(final) == set(strategy.initial_alphas) and final
    assert {name.rpartition(".")[2] for name in final} == set(architecture)
    for name, alpha in final.items():
        assert not torch.equal(alpha, strategy.initial_alphas[name]), f"{name} did not change"
        label = name.rpartition(".")[2]
        assert architecture[label] == CapsNetSpace().simplify()[label].values[int(alpha.argmax())]


def test_random_one_shot_search_exports_a_valid_sample(tmp_path: Path, nni_home: Path) -> None:
    exp, architecture = _run_oneshot(RandomOneShot(), tmp_path)
    _assert_valid_sample(architecture)
    _assert_stopped_in(exp, tmp_path, nni_home)

"""E2RNAS: expected resource costs, the MGDA architecture step, and whole searches inside NNI."""

from __future__ import annotations

import functools
import itertools
import logging
from pathlib import Path
from typing import Any

import nni
import pytest
import torch
from torch import nn
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableConv2d, MutableLinear, Repeat
from nni.nas.oneshot.pytorch.supermodule._expression_utils import expression_expectation
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.profiler.pytorch.flops import NumParamsProfiler
from nni.nas.strategy import DARTS

from nni_capsnas.modules import class_logits
from nni_capsnas.strategy.choice_margin import choice_margins, near_ties
from nni_capsnas.strategy.e2rnas import E2RNAS
from nni_capsnas.strategy.expected_cost import ExpectedLabelCost, ExpectedParams, HardwareCostTable
from nni_capsnas.strategy.mgda import mgda_weights, normalize_gradients
from nni_capsnas.strategy.resource import ResourceConstraint
from search_spaces.capsule_cell_space import CapsuleCellSpace
from search_spaces.darts_cell_space import DartsCellSpace
from tests.conftest import DEVICES
from trials.attacks import attack_loss, fgsm
from trials.datasets import load_dataset
from trials.lightning import CapsuleClassificationModule, capsule_evaluator
from trials.losses import ClassificationLoss

SMALL = dict(primary_caps=(2, 4), primary_dim=(4, 8), feature_ops=("conv3x3", "max_pool3x3", "skip"),
             class_dim=4)
#: Two searched labels only: three networks to export for the hardware table.
TINY = dict(primary_caps=(2, 4), primary_dim=(4,), feature_ops=("conv3x3", "skip"), capsule_ops=("skip",),
            routing_iterations=(1,), class_dim=4)


def _randomize_alphas(supernet: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in supernet.named_parameters():
            if "_arch_alpha" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))


def _label_probs(supernet: torch.nn.Module) -> dict[str, dict[Any, float]]:
    probs: dict[str, dict[Any, float]] = {}
    for module in supernet.modules():
        if isinstance(module, BaseSuperNetModule):
            probs.update(module.export_probs(probs))
    return probs


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- expected parameter count ----------------------------------------------------------------


def test_expected_params_equals_the_expectation_over_frozen_networks() -> None:
    """Brute force: sum over every sample of P(sample) * params(space.freeze(sample))."""
    supernet = DARTS().mutate_model(CapsuleCellSpace(**SMALL))
    _randomize_alphas(supernet, seed=1)
    probs = _label_probs(supernet)
    space = CapsuleCellSpace(**SMALL)
    mutables = space.simplify()
    assert set(probs) == set(mutables)
    brute = 0.0
    for values in itertools.product(*(m.values for m in mutables.values())):
        sample = dict(zip(mutables, values))
        weight = 1.0
        for label, value in sample.items():
            weight *= probs[label][value]
        brute += weight * _count(space.freeze(sample))
    assert ExpectedParams(supernet)().item() == pytest.approx(brute, rel=1e-6)
    assert brute > 0


class _ConvSpace(ModelSpace):
    """A space NNI's NumParamsProfiler can analyse: mutable width, a LayerChoice and a Repeat."""

    def __init__(self) -> None:
        super().__init__()
        width = nni.choice("width", [4, 8])
        self.stem = MutableConv2d(1, width, 3, padding=1)
        self.op = LayerChoice({"c3": MutableConv2d(width, width, 3, padding=1),
                               "c5": MutableConv2d(width, width, 5, padding=2),
                               "c1": MutableConv2d(width, width, 1)}, label="op")
        self.blocks = Repeat(lambda index: MutableConv2d(width, width, 1), nni.choice("depth", [1, 2, 3]))
        self.fc = MutableLinear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.op(self.stem(x))).mean(dim=(2, 3)))


def test_expected_params_matches_nni_profiler_and_expression_expectation() -> None:
    expression = NumParamsProfiler(_ConvSpace(), torch.zeros(1, 1, 8, 8)).expression
    supernet = DARTS().mutate_model(_ConvSpace())
    for seed in range(3):
        _randomize_alphas(supernet, seed)
        weights = {label: list(dist.values()) for label, dist in _label_probs(supernet).items()}
        assert ExpectedParams(supernet)().item() == pytest.approx(expression_expectation(expression, weights),
                                                                  rel=1e-6)


def _grad_of(expected: Any, alpha: torch.Tensor) -> torch.Tensor:
    alpha.grad = None
    expected().backward()
    return alpha.grad.clone()


def test_expected_params_gradient_points_to_bigger_candidates() -> None:
    supernet = DARTS().mutate_model(CapsuleCellSpace(**SMALL))
    expected = ExpectedParams(supernet)
    feature = supernet.feature._arch_alpha  # conv3x3, max_pool3x3, skip; uniform-ish at start
    gradient = _grad_of(expected, feature)
    assert gradient[0] > 0 and gradient[1] < 0 and gradient[2] < 0
    caps = supernet.primary._arch_alpha["primary_caps"]  # 2, 4
    gradient = _grad_of(expected, caps)
    assert gradient[1] > 0 > gradient[0]
    before = expected().item()
    with torch.no_grad():
        feature[0] += 0.5  # more probability on the convolution
    assert expected().item() > before


def test_expected_params_of_nni_darts_cells_follow_the_edge_relaxation() -> None:
    supernet = DARTS().mutate_model(DartsCellSpace(width=2, num_cells=3))
    expected = ExpectedParams(supernet)
    cell = next(m for m in supernet.modules() if type(m).__name__ == "DifferentiableMixedCell")
    names = cell.op_names
    alpha = cell._arch_alpha[f"{cell.label}/2_0"]
    assert alpha.numel() == len(names) + 1  # the last slot is "none"
    gradient = _grad_of(expected, alpha)
    assert gradient[names.index("sep_conv_5x5")] > 0
    assert gradient[names.index("max_pool_3x3")] < 0 and gradient[-1] < 0
    assert expected.constant > 0


# --- hardware costs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_table() -> HardwareCostTable:
    return HardwareCostTable.estimate(CapsuleCellSpace(**TINY), input_shape=(1, 8, 8), accelerator="capsacc")


def test_hardware_table_and_its_first_order_expectation(tiny_table: HardwareCostTable) -> None:
    assert tiny_table.reference == {"feature_op": "conv3x3", "primary_caps": 2, "primary_dim": 4,
                                    "capsule_op": "skip", "routing_iterations": 1}
    energy = {label: [v["energy_mj"] for v in variants] for label, variants in tiny_table.variants.items()}
    assert energy["feature_op"][0] == tiny_table.base["energy_mj"] > energy["feature_op"][1]  # conv > skip
    assert energy["primary_caps"][1] > energy["primary_caps"][0]
    alphas = {"feature_op": torch.zeros(2, requires_grad=True), "primary_caps": torch.zeros(2, requires_grad=True)}
    expected = ExpectedLabelCost(tiny_table, metric="energy_mj", alphas=alphas)
    with torch.no_grad():  # one-hot on a one-label change: the estimate is exact
        alphas["feature_op"].copy_(torch.tensor([-50.0, 50.0]))
        alphas["primary_caps"].copy_(torch.tensor([50.0, -50.0]))
    assert expected().item() == pytest.approx(energy["feature_op"][1], rel=1e-9)
    with torch.no_grad():
        for alpha in alphas.values():
            alpha.zero_()
    assert _grad_of(expected, alphas["feature_op"])[0] > 0  # more convolution, more energy
    assert _grad_of(expected, alphas["primary_caps"])[1] > 0  # more capsules, more energy
    with pytest.raises(ValueError, match="label 'primary_caps' changes energy_mj but has no architecture parameter"):
        ExpectedLabelCost(tiny_table, metric="energy_mj", alphas={"feature_op": alphas["feature_op"]})
    with pytest.raises(ValueError, match="metric must be one of"):
        ExpectedLabelCost(tiny_table, metric="flops", alphas=alphas)


@pytest.mark.parametrize("device", DEVICES)
def test_hardware_cost_table_moves_to_the_architecture_parameters_device(tiny_table: HardwareCostTable,
                                                                        device: str) -> None:
    """The supernet trains on a GPU: its cost expectation is computed there, with the CPU's value."""
    alphas = {label: torch.tensor([0.3, -0.2]) for label in ("feature_op", "primary_caps")}
    on_cpu = ExpectedLabelCost(tiny_table, metric="energy_mj", alphas=alphas)()
    moved = {label: nn.Parameter(alpha.to(device)) for label, alpha in alphas.items()}
    expected = ExpectedLabelCost(tiny_table, metric="energy_mj", alphas=moved)
    for _ in range(2):  # the second call reuses the table already on the device
        value = expected()
        assert value.device.type == device and value.dtype == torch.float64
        assert value.item() == pytest.approx(on_cpu.item(), rel=1e-12)
    assert _grad_of(expected, moved["feature_op"]).device.type == device


def test_hardware_metrics_are_refused_on_cell_spaces() -> None:
    strategy = E2RNAS(resources=[{"metric": "energy_mj", "target": 1.0}])
    with pytest.raises(ValueError, match="NNI cells have per-edge parameters"):
        strategy.mutate_model(DartsCellSpace(width=2))


# --- constraints and arguments ---------------------------------------------------------------


def test_resource_constraint_modes() -> None:
    value = torch.tensor(150.0)
    assert float(ResourceConstraint(metric="params", target=100.0, mode="abs").loss(value)) == pytest.approx(0.5)
    assert float(ResourceConstraint(metric="params", target=200.0, mode="abs").loss(value)) == pytest.approx(0.25)
    assert float(ResourceConstraint(metric="params", target=100.0, mode="max").loss(value)) == pytest.approx(0.5)
    assert float(ResourceConstraint(metric="params", target=200.0, mode="max").loss(value)) == 0.0
    assert float(ResourceConstraint(metric="energy_mj", target=50.0, mode="none").loss(value)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="mode must be one of \\('abs', 'max', 'none'\\), got 'min'"):
        ResourceConstraint(mode="min")
    with pytest.raises(ValueError, match="target of params must be a positive number, got 0"):
        ResourceConstraint(target=0)
    with pytest.raises(ValueError, match="metric must be one of"):
        ResourceConstraint(metric="flops")
    with pytest.raises(ValueError, match="unknown resource option\\(s\\) \\['budget'\\]"):
        ResourceConstraint.from_mapping({"metric": "params", "budget": 3})


def test_e2rnas_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="gradient_normalization must be one of"):
        E2RNAS(gradient_normalization="l1")
    with pytest.raises(ValueError, match="adversary must be callable"):
        E2RNAS(adversary="fgsm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight_adversarial > 0 needs an adversary"):
        E2RNAS(weight_adversarial=0.5)
    with pytest.raises(ValueError, match="wrap it in a list"):
        E2RNAS(resources={"metric": "params", "target": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_shape must be"):
        E2RNAS(input_shape=(8, 8))
    with pytest.raises(ValueError, match="upper_loss must be one of \\('training', 'cross_entropy'\\), got 'margin'"):
        E2RNAS(upper_loss="margin")
    with pytest.raises(ValueError, match="combine must be one of \\('raw', 'normalized'\\), got 'sum'"):
        E2RNAS(combine="sum")
    with pytest.raises(ValueError, match="capsule_logits must be one of \\('log_odds', 'scaled_length', 'length'\\)"):
        E2RNAS(capsule_logits="softmax")


# --- the architecture step -------------------------------------------------------------------


NO_TRAINER = "ignore:You are trying to `self.log\\(\\)`:UserWarning"  # steps called without a Lightning trainer


def _one_architecture_step(strategy: E2RNAS) -> tuple[Any, Any, torch.Tensor, torch.Tensor, Any]:
    """One architecture step of ``strategy`` on a small capsule cell supernet and 16 digits:
    the supernet, the one-shot module, the images, the labels and the step's record."""
    supernet = strategy.mutate_model(CapsuleCellSpace(**SMALL))
    module = strategy.configure_oneshot_module(CapsuleClassificationModule())
    module.set_model(supernet)
    images, labels = load_dataset("digits").val.tensors
    images, labels = images[:16], labels[:16]
    return supernet, module, images, labels, module.architecture_step((images, labels), 0)


@pytest.mark.filterwarnings(NO_TRAINER)
@pytest.mark.parametrize("upper_loss, combine", [("training", "raw"), ("cross_entropy", "normalized")])
def test_architecture_step_sets_the_mgda_combination_of_objective_gradients(upper_loss: str, combine: str) -> None:
    torch.manual_seed(0)
    strategy = E2RNAS(adversary=functools.partial(fgsm, epsilon=0.1), upper_loss=upper_loss, combine=combine,
                      resources=[ResourceConstraint(metric="params", target=1000.0, mode="abs"),
                                 ResourceConstraint(metric="params", target=1e9, mode="max")])
    supernet, module, images, labels, record = _one_architecture_step(strategy)
    alphas = module.ordered_arch_parameters()

    # recompute every objective's gradient independently
    def criterion(output: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if upper_loss == "training":
            return ClassificationLoss()(output, labels, images)
        return torch.nn.functional.cross_entropy(class_logits(output), labels)

    probe = images.clone().requires_grad_(True)
    clean = criterion(supernet(probe), labels, probe)
    *clean_grads, input_grad = torch.autograd.grad(clean, alphas + [probe], allow_unused=True)
    adversarial = fgsm(supernet, images, labels, epsilon=0.1, input_gradient=input_grad)
    adv_loss = criterion(supernet(adversarial), labels, adversarial)
    adv_grads = torch.autograd.grad(adv_loss, alphas, allow_unused=True)
    size = strategy._resource_terms[0].constraint.loss(strategy._resource_terms[0].expectation())
    size_grads = torch.autograd.grad(size, alphas, allow_unused=True)

    def flat(grads: Any) -> torch.Tensor:
        return torch.cat([(g if g is not None else torch.zeros_like(a)).reshape(-1).double()
                          for g, a in zip(grads, alphas)])

    vectors = torch.stack([flat(clean_grads), flat(adv_grads), flat(size_grads)])
    losses = torch.stack([clean.detach(), adv_loss.detach(), size.detach()]).double()
    assert list(record.losses) == ["clean", "adversarial", "params", "params_1"]
    assert [record.losses[n] for n in ("clean", "adversarial", "params")] == pytest.approx(losses.tolist(), rel=1e-5)
    assert record.losses["params_1"] == 0.0 and record.weights["params_1"] == 0.0  # satisfied budget sits out
    weights = mgda_weights(vectors, losses, normalization="l2")
    assert [record.weights[n] for n in ("clean", "adversarial", "params")] == pytest.approx(weights.tolist(), abs=1e-5)
    assert sum(record.weights.values()) == pytest.approx(1.0)
    combined = vectors if combine == "raw" else normalize_gradients(vectors, losses, normalization="l2")
    assert torch.cat([a.grad.reshape(-1) for a in alphas]).double() == pytest.approx(
        (weights @ combined).tolist(), abs=1e-6)
    assert record.expected["params"] == pytest.approx(ExpectedParams(supernet)().item())
    # what the step saw: per-label cosines of the clean and adversarial gradients, batch accuracies
    labels_of_alphas = module.ordered_labels()
    assert sorted(labels_of_alphas) == sorted(CapsuleCellSpace(**SMALL).simplify())
    assert set(record.cosines) == set(labels_of_alphas) | {"all"}
    compared, scale = 0, min(vectors[0].norm(), vectors[1].norm())
    for label, clean_grad, adv_grad in zip(labels_of_alphas, clean_grads, adv_grads):
        if min(clean_grad.norm(), adv_grad.norm()) < 1e-4 * scale:  # float noise (routing at initialisation)
            continue
        expected = torch.nn.functional.cosine_similarity(clean_grad.reshape(-1).double(),
                                                         adv_grad.reshape(-1).double(), dim=0)
        assert record.cosines[label] == pytest.approx(expected.item(), abs=1e-3), label
        compared += 1
    assert compared >= 3
    with torch.no_grad():
        correct = (class_logits(supernet(images)).argmax(dim=1) == labels).float().mean().item()
    assert record.accuracy["clean"] == pytest.approx(correct)
    assert record.epoch_accuracy == record.accuracy  # the epoch's first step
    assert 0 <= record.accuracy["adversarial"] <= 1


@pytest.mark.filterwarnings(NO_TRAINER)
def test_the_search_hands_fgsm_the_input_gradient_of_the_attack_loss() -> None:
    """The clean objective is the attacks' cross-entropy: same class logits, same adversarial images."""
    torch.manual_seed(0)
    shared: dict[str, torch.Tensor] = {}

    def recording_fgsm(model: Any, images: torch.Tensor, labels: torch.Tensor, *,
                       input_gradient: torch.Tensor) -> torch.Tensor:
        shared["gradient"] = input_gradient
        return fgsm(model, images, labels, epsilon=0.1, input_gradient=input_gradient)

    strategy = E2RNAS(adversary=recording_fgsm, upper_loss="cross_entropy")
    supernet, module, images, labels, record = _one_architecture_step(strategy)
    probe = images.clone().requires_grad_(True)
    summed = attack_loss(supernet(probe), labels)
    (attack_gradient,) = torch.autograd.grad(summed, probe)
    assert record.losses["clean"] == pytest.approx(summed.item() / len(labels), rel=1e-5)
    torch.testing.assert_close(shared["gradient"] * len(labels), attack_gradient, rtol=1e-4, atol=1e-7)
    own = fgsm(supernet, images, labels, epsilon=0.1)  # FGSM computing its own gradient
    assert (fgsm(supernet, images, labels, epsilon=0.1, input_gradient=shared["gradient"]) == own).float().mean() > 0.99


@pytest.mark.filterwarnings(NO_TRAINER)
def test_weight_step_mixes_in_the_adversarial_loss_when_asked() -> None:
    torch.manual_seed(0)
    adversary = functools.partial(fgsm, epsilon=0.2)
    strategy = E2RNAS(adversary=adversary, weight_adversarial=0.25)
    supernet = strategy.mutate_model(CapsuleCellSpace(**SMALL))
    module = strategy.configure_oneshot_module(CapsuleClassificationModule(reconstruction_weight=0.0))
    module.set_model(supernet)
    images, labels = load_dataset("digits").train.tensors
    images, labels = images[:16], labels[:16]
    mixed = module._weight_step_loss((images, labels), 0)
    criterion = ClassificationLoss(reconstruction_weight=0.0)
    clean = criterion(supernet(images), labels, images)
    adversarial = criterion(supernet(adversary(supernet, images, labels)), labels, images)
    assert adversarial > clean
    assert mixed.item() == pytest.approx((0.75 * clean + 0.25 * adversarial).item(), rel=1e-5)


# --- whole searches inside NNI ---------------------------------------------------------------


def _search(space: ModelSpace, strategy: E2RNAS, tmp_path: Path, batches: int, device: str = "auto") -> dict[str, Any]:
    exp = NasExperiment(space, capsule_evaluator("digits", epochs=1, limit_train_batches=batches, device=device),
                        strategy)
    exp.config.experiment_working_directory = str(tmp_path / "experiments")
    try:
        exp.run()
        return exp.export_top_models(formatter="dict")[0]
    finally:
        exp.stop()


def _assert_valid_architecture(space_factory: Any, architecture: dict[str, Any], images: torch.Tensor) -> None:
    labels = space_factory().simplify()
    assert set(architecture) == set(labels)
    for label, value in architecture.items():
        assert value in labels[label].values or value in [[v] for v in labels[label].values]
    model = space_factory().freeze(architecture)
    assert model(images).shape[:2] == (len(images), 10)


@pytest.mark.parametrize("device", DEVICES)
def test_one_epoch_search_on_digits_logs_mgda_weights_and_exports_a_valid_architecture(
        tmp_path: Path, isolated_nni: Path, caplog: pytest.LogCaptureFixture, device: str) -> None:
    strategy = E2RNAS(adversary=functools.partial(fgsm, epsilon=0.1, random_start=True), upper_loss="cross_entropy",
                      resources=[{"metric": "params", "target": 5000.0, "mode": "abs"},
                                 {"metric": "energy_mj", "target": 1e-3, "mode": "max"}])
    with caplog.at_level(logging.DEBUG, logger="nni_capsnas.strategy"):
        architecture = _search(CapsuleCellSpace(**TINY), strategy, tmp_path, batches=3, device=device)
    assert all(alpha.device.type == device for alpha in strategy.oneshot_module.ordered_arch_parameters())
    records = strategy.oneshot_module.records
    assert len(records) == 3
    for record in records:
        assert set(record.weights) == {"clean", "adversarial", "params", "energy_mj"}
        assert sum(record.weights.values()) == pytest.approx(1.0)
        assert all(w >= 0 for w in record.weights.values())
        assert record.losses["adversarial"] >= 0 and record.expected["energy_mj"] > 0
    logged = [r.getMessage() for r in caplog.records if "MGDA weights" in r.getMessage()]
    assert len(logged) == 3
    metrics = strategy.oneshot_module.trainer.callback_metrics
    assert {"e2rnas/weight/clean", "e2rnas/weight/adversarial", "e2rnas/loss/params",
            "e2rnas/expected/energy_mj", "e2rnas/cosine/feature_op", "e2rnas/accuracy/clean", "arch_acc",
            "arch_adv_acc", "e2rnas/epoch_accuracy/clean"} <= set(metrics)
    messages = [r.getMessage() for r in caplog.records]
    (epoch_line,) = [m for m in messages if "supernet accuracy on the architecture-step split" in m]
    assert f"clean {records[-1].epoch_accuracy['clean']:.3f}" in epoch_line
    margins = choice_margins(strategy.oneshot_module.export_probs())
    assert {m for m in messages if m.startswith("exported ")} == {
        f"exported {m.label} = {m.chosen} with probability {m.probability:.3f}, {m.margin:.3f} ahead of "
        f"{m.runner_up} ({m.runner_up_probability:.3f})" for m in margins.values()}
    # three architecture steps leave the two-valued labels close to 50/50: near-ties, warned about
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "near-tie" in r.getMessage()]
    assert {m.label for m in near_ties(margins)} == {w.split()[1] for w in warned} != set()
    _assert_valid_architecture(lambda: CapsuleCellSpace(**TINY), architecture, torch.rand(2, 1, 8, 8))
    assert any((tmp_path / "experiments").iterdir())  # the experiment wrote under tmp_path


def test_search_on_nni_darts_cell_space(tmp_path: Path, isolated_nni: Path) -> None:
    strategy = E2RNAS(adversary=functools.partial(fgsm, epsilon=0.1, random_start=True),
                      resources=[ResourceConstraint(metric="params", target=2000.0, mode="abs")],
                      gradient_normalization="loss+")
    architecture = _search(DartsCellSpace(width=2, num_cells=3), strategy, tmp_path, batches=2)
    assert len(strategy.oneshot_module.records) == 2
    assert strategy.oneshot_module.records[-1].weights["params"] >= 0
    _assert_valid_architecture(lambda: DartsCellSpace(width=2, num_cells=3), architecture, torch.rand(2, 1, 8, 8))

"""FGSM and PGD: geometry, normalisation, seeding, capsules, robust accuracy, agreement with torchattacks."""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nni_capsnas.modules import CAPSULE_LOGITS, DEFAULT_CAPSULE_LOGITS, class_logits
from nni_capsnas.strategy.e2rnas import E2RNAS
from search_spaces.capsule_cell_space import CapsuleCellSpace
from tests.conftest import DEVICES
from trials.attacks import AttackConfig, attack_loss, fgsm, pgd, robust_accuracy
from trials.datasets import load_dataset
from trials.evaluator import evaluate_architecture, hardware_aware_evaluator, train_config_from_options
from trials.training import TrainConfig, evaluate, train

MEAN, STD = (0.3,), (0.25,)


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained_cnn(digits: Any) -> nn.Module:
    """A small CNN trained on digits for a few epochs (about 95% held-out accuracy)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = _cnn()
    images, labels = digits.train.tensors
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        for index in torch.randperm(len(labels), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[index]), labels[index]).backward()
            optimizer.step()
    torch.set_num_threads(threads)
    return model.eval()


class _Normalized(nn.Module):
    """``model`` reading images normalised with (MEAN, STD)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * STD[0] + MEAN[0])


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images - MEAN[0]) / STD[0]


def _batch(digits: Any, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits.val.tensors
    return images[:size], labels[:size]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [-0.01, 1.5, True, "0.1"])
def test_epsilon_outside_unit_interval_is_rejected(epsilon: Any, trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits, 2)
    with pytest.raises(ValueError, match="epsilon must be a number in \\[0, 1\\]"):
        fgsm(trained_cnn, images, labels, epsilon=epsilon)
    with pytest.raises(ValueError, match="epsilon"):
        robust_accuracy(trained_cnn, digits.val, epsilon=epsilon)


def test_bad_steps_attack_and_normalization_are_rejected(trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits, 2)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        pgd(trained_cnn, images, labels, epsilon=0.1, steps=0)
    with pytest.raises(ValueError, match="attack must be one of \\('fgsm', 'pgd'\\), got 'cw'"):
        robust_accuracy(trained_cnn, digits.val, attack="cw", epsilon=0.1)
    with pytest.raises(ValueError, match="normalization has 2 channels but the images have 1"):
        fgsm(trained_cnn, images, labels, epsilon=0.1, normalization=((0.5, 0.5), (0.2, 0.2)))
    with pytest.raises(ValueError, match="stds must be positive"):
        fgsm(trained_cnn, images, labels, epsilon=0.1, normalization=((0.5,), (0.0,)))
    with pytest.raises(ValueError, match="unknown robustness option\\(s\\) \\['eps'\\]"):
        AttackConfig.from_mapping({"eps": 0.1})


# --- geometry --------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", [functools.partial(fgsm, random_start=True), functools.partial(pgd, steps=3)])
def test_adversarial_images_stay_in_the_ball_and_the_pixel_range(attack: Any, trained_cnn: nn.Module,
                                                                 digits: Any) -> None:
    images, labels = _batch(digits)
    adversarial = attack(trained_cnn, images, labels, epsilon=0.2, generator=torch.Generator().manual_seed(1))
    assert (adversarial - images).abs().max() <= 0.2 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (adversarial - images).abs().max() > 0.1  # it moved


def test_fgsm_without_random_start_is_the_signed_gradient_step(trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits)
    probe = images.clone().requires_grad_(True)
    nn.functional.cross_entropy(trained_cnn(probe), labels, reduction="sum").backward()
    expected = (images + 0.1 * probe.grad.sign()).clamp(0, 1)
    assert torch.allclose(fgsm(trained_cnn, images, labels, epsilon=0.1), expected)
    # a caller-supplied input gradient replaces the forward/backward pass
    assert torch.allclose(fgsm(trained_cnn, images, labels, epsilon=0.1, input_gradient=probe.grad), expected)


@pytest.mark.parametrize("attack", [fgsm, functools.partial(pgd, steps=4, random_start=True)])
def test_epsilon_is_in_pixel_units_for_normalised_inputs(attack: Any, trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits)
    on_pixels = attack(trained_cnn, images, labels, epsilon=0.15, generator=torch.Generator().manual_seed(3))
    on_normalised = attack(_Normalized(trained_cnn), _normalize(images), labels, epsilon=0.15,
                           normalization=(MEAN, STD), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(on_normalised * STD[0] + MEAN[0], on_pixels, atol=1e-5)


def test_pgd_is_seeded_by_its_generator(trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits, 16)

    def run(seed: int) -> torch.Tensor:
        return pgd(trained_cnn, images, labels, epsilon=0.1, steps=2, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_attack_config_builds_seeded_adversaries(trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits, 8)
    config = AttackConfig.from_mapping({"attack": "pgd", "epsilon": 0.1, "steps": 2, "seed": 3})
    first, second = config.adversary(), config.adversary()
    draw = first(trained_cnn, images, labels)
    assert torch.equal(draw, second(trained_cnn, images, labels))  # same seed, same noise
    assert not torch.equal(draw, first(trained_cnn, images, labels))  # the generator advances
    fast = AttackConfig(attack="fgsm", epsilon=0.1, random_start=True).adversary()
    assert "input_gradient" in inspect.signature(fast).parameters  # E2RNAS can share its clean gradient
    assert (fast(trained_cnn, images, labels) - images).abs().max() <= 0.1 + 1e-6


def test_attacks_raise_the_loss_and_lower_accuracy(trained_cnn: nn.Module, digits: Any) -> None:
    images, labels = _batch(digits, 128)
    clean = attack_loss(trained_cnn(images), labels)
    assert attack_loss(trained_cnn(fgsm(trained_cnn, images, labels, epsilon=0.1)), labels) > clean
    clean_accuracy = robust_accuracy(trained_cnn, digits.val, epsilon=0.0, attack="fgsm")
    assert clean_accuracy > 0.9
    fgsm_accuracy = robust_accuracy(trained_cnn, digits.val, attack="fgsm", epsilon=0.1)
    pgd_accuracy = robust_accuracy(trained_cnn, digits.val, attack="pgd", epsilon=0.1, steps=10)
    assert pgd_accuracy <= fgsm_accuracy < clean_accuracy


def test_robust_accuracy_restores_the_mode_and_honours_samples(trained_cnn: nn.Module, digits: Any) -> None:
    trained_cnn.train()
    try:
        images, labels = _batch(digits, 10)
        subset = robust_accuracy(trained_cnn, TensorDataset(images, labels), attack="fgsm", epsilon=0.05)
        limited = robust_accuracy(trained_cnn, digits.val, attack="fgsm", epsilon=0.05, samples=10, batch_size=4)
        assert trained_cnn.training
        assert limited == pytest.approx(subset)
    finally:
        trained_cnn.eval()


def test_capsule_networks_are_attacked_through_the_class_logits_the_search_uses(digits: Any) -> None:
    torch.manual_seed(0)
    space = CapsuleCellSpace(primary_caps=(2,), primary_dim=(4,), feature_ops=("conv3x3",), capsule_ops=("skip",),
                             routing_iterations=(1,))
    model = space.freeze({label: m.values[0] for label, m in space.simplify().items()})
    train(model, digits, TrainConfig(epochs=1), progress=False)
    model.eval()
    images, labels = _batch(digits, 32)
    assert model(images).dim() == 3
    for loss in ("cross_entropy", "margin"):
        adversarial = pgd(model, images, labels, epsilon=0.1, steps=2, loss=loss,
                          generator=torch.Generator().manual_seed(0))
        assert (adversarial - images).abs().max() <= 0.1 + 1e-6
        assert attack_loss(model(adversarial), labels) > attack_loss(model(images), labels)
    # the attack's cross-entropy is E2RNAS' upper-level loss (summed): the same class logits
    for kind in CAPSULE_LOGITS:
        expected = nn.functional.cross_entropy(class_logits(model(images), kind), labels, reduction="sum")
        assert attack_loss(model(images), labels, capsule_logits=kind).item() == pytest.approx(expected.item(),
                                                                                                rel=1e-5)
    assert E2RNAS().capsule_logits == AttackConfig().capsule_logits == DEFAULT_CAPSULE_LOGITS
    # robust accuracy counts what an FGSM step along that loss's gradient leaves correct
    probe = images.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(nn.functional.cross_entropy(class_logits(model(probe)), labels), probe)
    by_hand = (images + 0.1 * gradient.sign()).clamp(0, 1)
    with torch.no_grad():
        expected_accuracy = float((model(by_hand).norm(dim=-1).argmax(dim=1) == labels).float().mean())
    measured = robust_accuracy(model, TensorDataset(images, labels), attack="fgsm", epsilon=0.1)
    assert measured == pytest.approx(expected_accuracy, abs=1 / 32)
    assert measured < evaluate(model, TensorDataset(images, labels))
    with pytest.raises(ValueError, match="capsule_logits must be one of"):
        robust_accuracy(model, digits.val, attack="fgsm", epsilon=0.1, capsule_logits="softmax")


# --- agreement with torchattacks -------------------------------------------------------------


@pytest.mark.parametrize("normalised", [False, True])
def test_robust_accuracy_agrees_with_torchattacks(normalised: bool, trained_cnn: nn.Module, digits: Any) -> None:
    """Same model, data, epsilon and steps, no random start: robust accuracies within 0.5 points.

    Normalised case: both get normalised images and the normalisation (torchattacks through
    ``set_normalization_used``, after which it takes and returns normalised images).
    """
    import torchattacks

    images, labels = digits.val.tensors
    epsilon, steps, step_size = 0.1, 10, 0.02
    model: nn.Module = _Normalized(trained_cnn).eval() if normalised else trained_cnn
    data = TensorDataset(_normalize(images), labels) if normalised else digits.val
    normalization: Any = (MEAN, STD) if normalised else None
    ours = {
        "fgsm": robust_accuracy(model, data, attack="fgsm", epsilon=epsilon, normalization=normalization),
        "pgd": robust_accuracy(model, data, attack="pgd", epsilon=epsilon, steps=steps, step_size=step_size,
                               random_start=False, normalization=normalization),
    }
    attacks = {"fgsm": torchattacks.FGSM(model, eps=epsilon),
               "pgd": torchattacks.PGD(model, eps=epsilon, alpha=step_size, steps=steps, random_start=False)}
    theirs = {}
    for name, attack in attacks.items():
        if normalised:
            attack.set_normalization_used(mean=MEAN, std=STD)
        adversarial = attack(data.tensors[0], labels)
        with torch.no_grad():
            theirs[name] = float((model(adversarial).argmax(1) == labels).float().mean())
    for name in ours:
        assert 0.05 < ours[name] < 0.95, f"{name} robust accuracy {ours[name]} is too extreme to compare"
        assert ours[name] == pytest.approx(theirs[name], abs=0.005), (name, ours, theirs)


# --- devices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_attacks_run_on_the_models_device_with_the_cpu_runs_random_starts(
        device: str, trained_cnn: nn.Module, digits: Any) -> None:
    model = copy.deepcopy(trained_cnn).to(device)
    images, labels = _batch(digits, 16)
    on_device = fgsm(model, images.to(device), labels.to(device), epsilon=0.1, random_start=True,
                     generator=torch.Generator().manual_seed(3))
    on_cpu = fgsm(trained_cnn, images, labels, epsilon=0.1, random_start=True,
                  generator=torch.Generator().manual_seed(3))
    assert on_device.device.type == device
    # the same start and step: equal but for pixels whose gradient sign flips with rounding
    assert float((on_device.cpu() - on_cpu).abs().gt(1e-5).float().mean()) < 0.01
    settings = dict(attack="pgd", epsilon=0.1, steps=3, samples=96, seed=2)
    assert robust_accuracy(model, digits.val, **settings) == pytest.approx(
        robust_accuracy(trained_cnn, digits.val, **settings), abs=2 / 96)
    assert all(p.device.type == device for p in model.parameters())


# --- the multi-trial evaluator ---------------------------------------------------------------


def test_evaluator_reports_robust_accuracy_when_asked() -> None:
    metrics = evaluate_architecture(_cnn(), dataset="digits", epochs=1, measure_host=False,
                                    robustness={"attack": "fgsm", "epsilon": 0.1, "samples": 64})
    assert 0 <= metrics["robust_accuracy"] <= metrics["accuracy"] + 0.2
    assert "robust_accuracy" not in evaluate_architecture(_cnn(), dataset="digits", epochs=1, measure_host=False)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluator_trains_attacks_and_estimates_on_the_device_and_reports_it(device: str) -> None:
    model = _cnn()
    metrics = evaluate_architecture(model, dataset="digits", epochs=1, measure_host=False, device=device,
                                    robustness={"attack": "fgsm", "epsilon": 0.1, "samples": 32})
    assert metrics["device"] == ("cuda:0" if device == "cuda" else "cpu")
    assert all(isinstance(value, float) for key, value in metrics.items() if key != "device")
    assert metrics["params"] == sum(p.numel() for p in model.parameters())  # exported from a CPU copy
    assert all(p.device.type == device for p in model.parameters())


def test_evaluator_trains_adversarially_when_asked() -> None:
    # measured for seeds 0 / 1 / 2: PGD accuracy 0.63 / 0.67 / 0.60 clean, 0.70 / 0.73 / 0.71 hardened
    robustness = {"attack": "pgd", "epsilon": 0.1, "steps": 5, "samples": 300}
    common = dict(dataset="digits", epochs=3, measure_host=False, learning_rate=3e-3, robustness=robustness)
    torch.manual_seed(0)
    clean = evaluate_architecture(_cnn(), **common)
    torch.manual_seed(0)
    hardened = evaluate_architecture(_cnn(), adversarial={"attack": "fgsm", "epsilon": 0.15, "random_start": True},
                                     adversarial_weight=0.5, **common)
    assert hardened["robust_accuracy"] > clean["robust_accuracy"] + 0.04, (clean, hardened)


def test_train_config_from_options_is_what_trials_and_retraining_train_with() -> None:
    config = train_config_from_options({"epochs": 3, "learning_rate": 2e-3, "adversarial_weight": 0.25,
                                        "adversarial": {"attack": "pgd", "epsilon": 0.05, "steps": 2}}, epochs=7)
    assert (config.epochs, config.learning_rate, config.adversarial_weight) == (7, 2e-3, 0.25)
    assert config.adversarial == AttackConfig(attack="pgd", epsilon=0.05, steps=2)
    assert train_config_from_options({}).adversarial is None
    assert (config.device, config.precision) == ("auto", "fp32")
    assert train_config_from_options({"device": "cpu", "precision": "bf16"}).device == "cpu"


def test_evaluator_options_are_checked_before_any_trial() -> None:
    with pytest.raises(ValueError, match="epsilon must be a number in \\[0, 1\\]"):
        hardware_aware_evaluator(robustness={"attack": "pgd", "epsilon": 2.0})
    with pytest.raises(ValueError, match="attack must be one of"):
        hardware_aware_evaluator(robustness={"attack": "deepfool"})
    assert hardware_aware_evaluator(robustness={"attack": "pgd", "epsilon": 0.1, "steps": 5}) is not None
    with pytest.raises(ValueError, match="unknown adversarial option\\(s\\) \\['eps'\\]"):
        hardware_aware_evaluator(adversarial={"attack": "fgsm", "eps": 0.1})
    with pytest.raises(ValueError, match="adversarial_weight must be in \\(0, 1\\]"):
        hardware_aware_evaluator(adversarial={"attack": "fgsm", "epsilon": 0.1}, adversarial_weight=1.5)
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, cuda:N"):
        hardware_aware_evaluator(device="gpu0")

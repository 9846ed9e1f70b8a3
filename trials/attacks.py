"""L-infinity adversarial attacks (FGSM, PGD) and robust accuracy, for capsule nets and CNNs.

Every attack takes the images *as the model reads them*: raw pixels in [0, 1], or pixels
normalised per channel as ``(pixel - mean) / std`` when ``normalization=(mean, std)`` is
given. ``epsilon`` and ``step_size`` are always in [0, 1] pixel units; they are mapped through
the normalisation (divided by ``std`` per channel), and the adversarial images are clamped to
the valid pixel range [0, 1] mapped the same way. So one epsilon means the same perturbation
for a normalised and an unnormalised pipeline.

Attack loss: cross-entropy on the class logits of :func:`nni_capsnas.modules.class_logits`
(the logits of a CNN; a capsule network's lengths mapped to logits, by default their log-odds,
``capsule_logits=`` chooses the mapping): the same logits as E2RNAS' ``cross_entropy``
upper-level loss, so the attacks inside a search and the robustness measured after it follow
the same loss. Cross-entropy is used for capsules too, rather than their margin loss: the
margin loss is exactly flat for a confidently classified image (present length above 0.9,
absent ones below 0.1), so its input gradient is zero and FGSM/PGD would not move such images —
gradient masking that overstates robustness. ``loss="margin"`` is available to attack the
capsule training loss itself.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nni_capsnas.modules import DEFAULT_CAPSULE_LOGITS, MarginLoss, check_capsule_logits, class_logits

from .devices import module_device
from .losses import class_scores

_logger = logging.getLogger(__name__)

ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
ATTACK_LOSSES: tuple[str, ...] = ("cross_entropy", "margin")
Normalization = Optional[tuple[Sequence[float], Sequence[float]]]


# --- validation ------------------------------------------------------------------------------


def _check_epsilon(epsilon: Any) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be a number in [0, 1] (pixel units), got {epsilon!r}")
    return float(epsilon)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def _check_step_size(step_size: Any) -> Optional[float]:
    if step_size is None:
        return None
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not 0 < step_size <= 1:
        raise ValueError(f"step_size must be a number in (0, 1] (pixel units) or None, got {step_size!r}")
    return float(step_size)


def _check_loss(loss: Any) -> str:
    if loss not in ATTACK_LOSSES:
        raise ValueError(f"loss must be one of {ATTACK_LOSSES}, got {loss!r}")
    return loss


def _check_normalization(normalization: Any) -> Optional[tuple[tuple[float, ...], tuple[float, ...]]]:
    if normalization is None:
        return None
    try:
        mean, std = normalization
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (TypeError, ValueError) as error:
        raise ValueError(f"normalization must be None or (mean, std), two sequences of per-channel numbers, "
                         f"got {normalization!r}") from error
    if not mean or len(mean) != len(std):
        raise ValueError(f"normalization needs as many means as stds (one per channel), got {len(mean)} means "
                         f"and {len(std)} stds")
    if not all(s > 0 for s in std):
        raise ValueError(f"normalization stds must be positive, got {std}")
    return mean, std


# --- pixel-space geometry --------------------------------------------------------------------


@dataclass(frozen=True)
class _PixelBox:
    """Per-channel scale and bounds of the model's input space (pixels [0, 1] normalised)."""

    scale: torch.Tensor  # 1 / std, broadcastable to the images
    low: torch.Tensor
    high: torch.Tensor

    @classmethod
    def of(cls, images: torch.Tensor, normalization: Normalization) -> _PixelBox:
        checked = _check_normalization(normalization)
        shape = (1, images.shape[1]) + (1,) * (images.dim() - 2)
        if checked is None:
            ones = torch.ones(shape, dtype=images.dtype, device=images.device)
            return cls(ones, torch.zeros_like(ones), ones)
        mean, std = checked
        if len(mean) != images.shape[1]:
            raise ValueError(f"normalization has {len(mean)} channels but the images have {images.shape[1]}")
        mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(shape)
        std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(shape)
        return cls(1 / std_t, (0 - mean_t) / std_t, (1 - mean_t) / std_t)

    def clamp(self, images: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(images, self.high), self.low)

    def project(self, adversarial: torch.Tensor, clean: torch.Tensor, epsilon: float) -> torch.Tensor:
        """Back into the epsilon-ball around ``clean`` and the valid pixel range."""
        radius = epsilon * self.scale
        delta = torch.maximum(torch.minimum(adversarial - clean, radius), -radius)
        return self.clamp(clean + delta)


def attack_loss(output: torch.Tensor, labels: torch.Tensor, *, loss: str = "cross_entropy",
                capsule_logits: str = DEFAULT_CAPSULE_LOGITS) -> torch.Tensor:
    """Summed attack loss of a batch (summed, so every image's gradient is its own).

    Parameters
    ----------
    output
        Class capsules ``(batch, classes, dim)`` or logits ``(batch, classes)``.
    labels
        True classes.
    loss
        ``"cross_entropy"`` on the class logits, or ``"margin"`` (the capsule margin loss on
        the capsule lengths).
    capsule_logits
        How capsule lengths become logits for cross-entropy (a key of
        :data:`nni_capsnas.modules.CAPSULE_LOGITS`).
    """
    if _check_loss(loss) == "cross_entropy":
        return nn.functional.cross_entropy(class_logits(output, capsule_logits), labels, reduction="sum")
    return MarginLoss()(class_scores(output), labels) * len(labels)


def _input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss: str,
                    capsule_logits: str) -> torch.Tensor:
    probe = images.detach().requires_grad_(True)
    value = attack_loss(model(probe), labels, loss=loss, capsule_logits=capsule_logits)
    (gradient,) = torch.autograd.grad(value, probe)
    return gradient


def _uniform_start(images: torch.Tensor, box: _PixelBox, epsilon: float,
                   generator: Optional[torch.Generator]) -> torch.Tensor:
    # drawn where the generator lives (a CPU generator gives the same start on every device)
    source = generator.device if generator is not None else images.device
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype, device=source).to(images.device)
    return box.clamp(images + (2 * noise - 1) * epsilon * box.scale)


# --- attacks ---------------------------------------------------------------------------------


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epsilon: float,
         random_start: bool = False, step_size: Optional[float] = None,
         normalization: Normalization = None, loss: str = "cross_entropy",
         capsule_logits: str = DEFAULT_CAPSULE_LOGITS, generator: Optional[torch.Generator] = None,
         input_gradient: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015), optionally with a random start.

    Without random start: ``x + epsilon * sign(grad)``. With it ("FGSM-RS", Wong et al. 2020,
    used by E2RNAS): start uniformly in the epsilon-ball, step ``step_size`` (default
    ``1.25 * epsilon``) along the gradient sign, project back into the ball.

    Parameters
    ----------
    model
        Returns class capsules or logits. Its mode (train/eval) is left as it is.
    images, labels
        A batch, images as the model reads them (see the module docstring).
    epsilon
        L-infinity radius in [0, 1] pixel units.
    random_start
        Start at a uniformly random point of the ball.
    step_size
        Step in pixel units; default ``epsilon`` (``1.25 * epsilon`` with random start).
    normalization
        ``(mean, std)`` per channel the images were normalised with, or ``None``.
    loss, capsule_logits
        Attack loss, see :func:`attack_loss`.
    generator
        Random source of the start point.
    input_gradient
        The loss gradient w.r.t. ``images`` if the caller already has it (e.g. from the
        clean backward pass of a search step): it is used instead of a forward/backward pass.
        With ``random_start`` the step then follows the gradient at the clean images, as in
        E2RNAS' implementation.

    Returns
    -------
    torch.Tensor
        Adversarial images (detached), same shape and space as ``images``.
    """
    epsilon = _check_epsilon(epsilon)
    step = _check_step_size(step_size)
    box = _PixelBox.of(images, normalization)
    clean = images.detach()
    if step is None:
        step = 1.25 * epsilon if random_start else epsilon
    start = _uniform_start(clean, box, epsilon, generator) if random_start else clean
    if input_gradient is not None:
        if input_gradient.shape != clean.shape:
            raise ValueError(f"input_gradient must have the images' shape {tuple(clean.shape)}, "
                             f"got {tuple(input_gradient.shape)}")
        gradient = input_gradient.detach()
    else:
        gradient = _input_gradient(model, start, labels, loss, check_capsule_logits(capsule_logits))
    return box.project(start + step * box.scale * gradient.sign(), clean, epsilon).detach()


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epsilon: float, steps: int = 10,
        step_size: Optional[float] = None, random_start: bool = True, normalization: Normalization = None,
        loss: str = "cross_entropy", capsule_logits: str = DEFAULT_CAPSULE_LOGITS,
        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Projected gradient descent, L-infinity (Madry et al. 2018).

    Parameters
    ----------
    model, images, labels, epsilon, normalization, loss, capsule_logits, generator
        As for :func:`fgsm`.
    steps
        Gradient-sign steps (at least 1).
    step_size
        Step in pixel units; default ``2.5 * epsilon / steps``.
    random_start
        Start at a uniformly random point of the epsilon-ball.

    Returns
    -------
    torch.Tensor
        Adversarial images (detached).
    """
    epsilon = _check_epsilon(epsilon)
    steps = _check_steps(steps)
    step = _check_step_size(step_size)
    check_capsule_logits(capsule_logits)
    if step is None:
        step = 2.5 * epsilon / steps
    box = _PixelBox.of(images, normalization)
    clean = images.detach()
    adversarial = _uniform_start(clean, box, epsilon, generator) if random_start else clean
    for _ in range(steps):
        gradient = _input_gradient(model, adversarial, labels, loss, capsule_logits)
        adversarial = box.project(adversarial + step * box.scale * gradient.sign(), clean, epsilon).detach()
    return adversarial


@dataclass(frozen=True)
class AttackConfig:
    """A validated attack setting, e.g. for the multi-trial evaluator's ``robustness`` option.

    Attributes
    ----------
    attack
        ``"fgsm"`` or ``"pgd"``.
    epsilon
        L-infinity radius in [0, 1] pixel units.
    steps
        PGD steps (ignored by FGSM).
    step_size
        Step in pixel units (``None``: the attack's default).
    random_start
        Start at a random point of the ball (``None``: the attack's default, no for FGSM, yes
        for PGD).
    normalization
        ``(mean, std)`` per channel, or ``None``.
    loss
        ``"cross_entropy"`` or ``"margin"``.
    capsule_logits
        How capsule lengths become logits for cross-entropy (see :func:`attack_loss`).
    batch_size
        Images attacked at once.
    samples
        Attack only the first ``samples`` images of the dataset (``None``: all).
    seed
        Seed of the random starts.
    """

    attack: str = "pgd"
    epsilon: float = 0.1
    steps: int = 10
    step_size: Optional[float] = None
    random_start: Optional[bool] = None
    normalization: Normalization = None
    loss: str = "cross_entropy"
    capsule_logits: str = DEFAULT_CAPSULE_LOGITS
    batch_size: int = 256
    samples: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ValueError(f"attack must be one of {ATTACKS}, got {self.attack!r}")
        _check_epsilon(self.epsilon)
        _check_steps(self.steps)
        _check_step_size(self.step_size)
        _check_loss(self.loss)
        check_capsule_logits(self.capsule_logits)
        _check_normalization(self.normalization)
        if self.random_start is not None and not isinstance(self.random_start, bool):
            raise ValueError(f"random_start must be a bool or None, got {self.random_start!r}")
        for name in ("batch_size",) + (("samples",) if self.samples is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], purpose: str = "robustness") -> AttackConfig:
        """Build from a config table, rejecting unknown keys by name (``purpose`` names the table in errors)."""
        if not isinstance(options, Mapping):
            raise ValueError(f"{purpose} options must be a mapping, got {type(options).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown {purpose} option(s) {unknown}; expected some of {sorted(known)}")
        values = dict(options)
        if values.get("normalization") is not None:
            mean, std = values["normalization"]
            values["normalization"] = (tuple(mean), tuple(std))
        return cls(**values)

    def adversary(self, generator: Optional[torch.Generator] = None) -> Callable[..., torch.Tensor]:
        """This attack as ``adversary(model, images, labels) -> adversarial images``.

        The form :class:`~nni_capsnas.strategy.e2rnas.E2RNAS` takes. Random starts draw from
        ``generator``, by default a generator seeded with :attr:`seed` (owned by the returned
        callable, so successive calls draw fresh, reproducible noise).
        """
        generator = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        common: dict[str, Any] = dict(epsilon=self.epsilon, step_size=self.step_size,
                                      normalization=self.normalization, loss=self.loss,
                                      capsule_logits=self.capsule_logits, generator=generator)
        if self.random_start is not None:
            common["random_start"] = self.random_start
        if self.attack == "pgd":
            return functools.partial(pgd, steps=self.steps, **common)
        return functools.partial(fgsm, **common)


def robust_accuracy(model: nn.Module, dataset: Dataset, *, attack: str = "pgd", epsilon: float = 0.1,
                    steps: int = 10, step_size: Optional[float] = None, random_start: Optional[bool] = None,
                    batch_size: int = 256, normalization: Normalization = None, loss: str = "cross_entropy",
                    capsule_logits: str = DEFAULT_CAPSULE_LOGITS, samples: Optional[int] = None, seed: int = 0,
                    generator: Optional[torch.Generator] = None) -> float:
    """Fraction of ``dataset`` classified correctly after an FGSM or PGD attack on each image.

    The model is attacked and evaluated in evaluation mode (its mode is restored after), on the
    device of its parameters: each batch is moved there.

    Parameters
    ----------
    model
        Returns class capsules or logits.
    dataset
        ``(image, label)`` pairs, images as the model reads them.
    attack
        ``"fgsm"`` or ``"pgd"``.
    epsilon, steps, step_size, normalization, loss, capsule_logits
        See :func:`fgsm` and :func:`pgd` (``steps`` is ignored by FGSM).
    random_start
        Start at a random point of the ball; ``None``: the attack's default (FGSM no, PGD yes).
    batch_size
        Images attacked at once.
    samples
        Attack only the first ``samples`` images (``None``: all).
    seed
        Seeds the random starts when ``generator`` is not given.
    generator
        Random source of the random starts.

    Returns
    -------
    float
        Robust accuracy in [0, 1].
    """
    config = AttackConfig(attack=attack, epsilon=epsilon, steps=steps, step_size=step_size,
                          random_start=random_start, normalization=normalization, loss=loss,
                          capsule_logits=capsule_logits, batch_size=batch_size, samples=samples, seed=seed)
    run = config.adversary(generator)
    device = module_device(model)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for images, labels in DataLoader(dataset, batch_size=batch_size):
            images, labels = images.to(device), labels.to(device)
            if samples is not None:
                images, labels = images[:samples - total], labels[:samples - total]
            adversarial = run(model, images, labels)
            with torch.no_grad():
                correct += int((class_scores(model(adversarial)).argmax(dim=1) == labels).sum())
            total += len(labels)
            if samples is not None and total >= samples:
                break
    finally:
        model.train(was_training)
    accuracy = correct / total if total else math.nan
    _logger.info("%s robust accuracy at epsilon %.4g: %.4f on %d images", attack, epsilon, accuracy, total)
    return accuracy

"""Train and evaluate a fixed network: Adam with exponential decay, optional shift augmentation."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .allocator import keep_large_buffers_in_heap
from .attacks import AttackConfig
from .datasets import DatasetSplits
from .losses import ClassificationLoss, class_scores

_logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    Attributes
    ----------
    epochs, batch_size, learning_rate
        The usual.
    lr_decay
        Learning rate factor applied after each epoch (exponential decay).
    weight_decay
        Adam's L2 penalty.
    reconstruction_weight
        Weight of the reconstruction error for capsule networks with a decoder.
    shift_pixels
        Random translation of up to this many pixels per training image (0 = off).
    seed
        Seeds weights' initialisation order, shuffling, augmentation and adversarial starts.
    adversarial
        Adversarial training (``None``: off): every batch is also attacked with this setting
        (e.g. FGSM with random start, "fast adversarial training", Wong et al. 2020) and the loss
        on the adversarial images is mixed in. Only the attack, epsilon, steps, step size, random
        start, normalisation and attack loss are used.
    adversarial_weight
        Share of the adversarial loss in each batch's loss, in (0, 1]: ``(1 - w) * clean + w *
        adversarial``. The decoder of a capsule network reconstructs the clean image from the
        adversarial one.
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_decay: float = 0.96
    weight_decay: float = 0.0
    reconstruction_weight: float = 0.0005
    shift_pixels: int = 0
    seed: int = 0
    adversarial: Optional[AttackConfig] = None
    adversarial_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.shift_pixels < 0:
            raise ValueError(f"shift_pixels must be >= 0, got {self.shift_pixels!r}")
        if self.adversarial is not None and not isinstance(self.adversarial, AttackConfig):
            raise ValueError(f"adversarial must be a trials.attacks.AttackConfig or None, "
                             f"got {type(self.adversarial).__name__}")
        if not 0 < self.adversarial_weight <= 1:
            raise ValueError(f"adversarial_weight must be in (0, 1], got {self.adversarial_weight!r}")


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    train_loss: float
    val_accuracy: float
    seconds: float


@dataclass
class TrainResult:
    """History of a training run."""

    history: list[EpochRecord] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.history[-1].val_accuracy if self.history else float("nan")


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def make_optimizer(parameters: Iterable[torch.nn.Parameter], *, learning_rate: float,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where PyTorch supports it (several times faster on CPU).

    CapsNet's 8.2 M parameters make the optimizer step a large share of a training step:
    the unfused update walks every parameter tensor about ten times.
    """
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError) as error:  # e.g. parameters on a device without a fused kernel
        _logger.debug("fused Adam unavailable (%s); using the default implementation", error)
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in each direction, filling with zeros."""
    if max_shift == 0:
        return images
    batch, _, height, width = images.shape
    padded = nn.functional.pad(images, [max_shift] * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(height)  # (batch, height)
    cols = offsets[:, 1, None] + torch.arange(width)
    index = torch.arange(batch)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``."""
    model.eval()
    correct = total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        predictions = class_scores(model(images)).argmax(dim=1)
        correct += int((predictions == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def train(model: nn.Module, data: DatasetSplits, config: TrainConfig = TrainConfig(), *,
          progress: bool = True,
          on_epoch_end: Optional[Callable[[EpochRecord], None]] = None,
          deadline: Optional[float] = None) -> TrainResult:
    """Train ``model`` on ``data.train`` and report held-out accuracy after every epoch.

    Parameters
    ----------
    model
        Network returning class capsules or logits; a ``decoder`` attribute, if present
        and not ``None``, adds the reconstruction loss.
    data
        Training and held-out datasets.
    config
        Hyper-parameters.
    progress
        Show a progress bar.
    on_epoch_end
        Called with each epoch's record (e.g. to report an NNI intermediate result).
    deadline
        ``time.monotonic()`` value after which training raises ``TimeoutError``.

    Raises
    ------
    NonFiniteLossError
        If the loss becomes NaN or infinite.

    Notes
    -----
    Calls :func:`trials.allocator.keep_large_buffers_in_heap` (glibc only): the training
    process then keeps freed memory for reuse instead of page-faulting it back every step.
    """
    keep_large_buffers_in_heap()
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(data.train, batch_size=config.batch_size, shuffle=True, generator=generator)
    optimizer = make_optimizer(model.parameters(), learning_rate=config.learning_rate,
                               weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    criterion = ClassificationLoss(reconstruction_weight=config.reconstruction_weight)
    decoder = getattr(model, "decoder", None)
    adversary = (config.adversarial.adversary(torch.Generator().manual_seed(config.seed))
                 if config.adversarial is not None else None)
    result = TrainResult()
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        total_loss, batches = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for images, labels in bar:
            images = random_shift(images, config.shift_pixels, generator)
            loss = criterion(model(images), labels, images, decoder)
            if adversary is not None:
                adversarial_images = adversary(model, images, labels).detach()
                adversarial_loss = criterion(model(adversarial_images), labels, images, decoder)
                loss = (1 - config.adversarial_weight) * loss + config.adversarial_weight * adversarial_loss
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(f"training loss became {loss.item()} in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            batches += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"training exceeded its time budget in epoch {epoch}")
        scheduler.step()
        record = EpochRecord(epoch, total_loss / max(batches, 1), evaluate(model, data.val),
                             time.perf_counter() - start)
        _logger.info("epoch %d: loss %.4f, held-out accuracy %.4f (%.1f s)",
                     record.epoch, record.train_loss, record.val_accuracy, record.seconds)
        result.history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(record)
    return result

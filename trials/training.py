"""Train and evaluate a fixed network: Adam with exponential decay, optional shift augmentation.

Training runs on the device of :attr:`TrainConfig.device` (``auto``: CUDA when there is a GPU),
in the precision of :attr:`TrainConfig.precision`. On the CPU it keeps its CPU speed-ups (the
allocator setting of :mod:`trials.allocator`; the row-GEMM primary capsules choose themselves);
on CUDA it uses cuDNN with channels-last kernels and TF32 matrix products
(:func:`trials.devices.fast_cuda_kernels`). Small datasets stay on the device
(:mod:`trials.batches`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .allocator import keep_large_buffers_in_heap
from .attacks import AttackConfig
from .batches import DeviceBatches
from .datasets import DatasetSplits
from .devices import (autocast, check_device, check_precision, describe_device, device_name, fast_cuda_kernels,
                      grad_scaler, module_device, place_model, resolve_device)
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
    device: str = "auto"
    precision: str = "fp32"

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
        check_device(self.device)
        check_precision(self.precision)


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    train_loss: float
    val_accuracy: float
    seconds: float


@dataclass
class TrainResult:
    """History of a training run, and the device it ran on (``"cpu"``, ``"cuda:0"``)."""

    history: list[EpochRecord] = field(default_factory=list)
    device: str = "cpu"

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
    device = images.device
    padded = nn.functional.pad(images, [max_shift] * 4)
    # drawn from the (CPU) generator: the same shifts on every device
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator).to(device)
    rows = offsets[:, 0, None] + torch.arange(height, device=device)  # (batch, height)
    cols = offsets[:, 1, None] + torch.arange(width, device=device)
    index = torch.arange(batch, device=device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 256, precision: str = "fp32") -> float:
    """Top-1 accuracy of ``model`` on ``dataset``, computed on the model's device."""
    device = module_device(model)
    return _accuracy(model, DeviceBatches(dataset, batch_size=batch_size, device=device), device, precision)


@torch.no_grad()
def _accuracy(model: nn.Module, batches: DeviceBatches, device: torch.device, precision: str) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    for images, labels in batches:
        with autocast(device, precision):
            predictions = class_scores(model(images)).argmax(dim=1)
        correct += (predictions == labels).sum()
        total += len(labels)
    return int(correct) / max(total, 1)


#: Training steps between two reads of the running loss (each read waits for the GPU).
LOSS_CHECK_STEPS = 16


def train(model: nn.Module, data: DatasetSplits, config: TrainConfig = TrainConfig(), *,
          progress: bool = True,
          on_epoch_end: Optional[Callable[[EpochRecord], None]] = None,
          deadline: Optional[float] = None) -> TrainResult:
    """Train ``model`` on ``data.train`` and report held-out accuracy after every epoch.

    Parameters
    ----------
    model
        Network returning class capsules or logits; a ``decoder`` attribute, if present
        and not ``None``, adds the reconstruction loss. Moved to the training device (and left
        there).
    data
        Training and held-out datasets.
    config
        Hyper-parameters, device and precision.
    progress
        Show a progress bar.
    on_epoch_end
        Called with each epoch's record (e.g. to report an NNI intermediate result).
    deadline
        ``time.monotonic()`` value after which training raises ``TimeoutError``.

    Raises
    ------
    trials.devices.DeviceUnavailableError
        If ``config.device`` asks for a GPU this machine does not have (before anything runs).
    NonFiniteLossError
        If the loss becomes NaN or infinite (noticed within :data:`LOSS_CHECK_STEPS` steps).

    Notes
    -----
    On the CPU, calls :func:`trials.allocator.keep_large_buffers_in_heap` (glibc only): the
    training process then keeps freed memory for reuse instead of page-faulting it back every
    step. Batches are drawn in the same order on every device (a CPU generator seeded with
    ``config.seed``), so CPU and GPU runs see the same data.
    """
    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_large_buffers_in_heap()
    place_model(model, device)
    _logger.info("training on %s, precision %s", describe_device(device), config.precision)
    generator = torch.Generator().manual_seed(config.seed)
    batches = DeviceBatches(data.train, batch_size=config.batch_size, device=device, shuffle=True,
                            generator=generator)
    held_out = DeviceBatches(data.val, batch_size=256, device=device)
    optimizer = make_optimizer(model.parameters(), learning_rate=config.learning_rate,
                               weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    step = _TrainingStep(model, config, optimizer, grad_scaler(device, config.precision), device)
    result = TrainResult(device=device_name(device))
    with fast_cuda_kernels(device):
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            model.train()
            bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
            running_loss = torch.zeros((), dtype=torch.float64, device=device)
            for index, (images, labels) in enumerate(bar):
                loss = step.loss(random_shift(images, config.shift_pixels, generator), labels)
                running_loss += loss.detach()
                if index % LOSS_CHECK_STEPS == 0:  # reading the loss waits for the GPU: not every step
                    _check_finite(running_loss, epoch)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                step.update(loss)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"training exceeded its time budget in epoch {epoch}")
            _check_finite(running_loss, epoch)
            scheduler.step()
            record = EpochRecord(epoch, running_loss.item() / max(len(batches), 1),
                                 _accuracy(model, held_out, device, config.precision), time.perf_counter() - start)
            _logger.info("epoch %d: loss %.4f, held-out accuracy %.4f (%.1f s)",
                         record.epoch, record.train_loss, record.val_accuracy, record.seconds)
            result.history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(record)
    return result


class _TrainingStep:
    """One optimisation step: the batch's (clean and adversarial) loss under autocast, then the update."""

    def __init__(self, model: nn.Module, config: TrainConfig, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, device: torch.device) -> None:
        self.model, self.config, self.optimizer, self.scaler, self.device = model, config, optimizer, scaler, device
        self.criterion = ClassificationLoss(reconstruction_weight=config.reconstruction_weight)
        self.decoder = getattr(model, "decoder", None)
        self.adversary = (config.adversarial.adversary(torch.Generator().manual_seed(config.seed))
                          if config.adversarial is not None else None)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.precision):
            loss = self.criterion(self.model(images), labels, images, self.decoder)
            if self.adversary is None:
                return loss
            adversarial_images = self.adversary(self.model, images, labels).detach()
            adversarial = self.criterion(self.model(adversarial_images), labels, images, self.decoder)
            return (1 - self.config.adversarial_weight) * loss + self.config.adversarial_weight * adversarial

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def _check_finite(running_loss: torch.Tensor, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` once the sum of the epoch's losses is NaN or infinite."""
    value = running_loss.item()
    if not math.isfinite(value):
        raise NonFiniteLossError(f"training loss became {value} in epoch {epoch}")

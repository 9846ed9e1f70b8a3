"""NNI Lightning evaluator for capsule networks and plain classifiers.

One evaluator serves NNI's one-shot strategies (DARTS, GumbelDARTS, RandomOneShot, E2RNAS) and
its multi-trial strategies. Its datasets are ``nni.trace``-d objects that load their own
data, so the evaluator travels to trial workers as a few hundred bytes. It trains on the
device setting of :mod:`trials.devices` (``auto`` by default), which Lightning resolves where
the trainer is built: in the trial, or in the driver for one-shot searches.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Optional

import nni
import torch
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from torch.utils.data import Dataset, Subset

from .datasets import load_dataset
from .devices import check_device, check_precision, cuda_index, describe_device, fast_cuda_kernels, module_device
from .losses import ClassificationLoss, class_scores
from .training import make_optimizer

_logger = logging.getLogger(__name__)

#: ``TrainConfig.precision`` -> Lightning's precision setting.
LIGHTNING_PRECISIONS: dict[str, str] = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


def lightning_device(device: str) -> dict[str, Any]:
    """Lightning ``Trainer`` arguments (``accelerator``, ``devices``) for a device setting.

    ``auto`` lets Lightning pick (a GPU if there is one) where the trainer is built; ``cuda:N``
    is that GPU.
    """
    if check_device(device) == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    if device == "auto":
        return {"accelerator": "auto", "devices": 1}
    index = cuda_index(device)
    return {"accelerator": "cuda", "devices": [index] if index is not None else 1}


@nni.trace
class DatasetPart(Dataset):
    """One part (``"train"`` or ``"val"``) of a named dataset, loaded where it is used.

    Parameters
    ----------
    name
        Dataset name (see :data:`trials.datasets.DATASETS`).
    part
        ``"train"`` or ``"val"``.
    options
        Keyword arguments of the dataset's loader (e.g. ``root``, ``seed``).
    half
        ``0`` or ``1``: only the first or the second half of the part (one-shot searches
        train weights on one half of the training split and the architecture on the other,
        leaving the held-out split untouched); ``None``: all of it.
    """

    def __init__(self, name: str, part: str, options: Optional[dict] = None, half: Optional[int] = None) -> None:
        if part not in ("train", "val"):
            raise ValueError(f"part must be 'train' or 'val', got {part!r}")
        if half not in (None, 0, 1):
            raise ValueError(f"half must be 0, 1 or None, got {half!r}")
        splits = load_dataset(name, **(options or {}))
        data = splits.train if part == "train" else splits.val
        if half is not None:
            middle = len(data) // 2  # type: ignore[arg-type]
            indices = range(0, middle) if half == 0 else range(middle, len(data))  # type: ignore[arg-type]
            data = Subset(data, indices)
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.data[index]


class CapsuleClassificationModule(LightningModule):
    """Lightning module: margin + reconstruction loss for capsules, cross-entropy for logits.

    Reports held-out accuracy (``val_accuracy``) to NNI after each validation epoch and
    as the final result.
    """

    def __init__(self, *, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 reconstruction_weight: float = 0.0005) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.criterion = ClassificationLoss(reconstruction_weight=reconstruction_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = self.criterion(self(images), labels, images, getattr(self.model, "decoder", None))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = batch
        accuracy = (class_scores(self(images)).argmax(dim=1) == labels).float().mean()
        self.log("val_accuracy", accuracy, prog_bar=True)

    def on_fit_start(self) -> None:
        device = module_device(self)
        _logger.info("training on %s, Lightning precision %s", describe_device(device), self.trainer.precision)
        self._device_settings = contextlib.ExitStack()
        self._device_settings.enter_context(fast_cuda_kernels(device))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(self.parameters(), learning_rate=self.learning_rate, weight_decay=self.weight_decay)

    def _accuracy(self) -> Optional[float]:
        value = self.trainer.callback_metrics.get("val_accuracy")
        return None if value is None else float(value)

    def on_validation_epoch_end(self) -> None:
        accuracy = self._accuracy()
        if nni.get_current_parameter() is not None and not self.trainer.sanity_checking and accuracy is not None:
            nni.report_intermediate_result(accuracy)

    def on_fit_end(self) -> None:
        settings = getattr(self, "_device_settings", None)
        if settings is not None:
            settings.close()
            self._device_settings = None
        # One-shot strategies validate the supernet through their own loop and may log nothing.
        accuracy = self._accuracy()
        if nni.get_current_parameter() is not None and accuracy is not None:
            nni.report_final_result(accuracy)


def capsule_evaluator(dataset: str = "digits", *, epochs: int = 1, batch_size: int = 64,
                      learning_rate: float = 1e-3, reconstruction_weight: float = 0.0005,
                      dataset_options: Optional[dict] = None,
                      limit_train_batches: Optional[int] = None,
                      architecture_split: bool = False, device: str = "auto",
                      precision: str = "fp32") -> Lightning:
    """An NNI ``Lightning`` evaluator that trains on ``dataset`` and reports held-out accuracy.

    Parameters
    ----------
    dataset
        Dataset name; ``dataset_options`` go to its loader.
    epochs, batch_size, learning_rate, reconstruction_weight
        Training hyper-parameters.
    limit_train_batches
        Train on at most this many batches per epoch (quick searches and tests).
    architecture_split
        For one-shot searches, whose architecture step reads the evaluator's validation data:
        train on the first half of the training split and "validate" on its second half, so
        the held-out split stays unseen by the search.
    device
        ``"auto"`` (a GPU if there is one where the trainer is built), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"`` (see :func:`lightning_device`).
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (Lightning's mixed precision, see
        :data:`LIGHTNING_PRECISIONS`).
    """
    options = dict(dataset_options or {})
    trainer_kwargs: dict[str, Any] = dict(max_epochs=epochs, **lightning_device(device),
                                          precision=LIGHTNING_PRECISIONS[check_precision(precision)], logger=False,
                                          enable_checkpointing=False, enable_model_summary=False)
    if limit_train_batches is not None:
        trainer_kwargs["limit_train_batches"] = limit_train_batches
    return Lightning(
        CapsuleClassificationModule(learning_rate=learning_rate, reconstruction_weight=reconstruction_weight),
        Trainer(**trainer_kwargs),
        train_dataloaders=DataLoader(DatasetPart(dataset, "train", options, half=0 if architecture_split else None),
                                     batch_size=batch_size, shuffle=True),
        val_dataloaders=(DataLoader(DatasetPart(dataset, "train", options, half=1), batch_size=batch_size,
                                    shuffle=True) if architecture_split
                         else DataLoader(DatasetPart(dataset, "val", options), batch_size=256)),
    )

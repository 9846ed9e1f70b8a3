"""The multi-trial evaluator: train, report accuracy per epoch, then report hardware cost.

``evaluate_architecture`` runs inside an NNI trial (local or remote worker). It reports the
held-out accuracy after every epoch (intermediate results) and one final dict:
``default`` (the accuracy unless configured otherwise), ``accuracy``, ``energy_mj``,
``latency_ms``, ``memory_kib``, ``macs``, ``params``, ``host_latency_ms``, ``train_seconds``, and
``robust_accuracy`` when a ``robustness`` attack is configured, and ``device``: where the trial
trained (``"cpu"``, ``"cuda:0"``; a string, not a metric: NNI stores it with the dict, its web UI
offers only the numeric keys as columns, and the report lists it in ``trials.csv``). With
``adversarial`` the network is trained adversarially (see :class:`trials.training.TrainConfig`).
The trial trains on ``device`` (``auto``: the first GPU it can see, which inside an NNI trial
with ``trial_gpu_number`` set is the GPU NNI gave it through ``CUDA_VISIBLE_DEVICES``); its log
names the device and the GPU model.
A NaN loss, out-of-memory, invalid architecture or timeout raises, so NNI records a *failed*
trial with the reason in its log; nothing is ever reported as accuracy 0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping, Optional

import nni
import torch
from nni.nas.evaluator import FunctionalEvaluator
from torch import nn

from nni_capsnas.hardware_cost import network_cost
from nni_capsnas.metrics import DEFAULT_KEY, DEVICE_KEY, METRICS, metric
from nni_capsnas.quiet import silence_known_warnings

from .attacks import AttackConfig, robust_accuracy
from .datasets import DATASETS, load_dataset
from .training import TrainConfig, train

_logger = logging.getLogger(__name__)


def evaluate_architecture(model: nn.Module, *, dataset: str = "digits", dataset_options: Optional[dict] = None,
                          epochs: int = 2, batch_size: int = 64, learning_rate: float = 1e-3,
                          shift_pixels: int = 0, accelerator: str = "capsacc",
                          time_budget_s: Optional[float] = None, default_metric: str = "accuracy",
                          measure_host: bool = True, seed: int = 0, threads: Optional[int] = None,
                          robustness: Optional[dict[str, Any]] = None,
                          adversarial: Optional[dict[str, Any]] = None,
                          adversarial_weight: float = 0.5, device: str = "auto",
                          precision: str = "fp32") -> dict[str, Any]:
    """Train ``model`` and report its accuracy and hardware cost to NNI.

    Parameters
    ----------
    model
        The frozen network of this trial.
    dataset, dataset_options
        Dataset name and loader options (e.g. ``{"root": ...}``).
    epochs, batch_size, learning_rate, shift_pixels, seed
        Training hyper-parameters (see :class:`trials.training.TrainConfig`).
    accelerator
        Hardware accelerator model for the cost estimate.
    time_budget_s
        Fail the trial if training takes longer than this.
    default_metric
        Which metric NNI's ``default`` (the web UI's main curve) shows.
    measure_host
        Also measure the onnxruntime latency on the worker's CPU.
    threads
        PyTorch threads in this trial.
    robustness
        Attack the trained model on the held-out split and add ``robust_accuracy``, e.g.
        ``{"attack": "pgd", "epsilon": 0.1, "steps": 10}`` (keys of
        :class:`trials.attacks.AttackConfig`); ``None`` (default) skips it.
    adversarial, adversarial_weight
        Adversarial training: every batch is also attacked with this setting, e.g.
        ``{"attack": "fgsm", "epsilon": 0.1, "random_start": True}`` (keys of
        :class:`trials.attacks.AttackConfig`), and that loss makes up ``adversarial_weight`` of the
        batch's loss; ``None`` (default) trains on clean images only.
    device, precision
        Where and in which precision to train (see :class:`trials.training.TrainConfig`); the
        robustness attack runs on the same device, the hardware estimate exports a CPU copy.

    Returns
    -------
    dict
        The final metrics (also reported to NNI).
    """
    silence_known_warnings()
    attack = AttackConfig.from_mapping(robustness) if robustness is not None else None
    config = train_config_from_options(dict(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, shift_pixels=shift_pixels, seed=seed,
        adversarial=adversarial, adversarial_weight=adversarial_weight, device=device, precision=precision))
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = time.monotonic()
    deadline = None if time_budget_s is None else start + time_budget_s
    data = load_dataset(dataset, **(dataset_options or {}))
    try:
        result = train(model, data, config, progress=False, deadline=deadline,
                       on_epoch_end=lambda record: nni.report_intermediate_result(record.val_accuracy))
        metrics: dict[str, Any] = {"accuracy": result.final_accuracy, "train_seconds": time.monotonic() - start}
        metrics.update(network_cost(model, data.input_shape, accelerator=accelerator, measure_host=measure_host))
        if attack is not None:
            metrics["robust_accuracy"] = robust_accuracy(model, data.val, **dataclasses.asdict(attack))
    except Exception as error:
        _logger.error("trial failed: %s: %s", type(error).__name__, error)
        raise
    if default_metric not in metrics:
        raise ValueError(f"default_metric {default_metric!r} is not one of {sorted(metrics)}")
    metrics = {name: metrics[name] for name in METRICS if name in metrics}  # the registry's metrics, in its order
    metrics[DEFAULT_KEY] = metrics[default_metric]
    metrics[DEVICE_KEY] = result.device
    _logger.info("final metrics: %s", metrics)
    nni.report_final_result(metrics)
    return metrics


def train_config_from_options(options: Mapping[str, Any], *, epochs: Optional[int] = None) -> TrainConfig:
    """The :class:`TrainConfig` a trial with these evaluator options trains with.

    Parameters
    ----------
    options
        Keyword arguments of :func:`evaluate_architecture` (missing ones take its defaults).
    epochs
        Overrides ``options["epochs"]`` (e.g. for retraining).

    Returns
    -------
    TrainConfig
        Checked training settings; bad values raise ``ValueError`` naming the option.
    """
    adversarial = options.get("adversarial")
    attack = AttackConfig.from_mapping(adversarial, purpose="adversarial") if adversarial is not None else None
    return TrainConfig(epochs=epochs if epochs is not None else options.get("epochs", 2),
                       batch_size=options.get("batch_size", 64), learning_rate=options.get("learning_rate", 1e-3),
                       shift_pixels=options.get("shift_pixels", 0), seed=options.get("seed", 0),
                       adversarial=attack, adversarial_weight=options.get("adversarial_weight", 0.5),
                       device=options.get("device", "auto"), precision=options.get("precision", "fp32"))


def hardware_aware_evaluator(**options: Any) -> FunctionalEvaluator:
    """An NNI evaluator running :func:`evaluate_architecture` with ``options``.

    Options are checked here, before any trial starts.
    """
    metric(options.get("default_metric", "accuracy"))  # a registry metric, or ValueError naming it
    dataset = options.get("dataset", "digits")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(sorted(DATASETS))}, got {dataset!r}")
    train_config_from_options(options)
    if options.get("robustness") is not None:
        AttackConfig.from_mapping(options["robustness"])
    return FunctionalEvaluator(evaluate_architecture, **options)

"""The one-shot phase of a configured E2RNAS search.

``nni-capsnas search`` with ``strategy.name = "e2rnas"`` runs in two phases:

1. this module: E2RNAS trains the weight-sharing supernet in this process (NNI's sequential
   one-shot engine: weights on one half of the training split, architecture on the other,
   the held-out split unseen) and derives an architecture;
2. :class:`~nni_capsnas.strategy.fixed_samples.FixedSamples` trains the derived architecture
   as an ordinary NNI trial with the hardware-aware evaluator, so its accuracy, robust
   accuracy and hardware cost are in NNI's web UI and database, and ``report``, ``view`` and
   ``retrain`` work as for NSGA2.

The phase leaves in ``<experiment>/e2rnas/``: ``architecture.json`` (the derived sample),
``probabilities.json`` (the final architecture distribution), ``choice_margins.csv`` (every
label's exported value, its probability, the runner-up and the lead, near-ties marked),
``architecture_steps.csv`` (every architecture step's objective values, MGDA weights, expected
costs, the supernet's clean and adversarial accuracy on the step's batch and the epoch's running
accuracy, and the cosine between the clean and adversarial architecture gradients per label)
and ``mgda_weights.png``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from nni.nas.experiment import NasExperiment

from trials.attacks import AttackConfig
from trials.lightning import capsule_evaluator

from ..modules import DEFAULT_CAPSULE_LOGITS
from ..quiet import logger_levels
from ..strategy.choice_margin import choice_margins
from ..strategy.e2rnas import E2RNAS, ArchitectureStepRecord
from .config import ConfigError, SearchConfig
from .experiment_builder import build_space, dataset_options

_logger = logging.getLogger(__name__)

#: E2RNAS' adversarial objective unless ``strategy.options.adversary`` says otherwise.
DEFAULT_ADVERSARY: dict[str, Any] = {"attack": "fgsm", "epsilon": 0.1, "random_start": True}
ARCHITECTURE_FILE = "architecture.json"
#: Every architecture step's objectives, MGDA weights, costs, accuracies and gradient cosines.
STEPS_FILE = "architecture_steps.csv"
#: Every label's exported value, its probability and its lead over the runner-up.
MARGINS_FILE = "choice_margins.csv"


def build_e2rnas(config: SearchConfig) -> Any:
    """The E2RNAS strategy of ``config`` (hardware resource terms read the space's ``input_shape``).

    ``strategy.options`` may hold ``adversary`` (a table of :class:`trials.attacks.AttackConfig`
    settings merged over :data:`DEFAULT_ADVERSARY`, or ``false`` for no adversarial objective;
    its ``capsule_logits`` follows the strategy's unless the table sets it),
    ``resources`` (a list of ``{metric, target, mode}`` tables; default: one ``max`` term per
    ``strategy.constraints`` entry) and E2RNAS' keyword arguments (``gradient_normalization``,
    ``upper_loss`` (here ``"cross_entropy"`` by default), ``capsule_logits``, ``combine``,
    ``weight_adversarial``, ``near_tie_margin``, ``arc_learning_rate``, ``gradient_clip_val``,
    ``log_prob_every_n_step``, ``warmup_epochs``).

    Raises
    ------
    ConfigError
        Naming the option E2RNAS or the attack rejected.
    """
    options = dict(config.strategy.options)
    adversary_options = options.pop("adversary", {})
    adversary = None
    if adversary_options is not False:
        if not isinstance(adversary_options, dict):
            raise ConfigError(f"strategy.options.adversary: expected a table of attack settings or false, "
                              f"got {adversary_options!r}")
        try:
            # the attack's cross-entropy reads the same logits as the search's upper-level loss
            capsule_logits = options.get("capsule_logits", DEFAULT_CAPSULE_LOGITS)
            attack = AttackConfig.from_mapping({"seed": config.strategy.seed, **DEFAULT_ADVERSARY,
                                                "capsule_logits": capsule_logits, **adversary_options})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"strategy.options.adversary: {' '.join(str(error).split())}") from error
        adversary = attack.adversary()
    # The margin loss is flat for confident capsule outputs, so FGSM along its gradient barely
    # perturbs them (see nni_capsnas.strategy.e2rnas): cross-entropy on the class logits by default.
    options.setdefault("upper_loss", "cross_entropy")
    resources = options.pop("resources", None)
    if resources is None:
        resources = [{"metric": metric, "target": bound, "mode": "max"}
                     for metric, bound in config.strategy.constraints.items()]
    try:
        return E2RNAS(adversary=adversary, resources=resources, accelerator=config.hardware.accelerator, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"strategy.options: rejected by E2RNAS: {' '.join(str(error).split())}") from error


def run_one_shot_phase(config: SearchConfig, folder: Path) -> list[dict[str, Any]]:
    """Run E2RNAS as ``config`` says and return the derived architecture (as a list of one).

    ``folder`` (created) receives the phase's files and NNI's one-shot experiment log.
    """
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.training.seed)  # the supernet's initial weights, then its training
    space = build_space(config)
    strategy = build_e2rnas(config)
    training = config.training
    evaluator = capsule_evaluator(config.dataset.name, epochs=training.epochs, batch_size=training.batch_size,
                                  learning_rate=training.learning_rate, dataset_options=dataset_options(config),
                                  architecture_split=True, device=training.device, precision=training.precision)
    torch.manual_seed(training.seed)  # the training's draws, whatever building the search consumed
    experiment = NasExperiment(space, evaluator, strategy)
    experiment.config.experiment_name = f"{config.experiment.name}-e2rnas"
    experiment.config.experiment_working_directory = str(folder)
    _logger.info("E2RNAS one-shot search: %d epochs on half of %s's training split (architecture steps on the "
                 "other half); files in %s", training.epochs, config.dataset.name, folder)
    # NNI repeats "training_service will be ignored" for the sequential engine many times.
    with logger_levels({"nni": logging.ERROR, "pytorch_lightning": logging.WARNING,
                        "lightning.pytorch": logging.WARNING}):
        try:
            experiment.run()
            sample = experiment.export_top_models(formatter="dict")[0]
        finally:
            experiment.stop()
    _write_outputs(folder, sample, strategy)
    return [sample]


def _write_outputs(folder: Path, sample: dict[str, Any], strategy: Any) -> None:
    module = strategy.oneshot_module
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(sample, indent=2, default=lambda v: v.item()),
                                            encoding="utf-8")
    probabilities = {label: {str(choice): float(p) for choice, p in dict(probs).items()}
                     for label, probs in module.export_probs().items()}
    (folder / "probabilities.json").write_text(json.dumps(probabilities, indent=2), encoding="utf-8")
    steps = pd.DataFrame([_step_row(record) for record in module.records])
    steps.to_csv(folder / STEPS_FILE, index=False)
    margins = pd.DataFrame([{**asdict(m), "margin": m.margin,
                             "near_tie": m.runner_up is not None and m.margin < strategy.near_tie_margin}
                            for m in choice_margins(module.export_probs()).values()])
    margins.to_csv(folder / MARGINS_FILE, index=False)
    if not steps.empty:
        _plot_weights(steps, folder / "mgda_weights.png")
    _logger.info("E2RNAS derived %s (%d architecture steps); written to %s", sample, len(steps), folder)


def _step_row(record: ArchitectureStepRecord) -> dict[str, Any]:
    """One architecture step as a CSV row (``epoch_accuracy/*``: the epoch's running accuracy so far)."""
    return {"epoch": record.epoch, "step": record.step,
            **{f"{prefix}/{key}": value
               for prefix, values in (("loss", record.losses), ("weight", record.weights),
                                      ("expected", record.expected), ("accuracy", record.accuracy),
                                      ("epoch_accuracy", record.epoch_accuracy), ("cosine", record.cosines))
               for key, value in values.items()}}


def _plot_weights(steps: Any, path: Path) -> None:
    weights = [c for c in steps.columns if c.startswith("weight/")]
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    for column in weights:
        axes.plot(range(len(steps)), steps[column].rolling(8, min_periods=1).mean(), label=column[len("weight/"):])
    axes.set_xlabel("architecture step")
    axes.set_ylabel("MGDA weight (moving mean of 8)")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)

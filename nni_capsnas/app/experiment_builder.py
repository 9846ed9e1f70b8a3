"""Compose a search from its configuration: space, evaluator, strategy, NNI experiment.

The application layer composes every package, following the import direction
``hw_estimators <- nni_capsnas (plugin) <- search_spaces <- trials <- nni_capsnas.app``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from nni.nas import strategy as nni_strategy

from search_spaces.capsnet_space import CapsNetSpace
from search_spaces.capsule_cell_space import CapsuleCellSpace
from search_spaces.cnn_space import CNNSpace
from search_spaces.darts_cell_space import DartsCellSpace
from search_spaces.nascaps_space import NASCapsSpace
from trials.datasets import load_dataset
from trials.evaluator import hardware_aware_evaluator

from ..experiment import CapsNasExperiment
from ..hardware_cost import SampleCostEstimator
from ..nni_compat.console_log import hide_misleading_startup_lines
from ..strategy import NSGA2
from ..strategy.fixed_samples import FixedSamples
from .config import ConfigError, SearchConfig
from .training_service import configure_training_service

_logger = logging.getLogger(__name__)

#: ``space.name`` -> model space class.
SPACE_CLASSES: dict[str, Callable[..., Any]] = {
    "nascaps": NASCapsSpace, "cnn": CNNSpace, "capsnet": CapsNetSpace, "capsule-cell": CapsuleCellSpace,
    "darts-cell": DartsCellSpace,
}


def dataset_options(config: SearchConfig) -> dict[str, Any]:
    options: dict[str, Any] = {"seed": config.dataset.seed}
    if config.dataset.root:
        options["root"] = config.dataset.root
    return options


def build_space(config: SearchConfig) -> Any:
    """The model space named by ``config.space``, sized for the dataset."""
    data = load_dataset(config.dataset.name, **dataset_options(config))
    space_class = SPACE_CLASSES[config.space.name]
    try:
        return space_class(input_shape=data.input_shape, num_classes=data.num_classes, **config.space.options)
    except (TypeError, ValueError) as error:  # unknown option, wrong value: the user's configuration
        raise ConfigError(f"space.options: rejected by {space_class.__name__}: "
                          f"{' '.join(str(error).split())}") from error


def build_evaluator(config: SearchConfig) -> Any:
    """The hardware-aware multi-trial evaluator."""
    training = config.training
    return hardware_aware_evaluator(
        dataset=config.dataset.name, dataset_options=dataset_options(config), epochs=training.epochs,
        batch_size=training.batch_size, learning_rate=training.learning_rate,
        shift_pixels=training.shift_pixels, time_budget_s=training.time_budget_s, seed=training.seed,
        accelerator=config.hardware.accelerator, measure_host=config.hardware.measure_host,
        threads=config.experiment.trial_threads, robustness=config.training.robustness,
        adversarial=config.training.adversarial, adversarial_weight=config.training.adversarial_weight,
        device=training.device, precision=training.precision)


def build_strategy(config: SearchConfig, space: Any) -> Any:
    """NSGA2 (ours), one of NNI's strategies (which optimise the ``default`` metric), or for
    ``e2rnas`` the strategy that trains the one-shot phase's derived architecture as a trial."""
    try:
        return _build_strategy(config, space)
    except (TypeError, ValueError) as error:  # unknown option, wrong value: the user's configuration
        raise ConfigError(f"strategy.options: rejected by strategy {config.strategy.name}: "
                          f"{' '.join(str(error).split())}") from error


def _build_strategy(config: SearchConfig, space: Any) -> Any:
    section = config.strategy
    if section.name == "e2rnas":
        # The one-shot phase (nni_capsnas.app.oneshot_search) sets the derived architecture.
        return FixedSamples()
    if section.name == "nsga2":
        # the pre-training estimate (milliseconds): constraints are checked before training and the
        # surrogate-assisted generations take the hardware objectives from it, exact
        estimator = SampleCostEstimator(space, accelerator=config.hardware.accelerator)
        return NSGA2(population_size=section.population_size, offspring_size=section.offspring_size,
                     objectives=section.objectives, constraints=section.constraints,
                     hardware_estimator=estimator, max_stalled_generations=section.max_stalled_generations,
                     seed=section.seed, **section.options)
    if section.name == "random":
        return nni_strategy.Random(seed=section.seed, **section.options)
    if section.name == "regularized-evolution":
        return nni_strategy.RegularizedEvolution(population_size=section.population_size, seed=section.seed,
                                                 **{"sample_size": max(1, section.population_size // 4),
                                                    **section.options})
    return nni_strategy.TPE(**section.options)


def build_experiment(config: SearchConfig, experiment_id: str | None = None, *, space: Any = None) -> Any:
    """A ready-to-run ``NasExperiment`` for ``config`` (``experiment_id`` to resume one).

    ``space``: the model space, if already built with :func:`build_space`.

    With ``training_service.platform = "remote"`` the trials run on the SSH workers listed
    there (see :mod:`nni_capsnas.app.training_service`).

    Raises
    ------
    ConfigError
        If the space or strategy options are rejected, or NNI could not ship the trial code
        (the current directory) to remote workers.
    """
    space = build_space(config) if space is None else space
    with hide_misleading_startup_lines():
        experiment = CapsNasExperiment(space, build_evaluator(config), build_strategy(config, space),
                                       id=experiment_id)
    section = config.experiment
    experiment.config.experiment_name = section.name
    experiment.config.max_trial_number = section.max_trials
    experiment.config.trial_concurrency = section.trial_concurrency
    if section.max_duration:
        experiment.config.max_experiment_duration = section.max_duration
    if section.workdir:
        workdir = Path(section.workdir).expanduser().resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        experiment.config.experiment_working_directory = str(workdir)
    configure_training_service(experiment.config, config.training_service)
    return experiment

"""Search configuration files (TOML or YAML), validated before anything starts.

Example (TOML)::

    [experiment]
    max_trials = 24
    trial_concurrency = 2
    port = 8080

    [dataset]
    name = "digits"

    [space]
    name = "nascaps"

    [training]
    epochs = 2

    [hardware]
    accelerator = "capsacc"

    [strategy]
    name = "nsga2"
    population_size = 8
    constraints = { energy_mj = 50.0 }

    [training]
    device = "auto"               # auto (a GPU if there is one), cpu, cuda, cuda:N

    [training_service]            # optional; platform = "local" when left out
    platform = "remote"
    trial_gpu_number = 1          # NNI gives each trial one GPU of its machine
    nni_manager_ip = "10.0.0.5"   # this machine, as the workers reach it

    [[training_service.machines]]
    host = "10.0.0.21"
    user = "nas"
    ssh_key_file = "~/.ssh/id_ed25519"
    python_path = "/opt/capsnas/.venv/bin"   # directory of the worker's Python

Every unknown key, wrong type or unknown name raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from hw_estimators.accelerator import builtin_accelerators
from trials.attacks import AttackConfig
from trials.datasets import DATASETS
from trials.devices import check_device, check_precision, cuda_index, wants_cuda

from ..metrics import DEFAULT_OBJECTIVES, ESTIMATOR_METRICS, METRICS, check_directions
from ..strategy.objectives import Objectives, check_constraints

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI
    import tomli as tomllib

#: The configuration a search started with, in its experiment folder (read by resume, report, retrain).
CONFIG_FILE = "nni-capsnas-config.json"
SPACES = ("nascaps", "cnn", "capsnet", "capsule-cell", "darts-cell")
STRATEGIES = ("nsga2", "random", "regularized-evolution", "tpe", "e2rnas")
#: Strategies that search one-shot (in the driver) and then train their result as trials.
ONE_SHOT_STRATEGIES: tuple[str, ...] = ("e2rnas",)
#: Spaces a one-shot strategy can search (weight sharing through LayerChoice / capsule hooks).
ONE_SHOT_SPACES: tuple[str, ...] = ("capsule-cell", "darts-cell", "capsnet")
#: Integers must fit the 32-bit ints of NNI's manager and torch (``INT_MIN..INT_MAX``).
INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1
#: NNI's duration syntax, e.g. ``90m``, ``1.5h``, ``2d``.
DURATION = re.compile(r"(\d+(\.\d*)?|\.\d+)[smhd]", re.IGNORECASE)
PLATFORMS = ("local", "remote")
#: A host name or IPv4 address as NNI puts it into ``ws://HOST:PORT`` and SSH connections.
HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9_])?")
#: What a worker's ``python_path`` must not be: the interpreter itself instead of its directory.
INTERPRETER_NAME = re.compile(r"python(\d+(\.\d+)?)?(\.exe)?", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration problem, naming the offending key."""


@dataclass
class ExperimentSection:
    """NNI experiment settings."""

    name: str = "nni-capsnas"
    max_trials: int = 20
    trial_concurrency: int = 1
    max_duration: Optional[str] = None
    port: int = 8080
    host: str = "127.0.0.1"
    workdir: Optional[str] = None
    trial_threads: int = 1


@dataclass
class DatasetSection:
    name: str = "digits"
    root: Optional[str] = None
    seed: int = 0


@dataclass
class SpaceSection:
    name: str = "nascaps"
    options: dict = field(default_factory=dict)


@dataclass
class TrainingSection:
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-3
    shift_pixels: int = 0
    time_budget_s: Optional[float] = None
    seed: int = 0
    #: Attack the trained network on the held-out split and report ``robust_accuracy``, e.g.
    #: ``{attack = "pgd", epsilon = 0.1, steps = 10}`` (see :class:`trials.attacks.AttackConfig`).
    robustness: Optional[dict] = None
    #: Adversarial training of every trial, e.g. ``{attack = "fgsm", epsilon = 0.1, random_start = true}``
    #: ("fast adversarial training"); ``adversarial_weight`` is the adversarial loss's share of each batch.
    adversarial: Optional[dict] = None
    adversarial_weight: float = 0.5
    #: Where trials (and a one-shot search's supernet) train: ``auto`` (CUDA when there is a GPU),
    #: ``cpu``, ``cuda`` or ``cuda:N`` (see :mod:`trials.devices`).
    device: str = "auto"
    #: ``fp32`` (TF32 matrix products on CUDA), ``bf16`` or ``fp16`` (automatic mixed precision).
    precision: str = "fp32"


@dataclass
class HardwareSection:
    accelerator: str = "capsacc"
    measure_host: bool = True


@dataclass
class StrategySection:
    name: str = "nsga2"
    population_size: int = 8
    offspring_size: Optional[int] = None
    objectives: Optional[dict] = None
    constraints: dict = field(default_factory=dict)
    max_stalled_generations: int = 5
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class MachineSection:
    """One SSH worker of the remote training service.

    ``python_path`` is the *directory* holding the worker's ``python`` (e.g. a virtual
    environment's ``bin``); NNI puts it first on the worker's ``PATH``.
    """

    host: str
    user: str
    ssh_key_file: str
    python_path: str
    port: int = 22


@dataclass
class TrainingServiceSection:
    """Where trials run: on this machine (``local``) or on SSH workers (``remote``).

    The GPU keys are NNI's GPU scheduling (for remote searches they apply to every machine):
    ``trial_gpu_number`` GPUs per trial (unset: NNI schedules none and every trial sees every
    GPU; 0: trials see none), chosen among ``gpu_indices`` (default: all), skipping GPUs that
    other processes use unless ``use_active_gpu``, with up to ``max_trial_number_per_gpu``
    trials sharing one GPU. NNI sets ``CUDA_VISIBLE_DEVICES`` for each trial.
    """

    platform: str = "local"
    machines: list[MachineSection] = field(default_factory=list)
    nni_manager_ip: str = "127.0.0.1"
    reuse_mode: bool = False
    trial_gpu_number: Optional[int] = None
    gpu_indices: Optional[list[int]] = None
    use_active_gpu: bool = False
    max_trial_number_per_gpu: int = 1


@dataclass
class SearchConfig:
    """A whole search: what to search, on what data, how, and on which hardware."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    space: SpaceSection = field(default_factory=SpaceSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    strategy: StrategySection = field(default_factory=StrategySection)
    training_service: TrainingServiceSection = field(default_factory=TrainingServiceSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _show(value: Any, limit: int = 60) -> str:
    """A short one-line ``repr`` of a user's value, safe for any value (huge ints included)."""
    try:
        text = repr(value)
    except Exception:  # e.g. ints beyond Python's digit limit for str()
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _name(key: Any) -> str:
    """A key as written in messages: plain if printable, else quoted."""
    return key if isinstance(key, str) and key and key.isprintable() and key.strip() == key else _show(key)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` if it fits ``annotation`` (ints accepted for floats), else raise.

    Integers must fit 32 bits, floats must be finite, and tables need string keys.
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _check_type(key, value, options[0])
    if origin is list:
        (item_class,) = typing.get_args(annotation)
        if not dataclasses.is_dataclass(item_class):  # a list of plain values, e.g. [0, 1]
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list of {item_class.__name__}, got {type(value).__name__} "
                                  f"{_show(value)}")
            return [_check_type(f"{key}[{index}]", item, item_class) for index, item in enumerate(value)]
        # a list of tables (``[[section.key]]`` in TOML), each checked as a section
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of tables, got {type(value).__name__} {_show(value)}")
        return [_build_section(item_class, f"{key}[{index}]", item) for index, item in enumerate(value)]
    expected = {int: int, float: (int, float), str: str, bool: bool, dict: dict}[annotation]
    if isinstance(value, bool) and annotation is not bool:
        raise ConfigError(f"{key}: expected {annotation.__name__}, got bool {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {type(value).__name__} {_show(value)}")
    if annotation in (int, float) and isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        raise ConfigError(f"{key}: must be between {INT_MIN} and {INT_MAX}, got {_show(value)}")
    if annotation is float and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    if annotation is dict:
        for inner in value:
            if not isinstance(inner, str):
                raise ConfigError(f"{key}: keys must be strings, got {type(inner).__name__} {_show(inner)}")
    return float(value) if annotation is float else value


def _build_section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a table of settings, got {type(raw).__name__} {_show(raw)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{_name(key)}: unknown key; expected one of {', '.join(sorted(known))}")
        values[key] = _check_type(f"{name}.{key}", value, hints[key])
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for key in required:
        if key not in values:
            raise ConfigError(f"{name}.{key}: missing; required keys are {', '.join(required)}")
    return cls(**values)


def parse_config(raw: Mapping[str, Any]) -> SearchConfig:
    """Validate a configuration mapping (as read from TOML or YAML)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"configuration must be a table of sections, got {type(raw).__name__}")
    hints = typing.get_type_hints(SearchConfig)
    sections = {}
    for name, value in raw.items():
        if name not in hints:
            raise ConfigError(f"{_name(name)}: unknown section; expected one of {', '.join(hints)}")
        sections[name] = _build_section(hints[name], name, value)
    config = SearchConfig(**sections)
    _check_values(config)
    return config


def is_one_shot(config: SearchConfig) -> bool:
    """Whether the configured strategy searches one-shot (E2RNAS)."""
    return config.strategy.name in ONE_SHOT_STRATEGIES


def _check_values(config: SearchConfig) -> None:
    positive = [("experiment.max_trials", config.experiment.max_trials),
                ("experiment.trial_concurrency", config.experiment.trial_concurrency),
                ("experiment.trial_threads", config.experiment.trial_threads),
                ("training.epochs", config.training.epochs), ("training.batch_size", config.training.batch_size),
                ("strategy.population_size", config.strategy.population_size)]
    if config.strategy.offspring_size is not None:
        positive.append(("strategy.offspring_size", config.strategy.offspring_size))
    positive.append(("strategy.max_stalled_generations", config.strategy.max_stalled_generations))
    for key, value in positive:
        if value < 1:
            raise ConfigError(f"{key}: must be >= 1, got {value}")
    if config.strategy.name == "nsga2" and config.strategy.population_size < 2:
        raise ConfigError(f"strategy.population_size: NSGA-II needs >= 2, got {config.strategy.population_size}")
    for key, value in [("dataset.seed", config.dataset.seed), ("training.seed", config.training.seed),
                       ("strategy.seed", config.strategy.seed),
                       ("training.shift_pixels", config.training.shift_pixels)]:
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")
    for key, value in [("training.learning_rate", config.training.learning_rate),
                       ("training.time_budget_s", config.training.time_budget_s)]:
        if value is not None and value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value!r}")
    duration = config.experiment.max_duration
    if duration is not None and (not DURATION.fullmatch(duration) or float(duration[:-1]) <= 0):
        raise ConfigError(f"experiment.max_duration: expected a positive duration such as '90m', '1.5h' or '2d', "
                          f"got {_show(duration)}")
    if not 1 <= config.experiment.port <= 65535:
        raise ConfigError(f"experiment.port: must be in 1..65535, got {config.experiment.port}")
    if config.dataset.name not in DATASETS:
        raise ConfigError(f"dataset.name: unknown dataset {_show(config.dataset.name)}; expected one of "
                          f"{', '.join(sorted(DATASETS))}")
    if config.space.name not in SPACES:
        raise ConfigError(f"space.name: unknown space {_show(config.space.name)}; expected one of {', '.join(SPACES)}")
    if config.strategy.name not in STRATEGIES:
        raise ConfigError(f"strategy.name: unknown strategy {_show(config.strategy.name)}; expected one of "
                          f"{', '.join(STRATEGIES)}")
    accelerator = config.hardware.accelerator
    if accelerator not in builtin_accelerators() and not Path(accelerator).is_file():
        raise ConfigError(f"hardware.accelerator: {_show(accelerator)} is neither a built-in accelerator "
                          f"({', '.join(builtin_accelerators())}) nor an existing file")
    _check_objectives(config.strategy)
    _check_attack("training.robustness", config.training.robustness, "robustness")
    _check_attack("training.adversarial", config.training.adversarial, "adversarial")
    if not 0 < config.training.adversarial_weight <= 1:
        raise ConfigError(f"training.adversarial_weight: must be in (0, 1], got {config.training.adversarial_weight!r}")
    _check_device(config.training)
    _check_one_shot(config)
    _check_training_service(config.training_service)
    _check_trial_gpus(config)


def _check_objectives(section: StrategySection) -> None:
    """Objectives and constraints name registry metrics (what trials report), with valid values."""
    try:
        if section.objectives is not None:
            check_directions(section.objectives, known_only=True, owner="strategy.objectives")
        check_constraints(section.constraints, owner="strategy.constraints")
    except ValueError as error:
        raise ConfigError(str(error)) from error
    for metric in section.constraints:
        if metric not in METRICS:
            raise ConfigError(f"strategy.constraints.{_name(metric)}: unknown metric; expected one of "
                              f"{', '.join(METRICS)}")


def _check_attack(key: str, options: Optional[dict], purpose: str) -> None:
    """An attack table (``training.robustness`` or ``training.adversarial``) builds an AttackConfig."""
    if options is None:
        return
    try:
        AttackConfig.from_mapping(options, purpose=purpose)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {' '.join(str(error).split())}") from error


def _check_device(section: TrainingSection) -> None:
    """``training.device`` and ``training.precision`` are spelled right (availability: :mod:`.device_check`)."""
    for key, check, value in [("training.device", check_device, section.device),
                              ("training.precision", check_precision, section.precision)]:
        try:
            check(value)
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from error


def _check_trial_gpus(config: SearchConfig) -> None:
    """NNI's GPU scheduling keys, and a device setting that trials scheduled by them can honour."""
    section, name = config.training_service, "training_service"
    gpus = section.trial_gpu_number
    if gpus is not None and gpus < 0:
        raise ConfigError(f"{name}.trial_gpu_number: must be >= 0, got {gpus}")
    if section.max_trial_number_per_gpu < 1:
        raise ConfigError(f"{name}.max_trial_number_per_gpu: must be >= 1, got {section.max_trial_number_per_gpu}")
    if section.max_trial_number_per_gpu > 1 and not gpus:
        raise ConfigError(f"{name}.max_trial_number_per_gpu: NNI shares GPUs between trials only when it schedules "
                          f"them; set {name}.trial_gpu_number >= 1 too")
    if section.gpu_indices is not None:
        if not section.gpu_indices:
            raise ConfigError(f"{name}.gpu_indices: expected GPU indices such as [0, 1], got an empty list "
                              "(leave the key out to allow every GPU)")
        for index, value in enumerate(section.gpu_indices):
            if value < 0:
                raise ConfigError(f"{name}.gpu_indices[{index}]: must be >= 0, got {value}")
        if len(set(section.gpu_indices)) != len(section.gpu_indices):
            raise ConfigError(f"{name}.gpu_indices: lists a GPU twice: {section.gpu_indices}")
        if not gpus:
            raise ConfigError(f"{name}.gpu_indices: NNI restricts trials to these GPUs only when it schedules them; "
                              f"set {name}.trial_gpu_number >= 1 too")
    device = config.training.device
    if gpus == 0 and wants_cuda(device):
        raise ConfigError(f"training.device: {device!r} needs a GPU, but {name}.trial_gpu_number = 0 hides every "
                          "GPU from the trials (NNI sets CUDA_VISIBLE_DEVICES to nothing)")
    index = cuda_index(device)
    if gpus and index is not None and index >= gpus:
        raise ConfigError(f"training.device: {device!r} names GPU {index}, but NNI shows each trial only its "
                          f"{gpus} GPU(s), as cuda:0{f'..cuda:{gpus - 1}' if gpus > 1 else ''}; use 'auto' or "
                          "'cuda' (the first GPU NNI gave the trial)")


def _check_one_shot(config: SearchConfig) -> None:
    """One-shot strategies need a weight-sharing space and resource metrics they can expect."""
    if not is_one_shot(config):
        if config.space.name == "darts-cell":
            raise ConfigError("space.name: 'darts-cell' (NNI's DARTS cells) is searched one-shot only; use "
                              "strategy.name = 'e2rnas', or space 'capsule-cell' for multi-trial strategies")
        return
    if config.space.name not in ONE_SHOT_SPACES:
        raise ConfigError(f"space.name: strategy {config.strategy.name!r} searches one-shot and needs a "
                          f"weight-sharing space ({', '.join(ONE_SHOT_SPACES)}), got {_show(config.space.name)}")
    for metric in config.strategy.constraints:
        if metric not in ESTIMATOR_METRICS:
            raise ConfigError(f"strategy.constraints.{_name(metric)}: E2RNAS constrains one of "
                              f"{', '.join(ESTIMATOR_METRICS)}")
        if config.space.name == "darts-cell" and metric != "params":
            raise ConfigError(f"strategy.constraints.{_name(metric)}: NNI's DARTS cells have per-edge "
                              "architecture parameters, so only 'params' can be expected; drop this constraint "
                              "or use space 'capsule-cell'")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_host(key: str, host: str) -> None:
    if not HOST_NAME.fullmatch(host):
        raise ConfigError(f"{key}: expected a host name or IPv4 address, got {_show(host)}")


def _check_training_service(section: TrainingServiceSection) -> None:
    """Platform, machine list and manager address of ``[training_service]``."""
    name = "training_service"
    if section.platform not in PLATFORMS:
        raise ConfigError(f"{name}.platform: unknown platform {_show(section.platform)}; expected one of "
                          f"{', '.join(PLATFORMS)}")
    if section.reuse_mode:
        raise ConfigError(f"{name}.reuse_mode: must be false; NNI 3.0's reuse mode hangs without pkg_resources "
                          "(setuptools >= 81) and is slower")
    _check_host(f"{name}.nni_manager_ip", section.nni_manager_ip)
    if section.platform == "local":
        if section.machines:
            raise ConfigError(f"{name}.machines: only used with platform = 'remote', got platform = 'local'")
        return
    if not section.machines:
        raise ConfigError(f"{name}.machines: platform 'remote' needs at least one machine")
    for index, machine in enumerate(section.machines):
        key = f"{name}.machines[{index}]"
        _check_host(f"{key}.host", machine.host)
        if not machine.user or not machine.user.isprintable() or any(c.isspace() or c in "@:" for c in machine.user):
            raise ConfigError(f"{key}.user: expected a user name, got {_show(machine.user)}")
        if not 1 <= machine.port <= 65535:
            raise ConfigError(f"{key}.port: must be in 1..65535, got {machine.port}")
        try:
            key_file = Path(machine.ssh_key_file).expanduser()
            exists = key_file.is_file()
        except (OSError, ValueError, RuntimeError):  # NUL bytes, names too long, no home directory
            exists = False
        if not exists:
            raise ConfigError(f"{key}.ssh_key_file: {_show(machine.ssh_key_file)} is not a file (the private key "
                              "NNI logs in with)")
        python_path = machine.python_path
        if (not python_path.startswith("/") or not python_path.isprintable() or '"' in python_path
                or len(python_path) > 4096):
            raise ConfigError(f"{key}.python_path: expected the absolute path of the directory holding the "
                              f"worker's python (e.g. /opt/venv/bin), got {_show(python_path)}")
        if INTERPRETER_NAME.fullmatch(python_path.rstrip("/").rsplit("/", 1)[-1]):
            raise ConfigError(f"{key}.python_path: {_show(python_path)} looks like the interpreter itself; give its "
                              f"directory ({_show(python_path.rstrip('/').rsplit('/', 1)[0] or '/')})")
        if is_loopback_host(section.nni_manager_ip) and not is_loopback_host(machine.host):
            raise ConfigError(f"{name}.nni_manager_ip: {_show(section.nni_manager_ip)} is reachable from this "
                              f"machine only, but {key}.host is {_show(machine.host)}; set it to this machine's "
                              "address as the workers reach it")


def load_config(path: str | Path) -> SearchConfig:
    """Read and validate a TOML (``.toml``) or YAML (``.yaml``/``.yml``) search configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"configuration file {path} cannot be read as UTF-8 text: "
                          f"{' '.join(str(error).split())}") from error
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: expected a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as error:  # the parsers' own error types differ
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {' '.join(str(error).split())}") \
            from error
    return parse_config(raw)


def read_saved_config(folder: Path) -> Optional[SearchConfig]:
    """The configuration saved in an experiment folder by ``nni-capsnas search``; ``None`` if there is none.

    Raises
    ------
    ConfigError
        If the file exists but is not a valid configuration (naming the file).
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path} is corrupt ({' '.join(str(error).split())})") from error
    try:
        return parse_config(raw)
    except ConfigError as error:
        raise ConfigError(f"{path} is not a valid search configuration: {error}") from error


def search_objectives(config: Optional[SearchConfig]) -> Objectives:
    """The objectives and constraints a configured search optimises (the defaults without a configuration)."""
    if config is None:
        return Objectives(DEFAULT_OBJECTIVES)
    return Objectives(config.strategy.objectives or DEFAULT_OBJECTIVES, config.strategy.constraints)

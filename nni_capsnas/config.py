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

Every unknown key, wrong type or unknown name raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

SPACES = ("nascaps", "cnn", "capsnet")
STRATEGIES = ("nsga2", "random", "regularized-evolution", "tpe")


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
class SearchConfig:
    """A whole search: what to search, on what data, how, and on which hardware."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    space: SpaceSection = field(default_factory=SpaceSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    strategy: StrategySection = field(default_factory=StrategySection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` if it fits ``annotation`` (ints accepted for floats), else raise."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _check_type(key, value, options[0])
    expected = {int: int, float: (int, float), str: str, bool: bool, dict: dict}[annotation]
    if isinstance(value, bool) and annotation is not bool:
        raise ConfigError(f"{key}: expected {annotation.__name__}, got bool {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if annotation is float else value


def _build_section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a table of settings, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key; expected one of {', '.join(sorted(known))}")
        values[key] = _check_type(f"{name}.{key}", value, hints[key])
    return cls(**values)


def parse_config(raw: Mapping[str, Any]) -> SearchConfig:
    """Validate a configuration mapping (as read from TOML or YAML)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"configuration must be a table of sections, got {type(raw).__name__}")
    hints = typing.get_type_hints(SearchConfig)
    sections = {}
    for name, value in raw.items():
        if name not in hints:
            raise ConfigError(f"{name}: unknown section; expected one of {', '.join(hints)}")
        sections[name] = _build_section(hints[name], name, value)
    config = SearchConfig(**sections)
    _check_values(config)
    return config


def _check_values(config: SearchConfig) -> None:
    from hw_estimators.accelerator import builtin_accelerators
    from trials.datasets import DATASETS

    positive = [("experiment.max_trials", config.experiment.max_trials),
                ("experiment.trial_concurrency", config.experiment.trial_concurrency),
                ("experiment.trial_threads", config.experiment.trial_threads),
                ("training.epochs", config.training.epochs), ("training.batch_size", config.training.batch_size),
                ("strategy.population_size", config.strategy.population_size)]
    for key, value in positive:
        if value < 1:
            raise ConfigError(f"{key}: must be >= 1, got {value}")
    if not 1 <= config.experiment.port <= 65535:
        raise ConfigError(f"experiment.port: must be in 1..65535, got {config.experiment.port}")
    if config.dataset.name not in DATASETS:
        raise ConfigError(f"dataset.name: unknown dataset {config.dataset.name!r}; expected one of "
                          f"{', '.join(sorted(DATASETS))}")
    if config.space.name not in SPACES:
        raise ConfigError(f"space.name: unknown space {config.space.name!r}; expected one of {', '.join(SPACES)}")
    if config.strategy.name not in STRATEGIES:
        raise ConfigError(f"strategy.name: unknown strategy {config.strategy.name!r}; expected one of "
                          f"{', '.join(STRATEGIES)}")
    accelerator = config.hardware.accelerator
    if accelerator not in builtin_accelerators() and not Path(accelerator).is_file():
        raise ConfigError(f"hardware.accelerator: {accelerator!r} is neither a built-in accelerator "
                          f"({', '.join(builtin_accelerators())}) nor an existing file")
    for key, bound in config.strategy.constraints.items():
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound <= 0:
            raise ConfigError(f"strategy.constraints.{key}: must be a positive number, got {bound!r}")
    for key, direction in (config.strategy.objectives or {}).items():
        if direction not in ("max", "min"):
            raise ConfigError(f"strategy.objectives.{key}: must be 'max' or 'min', got {direction!r}")


def load_config(path: str | Path) -> SearchConfig:
    """Read and validate a TOML (``.toml``) or YAML (``.yaml``/``.yml``) search configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:
                import tomli as tomllib
            raw = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: expected a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as error:  # the parsers' own error types differ
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from error
    return parse_config(raw)

"""Accelerator descriptions: TOML data files naming a cost model and its parameters.

A file looks like::

    name = "my-chip"                 # optional, defaults to the file name
    model = "systolic"               # "capsacc" or "systolic"
    description = "what it is"       # optional

    [parameters]                     # fields of CapsAccConfig / SystolicConfig
    rows = 32
    cols = 32

    [[parameters.precisions]]        # systolic: another operand width and its energies
    bits = 32
    mult_pj = 3.7
    add_pj = 0.9
    elementwise_pj = 0.9

Missing parameters take the model's defaults. Built-in accelerators live in
``hw_estimators/accelerators/*.toml``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

from .cost import CostModel
from .cost_capsacc import CapsAccConfig, CapsAccModel
from .cost_systolic import SystolicConfig, SystolicModel

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

AcceleratorConfig = Union[CapsAccConfig, SystolicConfig]

#: Cost model name -> (parameter class, model class).
MODELS: dict[str, tuple[type, type]] = {
    "capsacc": (CapsAccConfig, CapsAccModel),
    "systolic": (SystolicConfig, SystolicModel),
}

_TOP_LEVEL_KEYS = frozenset({"name", "model", "description", "parameters"})


@dataclass(frozen=True, kw_only=True)
class Accelerator:
    """A named accelerator: a cost model and its parameters (hashable, so usable as a cache key).

    Parameters
    ----------
    name
        Display name.
    model
        Cost model, a key of :data:`MODELS`.
    config
        The model's parameters.
    description
        Free text.
    """

    name: str
    model: str
    config: AcceleratorConfig
    description: str = ""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"Accelerator.model must be one of {sorted(MODELS)}, got {self.model!r}")
        expected = MODELS[self.model][0]
        if not isinstance(self.config, expected):
            raise ValueError(f"Accelerator.config for model {self.model!r} must be a {expected.__name__}, "
                             f"got {type(self.config).__name__}")

    def cost_model(self) -> CostModel:
        """A fresh cost model for this accelerator."""
        return MODELS[self.model][1](config=self.config)

    def to_dict(self) -> dict[str, Any]:
        """Name, model, description and parameters as plain data."""
        return {"name": self.name, "model": self.model, "description": self.description,
                "parameters": dataclasses.asdict(self.config)}


@functools.lru_cache(maxsize=1)
def builtin_accelerators() -> tuple[str, ...]:
    """Names of the accelerators shipped with the package."""
    folder = resources.files("hw_estimators").joinpath("accelerators")
    return tuple(sorted(entry.name[:-len(".toml")] for entry in folder.iterdir() if entry.name.endswith(".toml")))


def load_accelerator(spec: Union[str, os.PathLike, Accelerator]) -> Accelerator:
    """An accelerator from a built-in name, a TOML file path, or an :class:`Accelerator`.

    Parameters
    ----------
    spec
        ``"capsacc"``, ``"systolic"``, a path to a TOML file, or an accelerator.

    Raises
    ------
    FileNotFoundError
        If ``spec`` is neither a built-in name nor an existing file.
    ValueError
        If the file is not valid TOML or does not describe an accelerator.
    """
    if isinstance(spec, Accelerator):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(f"accelerator must be a built-in name {builtin_accelerators()}, a path to a TOML file "
                         f"or an Accelerator, got {type(spec).__name__}")
    text_spec = os.fspath(spec)
    builtins = builtin_accelerators()
    if isinstance(spec, str) and text_spec in builtins:
        return _builtin(text_spec)
    path = Path(text_spec)
    if not path.is_file():
        raise FileNotFoundError(f"accelerator {text_spec!r} is neither a built-in accelerator {builtins} "
                                "nor an existing TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"accelerator file {path}: cannot read it as UTF-8 text ({error})") from error
    return _parse(text, source=str(path), default_name=path.stem)


@functools.lru_cache(maxsize=None)
def _builtin(name: str) -> Accelerator:
    """A built-in accelerator (cached: package data does not change)."""
    resource = resources.files("hw_estimators").joinpath("accelerators", f"{name}.toml")
    return _parse(resource.read_text(encoding="utf-8"), source=f"built-in {name}", default_name=name)


def _parse(text: str, *, source: str, default_name: str) -> Accelerator:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"accelerator file {source}: invalid TOML ({error})") from error
    unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
    if unknown:
        raise ValueError(f"accelerator file {source}: unknown top-level keys {unknown}; "
                         f"expected {sorted(_TOP_LEVEL_KEYS)}")
    model = document.get("model")
    if model not in MODELS:
        raise ValueError(f"accelerator file {source}: 'model' must be one of {sorted(MODELS)}, got {model!r}")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ValueError(f"accelerator file {source}: [parameters] must be a table, got {type(parameters).__name__}")
    config_class = MODELS[model][0]
    allowed = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(parameters) - allowed)
    if unknown:
        raise ValueError(f"accelerator file {source}: unknown {model} parameters {unknown}; "
                         f"allowed: {sorted(allowed)}")
    float_fields = {f.name for f in dataclasses.fields(config_class) if "float" in str(f.type)}
    values = {key: (float(value) if key in float_fields and isinstance(value, int) and not isinstance(value, bool)
                    else value) for key, value in parameters.items()}
    try:
        config = config_class(**values)
    except ValueError as error:
        raise ValueError(f"accelerator file {source}: {error}") from error
    name = document.get("name", default_name)
    description = document.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise ValueError(f"accelerator file {source}: 'name' and 'description' must be strings")
    accelerator = Accelerator(name=name, model=model, config=config, description=description)
    accelerator.cost_model()  # fail now (e.g. no synthesis-table entry), not in the middle of an estimate
    return accelerator

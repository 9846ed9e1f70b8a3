"""Property-based tests: the search configuration loader on random keys, types and values.

Whatever it is fed, ``parse_config`` / ``load_config`` return a :class:`SearchConfig` whose
every value is usable, or raise :class:`ConfigError`; ``nni-capsnas search --config`` on a
rejected file exits 2 with one line on stderr and writes nothing. No test starts a search:
``run_search`` is replaced by a function that fails the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import tempfile
import typing
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hw_estimators.accelerator  # noqa: F401  (imported by the validation: loaded before any deadline)
import trials.datasets  # noqa: F401
from nni_capsnas.app.cli import main
from nni_capsnas.app.config import SPACES, STRATEGIES, ConfigError, SearchConfig, load_config, parse_config

SECTIONS = {field.name: field.type for field in dataclasses.fields(SearchConfig)}
HINTS = {name: typing.get_type_hints(cls) for name, cls in typing.get_type_hints(SearchConfig).items()}
KEYS = sorted({key for hints in HINTS.values() for key in hints})
INT32 = 2 ** 31 - 1

VALID = {
    "experiment": {"max_trials": 4, "trial_concurrency": 2, "port": 8080, "host": "127.0.0.1"},
    "dataset": {"name": "digits", "seed": 1},
    "space": {"name": "capsnet", "options": {"stem_channels": [8, 16]}},
    "training": {"epochs": 1, "learning_rate": 0.01, "time_budget_s": 30},
    "hardware": {"accelerator": "systolic"},
    "strategy": {"name": "nsga2", "population_size": 4, "constraints": {"energy_mj": 5.0},
                 "objectives": {"accuracy": "max", "energy_mj": "min"}},
}

SETTINGS = settings(max_examples=150, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- strategies -----------------------------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["", "ünïcødé", "名前", "🚀", "\x00", "a" * 300, "digits",
                                                 "nsga2", "capsacc", "cnn", "max", "min", "1h", "-1", "nan"])
numbers = (st.integers() | st.integers(min_value=-10, max_value=10) | st.sampled_from([2 ** 31, 2 ** 63, 10 ** 100])
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e308, -1e-308, 0.5]))
scalars = st.none() | st.booleans() | numbers | texts
values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(texts | st.sampled_from(KEYS), children, max_size=4), max_leaves=12)
section_tables = st.dictionaries(st.sampled_from(KEYS) | texts, values, max_size=6)
raw_configs = st.dictionaries(st.sampled_from(sorted(SECTIONS)) | texts, section_tables | values, max_size=7)


@st.composite
def mutated_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid configuration with one to three values replaced, added or removed."""
    raw = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        table = raw[section]
        key = draw(st.sampled_from(sorted(HINTS[section])) | texts)
        action = draw(st.sampled_from(["replace", "replace", "delete", "whole-section"]))
        if action == "delete":
            table.pop(key, None)
        elif action == "whole-section":
            raw[section] = draw(values)
        else:
            table[key] = draw(values)
    return raw


any_config = raw_configs | mutated_valid() | st.just(VALID)


# --- what a valid configuration is -----------------------------------------------------------------


def assert_usable(config: SearchConfig) -> None:
    """Every value has its declared type and a usable value."""
    assert isinstance(config, SearchConfig)
    for section, hints in HINTS.items():
        table = getattr(config, section)
        for key, annotation in hints.items():
            value = getattr(table, key)
            name = f"{section}.{key}"
            if typing.get_origin(annotation) is typing.Union:
                if value is None:
                    continue
                annotation = [a for a in typing.get_args(annotation) if a is not type(None)][0]
            if annotation is bool:
                assert isinstance(value, bool), name
            elif annotation is int:
                assert isinstance(value, int) and not isinstance(value, bool), name
                assert -INT32 - 1 <= value <= INT32, name
            elif annotation is float:
                assert isinstance(value, float) and math.isfinite(value), name
            elif annotation is str:
                assert isinstance(value, str), name
            elif annotation is dict:
                assert isinstance(value, dict) and all(isinstance(k, str) for k in value), name
    experiment, training, strategy = config.experiment, config.training, config.strategy
    assert experiment.max_trials >= 1 and experiment.trial_concurrency >= 1 and experiment.trial_threads >= 1
    assert 1 <= experiment.port <= 65535
    assert training.epochs >= 1 and training.batch_size >= 1 and training.learning_rate > 0
    assert training.shift_pixels >= 0 and (training.time_budget_s is None or training.time_budget_s > 0)
    assert config.dataset.seed >= 0 and training.seed >= 0 and strategy.seed >= 0
    assert config.space.name in SPACES and strategy.name in STRATEGIES
    assert strategy.population_size >= (2 if strategy.name == "nsga2" else 1)
    assert strategy.offspring_size is None or strategy.offspring_size >= 1
    assert strategy.max_stalled_generations >= 1
    for bound in strategy.constraints.values():
        assert isinstance(bound, (int, float)) and not isinstance(bound, bool) and 0 < bound < math.inf
    assert all(direction in ("max", "min") for direction in (strategy.objectives or {}).values())


def parse_or_error(raw: Any) -> SearchConfig | ConfigError:
    try:
        config = parse_config(raw)
    except ConfigError as error:
        assert str(error) and "\n" not in str(error)
        return error
    assert_usable(config)
    return config


# --- renderers -----------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(raw: dict[str, Any]) -> str:
    lines = []
    for section, table in raw.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(str(section))}]")
            lines += [f"{json.dumps(str(key))} = {toml_value(value)}" for key, value in table.items()]
        else:
            lines.insert(0, f"{json.dumps(str(section))} = {toml_value(table)}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def no_search_started() -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a fuzz test must never start a search")

    with mock.patch("nni_capsnas.app.search_runner.run_search", refuse), \
            mock.patch("nni_capsnas.app.search_runner.resume_search", refuse):
        yield


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), no_search_started():
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# --- properties ----------------------------------------------------------------------------------------


def test_the_valid_example_is_valid() -> None:
    assert isinstance(parse_or_error(VALID), SearchConfig)


@pytest.mark.timeout(300)
@SETTINGS
@given(any_config)
def test_parse_config_returns_a_usable_config_or_raises_config_error(raw: dict[str, Any]) -> None:
    parse_or_error(raw)


@SETTINGS
@given(values)
def test_parse_config_on_anything_that_is_not_a_table(raw: Any) -> None:
    parse_or_error(raw)


@SETTINGS
@given(any_config, st.sampled_from([".yaml", ".toml"]))
def test_load_config_agrees_on_yaml_and_toml_files(raw: dict[str, Any], suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"search{suffix}"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True) if suffix == ".yaml" else to_toml(raw),
                        encoding="utf-8")
        try:
            config = load_config(path)
        except ConfigError as error:
            assert str(error) and "\n" not in str(error).strip()
            return
        assert_usable(config)


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
       st.sampled_from([".yaml", ".yml", ".toml", ".json", ""]))
def test_load_config_on_random_file_contents(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"search{suffix}"
        path.write_bytes(data)
        try:
            config = load_config(path)
        except ConfigError as error:
            assert str(error)
            return
        assert_usable(config)


@settings(max_examples=60, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(any_config, st.sampled_from([".yaml", ".toml"]))
def test_cli_search_rejects_a_bad_config_with_one_line_and_writes_nothing(raw: dict[str, Any], suffix: str) -> None:
    if not isinstance(parse_or_error(raw), ConfigError):
        return  # a valid configuration would start a search: never here
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        config = root / f"search{suffix}"
        config.write_text(yaml.safe_dump(raw, allow_unicode=True) if suffix == ".yaml" else to_toml(raw),
                          encoding="utf-8")
        before = files_under(root)
        with mock.patch.dict("os.environ", {"HOME": str(root / "home")}):
            status, out, err = run_cli(["search", "--config", str(config), "--workdir", str(root / "work"),
                                        "--report-dir", str(root / "report")])
        assert status == 2, (out, err)
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nni-capsnas search: error: "), err
        assert files_under(root) == before


def test_cli_search_on_a_missing_file_exits_2(tmp_path: Path) -> None:
    status, out, err = run_cli(["search", "--config", str(tmp_path / "absent.toml"), "--workdir", str(tmp_path / "w")])
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "absent.toml" in err
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("raw, key", [
    ({"experiment": {"max_trials": 10 ** 100}}, "experiment.max_trials"),
    ({"training": {"learning_rate": float("nan")}}, "training.learning_rate"),
    ({"training": {"learning_rate": -1.0}}, "training.learning_rate"),
    ({"training": {"time_budget_s": 0}}, "training.time_budget_s"),
    ({"training": {"shift_pixels": -2}}, "training.shift_pixels"),
    ({"dataset": {"seed": -1}}, "dataset.seed"),
    ({"strategy": {"population_size": 1}}, "strategy.population_size"),
    ({"strategy": {"offspring_size": 0}}, "strategy.offspring_size"),
    ({"strategy": {"constraints": {"energy_mj": float("inf")}}}, "strategy.constraints.energy_mj"),
    ({"space": {"options": {1: [8]}}}, "space.options"),
    ({"experiment": {"max_duration": "soon"}}, "experiment.max_duration"),
])
def test_out_of_range_values_name_their_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(raw)


@pytest.mark.parametrize("raw, key", [
    ({"space": {"name": "capsnet", "options": {"bogus": 1}}}, "space.options"),
    ({"space": {"name": "capsnet", "options": {"stem_channels": "wide"}}}, "space.options"),
    ({"space": {"name": "cnn", "options": {"stem_channels": []}}}, "space.options"),
    ({"strategy": {"name": "nsga2", "options": {"bogus": 1}}}, "strategy.options"),
])
def test_cli_search_rejects_options_the_space_or_strategy_refuses(tmp_path: Path, free_port: int,
                                                                  raw: dict[str, Any], key: str) -> None:
    """Options are checked by the space and strategy themselves, before anything is written."""
    raw = {**raw, "dataset": {"name": "digits"}, "experiment": {"port": free_port}}
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the experiment must not start")

    with mock.patch("nni_capsnas.experiment.CapsNasExperiment.run", refuse), \
            mock.patch("nni_capsnas.experiment.CapsNasExperiment.resume", refuse), \
            mock.patch.dict("os.environ", {"HOME": str(tmp_path / "home")}):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["search", "--config", str(config), "--workdir", str(tmp_path / "work")])
    lines = err.getvalue().strip().splitlines()
    assert status == 2 and out.getvalue() == "", err.getvalue()
    assert len(lines) == 1 and lines[0].startswith(f"nni-capsnas search: error: {key}: "), lines
    assert files_under(tmp_path) == ["search.yaml"]

"""Search configuration files: valid ones load, bad ones fail naming the key, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nni_capsnas.app.cli import main
from nni_capsnas.app.config import ConfigError, SearchConfig, load_config, parse_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("name", ["tiny_search.toml", "nascaps_digits.toml", "mnist_random.yaml"])
def test_shipped_examples_load(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert isinstance(config, SearchConfig)


def test_toml_and_yaml_give_the_same_config(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[strategy]\nname = "nsga2"\npopulation_size = 6\n'
                                     '[strategy.constraints]\nenergy_mj = 2.5\n[training]\nlearning_rate = 1\n')
    (tmp_path / "a.yaml").write_text("strategy:\n  name: nsga2\n  population_size: 6\n  constraints:\n"
                                     "    energy_mj: 2.5\ntraining:\n  learning_rate: 1\n")
    toml, yaml = load_config(tmp_path / "a.toml"), load_config(tmp_path / "a.yaml")
    assert toml == yaml
    assert toml.strategy.constraints == {"energy_mj": 2.5}
    assert toml.training.learning_rate == 1.0 and isinstance(toml.training.learning_rate, float)
    assert toml.experiment.host == "127.0.0.1"


@pytest.mark.parametrize("raw, message", [
    ({"strategy": {"popsize": 4}}, r"strategy\.popsize: unknown key; expected one of"),
    ({"trainer": {}}, r"trainer: unknown section"),
    ({"training": {"epochs": "3"}}, r"training\.epochs: expected int, got str '3'"),
    ({"training": {"epochs": True}}, r"training\.epochs: expected int, got bool"),
    ({"experiment": {"max_trials": 0}}, r"experiment\.max_trials: must be >= 1, got 0"),
    ({"experiment": {"port": 70000}}, r"experiment\.port: must be in 1\.\.65535"),
    ({"dataset": {"name": "imagenet"}}, r"dataset\.name: unknown dataset 'imagenet'"),
    ({"space": {"name": "resnet"}}, r"space\.name: unknown space 'resnet'"),
    ({"strategy": {"name": "nsga3"}}, r"strategy\.name: unknown strategy 'nsga3'"),
    ({"hardware": {"accelerator": "tpu"}}, r"hardware\.accelerator: 'tpu' is neither a built-in accelerator"),
    ({"strategy": {"constraints": {"energy_mj": -1}}}, r"strategy\.constraints\.energy_mj: must be a positive"),
    ({"strategy": {"objectives": {"accuracy": "up"}}}, r"strategy\.objectives\.accuracy: must be 'max' or 'min'"),
    ({"space": []}, r"space: expected a table of settings, got list"),
])
def test_bad_configs_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_unreadable_files_are_clean_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[strategy\nname = ")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(tmp_path / "broken.toml")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="expected a .toml, .yaml or .yml file"):
        load_config(tmp_path / "config.json")


def test_search_with_a_bad_config_exits_2_before_starting_anything(tmp_path: Path, capsys) -> None:
    workdir = tmp_path / "experiments"
    config = tmp_path / "bad.toml"
    config.write_text(f'[experiment]\nworkdir = "{workdir}"\n[strategy]\npopulation = 3\n')
    assert main(["search", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nni-capsnas search: error: strategy.population: unknown key; expected one of constraints, "
                   "max_stalled_generations, "
                   "name, objectives, offspring_size, options, population_size, seed"]
    assert not workdir.exists()

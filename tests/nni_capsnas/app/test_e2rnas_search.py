"""``nni-capsnas search`` with ``strategy = "e2rnas"``: one-shot phase, then an NNI trial.

A real run on digits: E2RNAS trains the capsule cell supernet in the driver, derives an
architecture, and NNI's local training service trains that architecture as a trial with the
hardware-aware evaluator (adversarially trained) and a PGD robustness check; report and retrain read it
like NSGA2's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nni_capsnas.app.config import ConfigError, parse_config
from nni_capsnas.nni_compat.experiment_db import load_trial_model, locate_experiment, read_trials
from nni_capsnas.app.oneshot_search import build_e2rnas
from nni_capsnas.app.search_runner import run_search

SMALL_CELL_SPACE = {"stem_channels": 8, "feature_ops": ["conv3x3", "dil_conv3x3", "skip"],
                    "capsule_ops": ["conv_caps", "skip"], "primary_caps": [4, 8], "primary_dim": [4],
                    "routing_iterations": [1, 2]}


ADVERSARIAL_TRAINING = {"attack": "fgsm", "epsilon": 0.1, "random_start": True}


def _config(workdir: Path, port: int, **strategy: object) -> dict:
    return {
        "experiment": {"port": port, "workdir": str(workdir)},
        "dataset": {"name": "digits"},
        "space": {"name": "capsule-cell", "options": SMALL_CELL_SPACE},
        "training": {"epochs": 1, "learning_rate": 3e-3,
                     "robustness": {"attack": "pgd", "epsilon": 0.1, "steps": 3, "samples": 64},
                     "adversarial": ADVERSARIAL_TRAINING, "adversarial_weight": 0.3},
        "strategy": {"name": "e2rnas", "constraints": {"energy_mj": 0.004},
                     "objectives": {"accuracy": "max", "robust_accuracy": "max", "energy_mj": "min"},
                     "options": {"arc_learning_rate": 3e-2, "upper_loss": "cross_entropy",
                                 "log_prob_every_n_step": 5}, **strategy},
    }


@pytest.mark.timeout(900)
def test_e2rnas_search_trains_its_derived_architecture_as_an_nni_trial(tmp_path: Path, free_port: int,
                                                                        isolated_nni: Path) -> None:
    outcome = run_search(parse_config(_config(tmp_path, free_port)))

    assert outcome.statuses == {"SUCCEEDED": 1} and not outcome.interrupted
    one_shot = outcome.one_shot_dir
    assert one_shot == outcome.folder / "e2rnas"
    derived = json.loads((one_shot / "architecture.json").read_text())
    assert set(derived) == {"feature_op", "primary_caps", "primary_dim", "capsule_op", "routing_iterations"}
    probabilities = json.loads((one_shot / "probabilities.json").read_text())
    for label, distribution in probabilities.items():
        assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-5), label
    assert derived["feature_op"] == max(probabilities["feature_op"], key=probabilities["feature_op"].get)

    steps = pd.read_csv(one_shot / "architecture_steps.csv")
    weights = steps[["weight/clean", "weight/adversarial", "weight/energy_mj"]]
    assert len(steps) > 0 and ((weights >= 0).all().all())
    assert weights.sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-6)
    accuracies = steps[["accuracy/clean", "accuracy/adversarial", "epoch_accuracy/clean",
                        "epoch_accuracy/adversarial"]]
    assert ((accuracies >= 0) & (accuracies <= 1)).all().all()
    for _, epoch in steps.groupby("epoch"):  # the running accuracy starts at the first batch's, ends within the batches'
        assert epoch["epoch_accuracy/clean"].iloc[0] == pytest.approx(epoch["accuracy/clean"].iloc[0])
        assert epoch["accuracy/clean"].min() - 1e-9 <= epoch["epoch_accuracy/clean"].iloc[-1] <= epoch["accuracy/clean"].max() + 1e-9
    cosines = steps[[f"cosine/{label}" for label in derived] + ["cosine/all"]].stack().dropna()  # NaN: zero gradient
    assert steps["cosine/feature_op"].notna().any() and (cosines.abs() <= 1 + 1e-9).all()
    margins = pd.read_csv(one_shot / "choice_margins.csv").set_index("label")
    assert set(margins.index) == set(derived)
    for label, row in margins.iterrows():
        ranked = sorted(probabilities[label].values(), reverse=True) + [0.0]  # primary_dim has one value
        assert str(row["chosen"]) == str(derived[label])
        assert row["margin"] == pytest.approx(ranked[0] - ranked[1], abs=1e-6)
        assert row["near_tie"] == (len(ranked) > 2 and row["margin"] < 0.05)
    assert (one_shot / "mgda_weights.png").stat().st_size > 0

    trials = read_trials(locate_experiment(outcome.experiment_id, tmp_path))
    (trial,) = trials.to_dict("records")
    assert {f"arch/{label}": value for label, value in derived.items()} == \
        {key: value for key, value in trial.items() if key.startswith("arch/")}
    assert 0 <= trial["robust_accuracy"] <= trial["accuracy"] <= 1
    assert trial["energy_mj"] > 0 and trial["params"] > 0
    assert (outcome.report_dir / "pareto_front.csv").is_file()
    _, options = load_trial_model(locate_experiment(outcome.experiment_id, tmp_path), trial["trial_id"])
    assert (options["adversarial"], options["adversarial_weight"]) == (ADVERSARIAL_TRAINING, 0.3)

    retrain = subprocess.run([sys.executable, "-m", "nni_capsnas", "retrain", outcome.experiment_id, "--workdir",
                              str(tmp_path), "--top-k", "1", "--epochs", "1", "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert retrain.returncode == 0, retrain.stderr[-2000:]
    retrained = pd.read_csv(outcome.folder / "retrain.csv")
    assert list(retrained["trial_id"]) == [trial["trial_id"]]
    assert 0 < retrained["retrained_accuracy"].iloc[0] <= 1


@pytest.mark.parametrize(("change", "message"), [
    ({"space": {"name": "nascaps"}}, "space.name: strategy 'e2rnas' searches one-shot"),
    ({"strategy": {"name": "e2rnas", "constraints": {"accuracy": 0.5}}}, "strategy.constraints.accuracy"),
    ({"space": {"name": "darts-cell"}, "strategy": {"name": "e2rnas", "constraints": {"energy_mj": 1.0}}},
     "only 'params' can be expected"),
    ({"space": {"name": "darts-cell"}, "strategy": {"name": "nsga2"}}, "searched one-shot only"),
    ({"training": {"robustness": {"attack": "pgd", "epsilon": 2.0}}}, "training.robustness"),
    ({"training": {"robustness": {"atack": "pgd"}}}, "training.robustness: unknown robustness option"),
    ({"training": {"adversarial": {"attack": "fgsm", "eps": 0.1}}},
     "training.adversarial: unknown adversarial option\\(s\\) \\['eps'\\]"),
    ({"training": {"adversarial": {"attack": "fgsm", "epsilon": 1.5}}}, "training.adversarial: epsilon"),
    ({"training": {"adversarial_weight": 0.0}}, "training.adversarial_weight: must be in \\(0, 1\\], got 0.0"),
])
def test_configuration_errors_name_the_key(change: dict, message: str) -> None:
    raw = {"dataset": {"name": "digits"}, "space": {"name": "capsule-cell"}, "strategy": {"name": "e2rnas"}}
    raw.update(change)
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


@pytest.mark.parametrize(("options", "message"), [
    ({"adversary": {"attack": "cw"}}, "strategy.options.adversary: attack must be one of"),
    ({"adversary": "fgsm"}, "strategy.options.adversary: expected a table"),
    ({"gradient_normalization": "l3"}, "strategy.options: rejected by E2RNAS: gradient_normalization"),
    ({"resources": [{"metric": "params", "target": 1000.0, "mode": "within"}]}, "mode must be one of"),
    ({"arc_lr": 0.1}, "strategy.options: rejected by E2RNAS: .*arc_lr"),
])
def test_e2rnas_options_are_checked_before_anything_runs(options: dict, message: str) -> None:
    config = parse_config({"space": {"name": "capsule-cell"}, "strategy": {"name": "e2rnas", "options": options}})
    with pytest.raises(ConfigError, match=message):
        build_e2rnas(config)


def test_e2rnas_defaults_adversary_and_resources_from_constraints() -> None:
    config = parse_config({"space": {"name": "capsule-cell"},
                           "strategy": {"name": "e2rnas", "constraints": {"params": 5000.0}}})
    strategy = build_e2rnas(config)
    assert strategy.adversary is not None
    assert [(r.metric, r.target, r.mode) for r in strategy.resources] == [("params", 5000.0, "max")]
    assert build_e2rnas(parse_config({"space": {"name": "capsule-cell"},
                                      "strategy": {"name": "e2rnas", "options": {"adversary": False}}})
                        ).adversary is None
    assert strategy.capsule_logits == strategy.adversary.keywords["capsule_logits"] == "log_odds"


def test_the_adversary_reads_the_class_logits_of_the_upper_level_loss() -> None:
    def build(options: dict) -> object:
        return build_e2rnas(parse_config({"space": {"name": "capsule-cell"},
                                          "strategy": {"name": "e2rnas", "options": options}}))

    strategy = build({"capsule_logits": "length"})
    assert strategy.capsule_logits == strategy.adversary.keywords["capsule_logits"] == "length"
    explicit = build({"capsule_logits": "length", "adversary": {"capsule_logits": "scaled_length"}})
    assert explicit.adversary.keywords["capsule_logits"] == "scaled_length"


def test_resume_needs_the_finished_one_shot_phase(tmp_path: Path) -> None:
    from nni_capsnas.app.resume_guard import ResumeError
    from nni_capsnas.app.search_runner import ONE_SHOT_FOLDER, _derived_architectures

    with pytest.raises(ResumeError, match="one-shot phase did not finish"):
        _derived_architectures(tmp_path)
    (tmp_path / ONE_SHOT_FOLDER).mkdir()
    (tmp_path / ONE_SHOT_FOLDER / "architecture.json").write_text("[1, 2]")
    with pytest.raises(ResumeError, match="expected an architecture table"):
        _derived_architectures(tmp_path)
    (tmp_path / ONE_SHOT_FOLDER / "architecture.json").write_text('{"feature_op": "skip"}')
    assert _derived_architectures(tmp_path) == [{"feature_op": "skip"}]

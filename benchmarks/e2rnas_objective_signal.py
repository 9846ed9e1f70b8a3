"""How much E2RNAS' upper-level objectives tell the search, per way of turning capsule lengths into logits.

Runs the one-shot phase of a configured E2RNAS search (by default ``examples/e2rnas_digits.toml``:
the supernet phase that ``nni-capsnas search`` runs before it trains the derived architecture)
once per ``--capsule-logits`` mapping (:data:`nni_capsnas.modules.CAPSULE_LOGITS`; the
adversary's cross-entropy follows the strategy's mapping) and search seed, and prints per run:

- the clean and adversarial upper-level loss, mean over the first and over the last epoch
  (ln 10 = 2.303 is a uniform prediction; ``floor`` is the loss of a perfect prediction by the
  margin loss' standard, true length 0.9 and the others 0.1, under that mapping);
- the supernet's accuracy on the architecture-step split in the last epoch (clean, adversarial);
- per architecture label, the cosine between the clean and the adversarial objective's
  architecture gradients, mean over the last epoch (1: the adversarial objective only repeats
  the clean one and cannot move the search elsewhere), and the mean MGDA weights;
- the exported feature operation, its probability and its lead over the runner-up.

Run: ``.venv/bin/python benchmarks/e2rnas_objective_signal.py [--config FILE]
[--capsule-logits length log_odds] [--seeds 0 1 2] [--epochs N] [--strategy-option KEY=VALUE]
[--output result.json]``
(about 30 s per run on two cores with the digits example).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch

from nni_capsnas.app.commands import print_now
from nni_capsnas.quiet import silence_known_warnings

silence_known_warnings()  # before NNI's modules are imported (they warn at import time)

from nni_capsnas.app.config import SearchConfig, load_config  # noqa: E402
from nni_capsnas.app.oneshot_search import MARGINS_FILE, STEPS_FILE, run_one_shot_phase  # noqa: E402
from nni_capsnas.modules import CAPSULE_LOGITS, class_logits  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
LABELS = ("feature_op", "primary_caps", "primary_dim", "capsule_op", "routing_iterations", "all")


def perfect_prediction_loss(capsule_logits: str, classes: int = 10) -> float:
    """Cross-entropy of lengths 0.9 (true class) and 0.1 (the others) under ``capsule_logits``."""
    lengths = torch.full((1, classes), 0.1)
    lengths[0, 0] = 0.9
    capsules = torch.zeros(1, classes, 2)
    capsules[..., 0] = lengths
    return float(torch.nn.functional.cross_entropy(class_logits(capsules, capsule_logits), torch.tensor([0])))


def configured(config: SearchConfig, capsule_logits: str, seed: int, args: argparse.Namespace) -> SearchConfig:
    """``config`` with the mapping, the seed of the search (weights, attack) and ``--epochs``."""
    options = {**config.strategy.options, **dict(args.strategy_option), "capsule_logits": capsule_logits}
    if args.search_attack == "none":
        options["adversary"] = False
    training = dataclasses.replace(config.training, seed=seed,
                                   epochs=args.epochs if args.epochs is not None else config.training.epochs)
    return dataclasses.replace(config, training=training,
                               strategy=dataclasses.replace(config.strategy, seed=seed, options=options))


def summarise(steps: pd.DataFrame, margins: pd.DataFrame) -> dict[str, Any]:
    """The figures of one run from its ``architecture_steps.csv`` and ``choice_margins.csv``."""
    first, last = steps[steps.epoch == steps.epoch.min()], steps[steps.epoch == steps.epoch.max()]
    feature = margins.set_index("label").loc["feature_op"]
    summary: dict[str, Any] = {
        "steps": len(steps),
        "clean_first": first["loss/clean"].mean(), "clean_last": last["loss/clean"].mean(),
        "accuracy_clean": last["epoch_accuracy/clean"].iloc[-1],
        "feature_op": feature["chosen"], "feature_probability": float(feature["probability"]),
        "feature_margin": float(feature["margin"]), "runner_up": feature["runner_up"],
        "weights": {column[len("weight/"):]: float(steps[column].mean())
                    for column in steps.columns if column.startswith("weight/")},
    }
    if "loss/adversarial" in steps:
        summary.update(adversarial_first=first["loss/adversarial"].mean(),
                       adversarial_last=last["loss/adversarial"].mean(),
                       accuracy_adversarial=last["epoch_accuracy/adversarial"].iloc[-1],
                       cosines={label: float(last[f"cosine/{label}"].mean()) for label in LABELS
                                if f"cosine/{label}" in last})
    return summary


def run_once(config: SearchConfig) -> dict[str, Any]:
    """One one-shot phase in a temporary folder; its summary."""
    with tempfile.TemporaryDirectory(prefix="e2rnas-signal-") as folder:
        run_one_shot_phase(config, Path(folder))
        return summarise(pd.read_csv(Path(folder) / STEPS_FILE), pd.read_csv(Path(folder) / MARGINS_FILE))


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """One line per run: losses, accuracies, per-label cosines, MGDA weights, exported feature operation."""
    short = {"feature_op": "feat", "primary_caps": "caps", "primary_dim": "dim", "capsule_op": "capop",
             "routing_iterations": "rout", "all": "all"}
    header = (f"{'logits':<14} {'seed':>4} {'floor':>6} {'clean 1st':>9} {'clean last':>10} {'adv last':>8} "
              f"{'acc':>6} {'adv acc':>7} " + " ".join(f"{'cos ' + short[label]:>9}" for label in LABELS)
              + f" {'w clean':>7} {'w adv':>6}  feature op (p, lead over runner-up)")
    lines = [header]
    for row in rows:
        cosines = row.get("cosines", {})
        lines.append(
            f"{row['capsule_logits']:<14} {row['seed']:>4} {_number(row['floor']):>6} {_number(row['clean_first']):>9} "
            f"{_number(row['clean_last']):>10} {_number(row.get('adversarial_last')):>8} "
            f"{_number(row['accuracy_clean']):>6} {_number(row.get('accuracy_adversarial')):>7} "
            + " ".join(f"{_number(cosines.get(label)):>9}" for label in LABELS)
            + f" {_number(row['weights'].get('clean')):>7} {_number(row['weights'].get('adversarial')):>6}  "
            f"{row['feature_op']} ({row['feature_probability']:.3f}, +{row['feature_margin']:.3f} over "
            f"{row['runner_up']})")
    return "\n".join(lines)


def _option(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    """The script's command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "examples" / "e2rnas_digits.toml"),
                        help="an E2RNAS search configuration (only its one-shot phase runs)")
    parser.add_argument("--capsule-logits", nargs="+", choices=tuple(CAPSULE_LOGITS), default=list(CAPSULE_LOGITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="search seeds (weights and attack)")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs (default: the configuration's)")
    parser.add_argument("--strategy-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="override strategy.options.KEY (VALUE read as JSON, e.g. arc_learning_rate=0.1)")
    parser.add_argument("--search-attack", choices=("config", "none"), default="config",
                        help="none: drop the adversarial objective (an ablation)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="write the rows as JSON here")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("nni_capsnas.strategy.choice_margin").setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    rows = []
    for capsule_logits in args.capsule_logits:
        for seed in args.seeds:
            row = {"capsule_logits": capsule_logits, "seed": seed, "floor": perfect_prediction_loss(capsule_logits),
                   **run_once(configured(config, capsule_logits, seed, args))}
            rows.append(row)
            print_now(table([row]).splitlines()[-1])  # progress: NNI's experiment log replaces the log handlers
    print_now(f"{args.config}: one-shot phase, {rows[0]['steps']} architecture steps per run; losses are means over "
              f"the first / last epoch, accuracies on the architecture-step split in the last epoch, cosines "
              f"between the clean and adversarial architecture gradients (mean over the last epoch), MGDA weights "
              f"(mean over the run)")
    print_now(table(rows))
    for capsule_logits in args.capsule_logits:
        mine = [row for row in rows if row["capsule_logits"] == capsule_logits]
        print_now(f"{capsule_logits}: mean clean loss last epoch {statistics.mean(r['clean_last'] for r in mine):.3f} "
                  f"(floor {mine[0]['floor']:.3f}, chance {math.log(10):.3f}), mean feature-op lead "
                  f"{statistics.mean(r['feature_margin'] for r in mine):.3f}")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

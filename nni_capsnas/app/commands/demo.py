"""``nni-capsnas demo``: the most complete flow the project offers, end to end on digits.

A hardware-aware NSGA-II search over NASCaps' space (capsule networks and CNN stems) in a
real NNI experiment (web UI on 127.0.0.1), a report with the Pareto front, and the best
front architectures retrained for longer, as NASCaps does.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nni_capsnas.app.commands import print_now

_logger = logging.getLogger(__name__)


def demo_config(workdir: Path, port: int, max_trials: int) -> dict:
    """The demo search: small, so it finishes within minutes on 2 CPU cores."""
    return {
        "experiment": {"name": "nni-capsnas-demo", "max_trials": max_trials, "trial_concurrency": 2,
                       "port": port, "workdir": str(workdir)},
        "dataset": {"name": "digits"},
        # CapsNet-style half of NASCaps' space: DeepCaps stacks of 4-8 cells mostly stay at
        # chance after a few epochs on 1,437 images, which makes a poor first demo.
        "space": {"name": "nascaps", "options": {"families": ["capsnet"], "conv_depths": [3, 4],
                                                 "caps_layers": [2, 3, 4]}},
        "training": {"epochs": 3, "batch_size": 32, "learning_rate": 3e-3, "time_budget_s": 240},
        "hardware": {"accelerator": "capsacc"},
        "strategy": {"name": "nsga2", "population_size": 8, "offspring_size": 4, "seed": 0},
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the end-to-end demo on scikit-learn's digits",
        description="NSGA-II search of capsule networks on digits inside NNI (accuracy vs energy, latency "
                    "and memory on the CapsAcc model), a report, and retraining of the best front members.")
    parser.add_argument("--workdir", type=Path, default=Path("runs"), help="experiment folder (default ./runs)")
    parser.add_argument("--port", type=int, default=8080, help="web UI port")
    parser.add_argument("--max-trials", type=int, default=16)
    parser.add_argument("--retrain-top", type=int, default=2, help="front members to retrain (0: skip)")
    parser.add_argument("--retrain-epochs", type=int, default=4)
    parser.set_defaults(func=run)


def retrain_arguments(experiment_id: str, workdir: Path, top_k: int, epochs: int) -> argparse.Namespace:
    """The arguments of ``nni-capsnas retrain`` for the demo's search, parsed by the CLI's own parser."""
    from nni_capsnas.app.cli import build_parser

    return build_parser().parse_args(["retrain", experiment_id, "--workdir", str(workdir), "--top-k", str(top_k),
                                      "--epochs", str(epochs), "--no-progress"])


def run(args: argparse.Namespace) -> int:
    from nni_capsnas.app.commands import retrain
    from nni_capsnas.app.config import parse_config
    from nni_capsnas.app.search_runner import run_search

    config = parse_config(demo_config(args.workdir, args.port, args.max_trials))
    print_now(f"1/2  NSGA-II search: {args.max_trials} trials of NASCaps' CapsNet-style space on digits, 2 at a time "
              "(one progress line per generation)")
    outcome = run_search(config, announce=print_now)
    print_now(outcome.summary())
    if not outcome.succeeded or outcome.report_dir is None:
        return 1
    print_now((outcome.report_dir / "summary.md").read_text(encoding="utf-8"))
    if args.retrain_top > 0:
        print_now(f"2/2  retraining the {args.retrain_top} most accurate front members for "
                  f"{args.retrain_epochs} epochs")
        retrain.run(retrain_arguments(outcome.experiment_id, outcome.folder.parent, args.retrain_top,
                                      args.retrain_epochs))
    print_now(f"done. Browse it again with:  nni-capsnas view {outcome.experiment_id} "
              f"--workdir {outcome.folder.parent}")
    return 0

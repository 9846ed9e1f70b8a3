"""``nni-capsnas retrain EXP_ID``: train the Pareto front longer, as NASCaps does."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from nni_capsnas.app.commands import print_now


_logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain", help="retrain the top Pareto-front architectures for more epochs",
        description="Rebuild the front's networks from the experiment, train each for --epochs on the "
                    "search's dataset, and write retrain.csv with accuracy and hardware cost.")
    parser.add_argument("experiment", help="experiment id (or its folder)")
    parser.add_argument("--workdir", help="NNI experiments folder (default ~/nni-experiments)")
    parser.add_argument("--top-k", type=int, default=3, help="how many front architectures (by accuracy)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--objectives", type=json.loads,
                        help="JSON objectives defining the front (default: the search's own)")
    parser.add_argument("--constraints", type=json.loads,
                        help="JSON upper bounds on metrics (default: the search's own)")
    parser.add_argument("--output", type=Path, help="CSV to write (default <experiment>/retrain.csv)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the search's training.device)")
    parser.add_argument("--precision", help="fp32, bf16 or fp16 (default: the search's training.precision)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from nni_capsnas.nni_compat.experiment_db import load_trial_model, locate_experiment, read_trials
    from nni_capsnas.hardware_cost import network_cost
    from nni_capsnas.app.report import pareto_table, resolve_objectives
    from trials.datasets import load_dataset
    from trials.devices import check_precision, resolve_device
    from trials.evaluator import train_config_from_options
    from trials.training import train

    if args.top_k < 1 or args.epochs < 1:
        raise ValueError(f"--top-k and --epochs must be >= 1, got {args.top_k} and {args.epochs}")
    overrides = {}
    for flag, check in (("--device", resolve_device), ("--precision", check_precision)):
        value = getattr(args, flag[2:])
        if value is not None:
            try:  # before anything is read or written
                check(value)
            except ValueError as error:
                raise ValueError(f"{flag}: {error}") from error
            overrides[flag[2:]] = value
    folder = locate_experiment(args.experiment, args.workdir)
    output = args.output or folder.path / "retrain.csv"
    if output.exists():
        raise FileExistsError(f"{output} exists; pass another --output")
    trials = read_trials(folder)
    objectives = resolve_objectives(folder, args.objectives, args.constraints)
    front = pareto_table(trials, objectives).head(args.top_k)
    if front.empty:
        raise ValueError(f"experiment {folder.experiment_id} has no Pareto front (no usable succeeded trial)")
    rows = []
    for trial_id in front["trial_id"]:
        model, options = load_trial_model(folder, trial_id)
        data = load_dataset(options.get("dataset", "digits"), **(options.get("dataset_options") or {}))
        # adversarial training included; the search's device and precision unless overridden
        config = train_config_from_options({**options, **overrides}, epochs=args.epochs)
        _logger.info("retraining trial %s for %d epochs", trial_id, args.epochs)
        result = train(model, data, config, progress=not args.no_progress)
        cost = network_cost(model, data.input_shape, accelerator=options.get("accelerator", "capsacc"))
        search_accuracy = front.loc[front["trial_id"] == trial_id, "accuracy"].iloc[0]
        rows.append({"trial_id": trial_id, "search_accuracy": search_accuracy,
                     "retrained_accuracy": result.final_accuracy, "epochs": args.epochs, **cost,
                     "device": result.device})
        print_now(f"{trial_id}: accuracy {search_accuracy:.4f} -> {result.final_accuracy:.4f} "
                  f"after {args.epochs} epochs")
    pd.DataFrame(rows).to_csv(output, index=False)
    print_now(f"written: {output}")
    return 0

"""``nni-capsnas report EXP_ID``: CSVs, Pareto plots and a summary of an experiment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nni_capsnas.app.commands import print_now


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="tables, Pareto front and plots of an experiment",
        description="Write trials.csv (every trial, every metric), pareto_front.csv, "
                    "pareto_<metric>.png and summary.md for an experiment (by id or folder).")
    parser.add_argument("experiment", help="experiment id (or its folder)")
    parser.add_argument("--workdir", help="NNI experiments folder (default ~/nni-experiments)")
    parser.add_argument("--output", type=Path, help="report folder (default <experiment>/report)")
    parser.add_argument("--objectives", type=json.loads,
                        help='JSON, e.g. \'{"accuracy": "max", "energy_mj": "min"}\' (default: the search\'s own)')
    parser.add_argument("--constraints", type=json.loads,
                        help='JSON upper bounds, e.g. \'{"energy_mj": 5}\' (default: the search\'s own)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nni_capsnas.nni_compat.experiment_db import locate_experiment
    from nni_capsnas.app.report import write_report

    folder = locate_experiment(args.experiment, args.workdir)
    report = write_report(folder, args.output or folder.path / "report", objectives=args.objectives,
                          constraints=args.constraints)
    print_now(report.summary.read_text(encoding="utf-8"))
    print_now(f"written: {report.trials_csv}, {report.front_csv}, {', '.join(str(p) for p in report.plots)}")
    return 0

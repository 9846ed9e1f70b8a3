"""``nni-capsnas search --config FILE``: run a hardware-aware architecture search in NNI."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nni_capsnas.app.commands import print_now

_logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="run a hardware-aware architecture search (NNI experiment)",
        description="Run an NNI experiment from a TOML/YAML config: web UI address first, one progress "
                    "line per generation, then a report (CSV, Pareto plots, summary).")
    parser.add_argument("--config", type=Path, required=True, help="search configuration (.toml, .yaml)")
    parser.add_argument("--port", type=int, help="web UI port (overrides experiment.port)")
    parser.add_argument("--workdir", help="NNI experiment folder (overrides experiment.workdir)")
    parser.add_argument("--report-dir", type=Path,
                        help="where to write the report (default: <experiment folder>/report)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nni_capsnas.app.config import load_config
    from nni_capsnas.app.search_runner import run_search

    config = load_config(args.config)
    if args.port is not None:
        config.experiment.port = args.port
    if args.workdir is not None:
        config.experiment.workdir = args.workdir
    outcome = run_search(config, report_dir=args.report_dir, announce=print_now)
    print_now(outcome.summary())
    return 0 if outcome.succeeded else 1

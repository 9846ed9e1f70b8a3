"""``nni-capsnas resume EXP_ID``: continue an interrupted search."""

from __future__ import annotations

import argparse
from pathlib import Path

from nni_capsnas.app.commands import print_now


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resume", help="continue an interrupted search from its checkpoint",
        description="Resume a search started with 'nni-capsnas search': finished trials are kept, "
                    "no architecture is trained twice, and the search completes its budget.")
    parser.add_argument("experiment", help="experiment id (or its folder)")
    parser.add_argument("--workdir", help="NNI experiments folder (default ~/nni-experiments)")
    parser.add_argument("--port", type=int, help="web UI port")
    parser.add_argument("--report-dir", type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nni_capsnas.app.search_runner import resume_search

    outcome = resume_search(args.experiment, workdir=args.workdir, port=args.port,
                            report_dir=args.report_dir, announce=print_now)
    print_now(outcome.summary())
    return 0 if outcome.succeeded else 1

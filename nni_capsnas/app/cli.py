"""The ``nni-capsnas`` command line: one sub-command per module in :mod:`nni_capsnas.app.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from nni_capsnas import __version__
from nni_capsnas.quiet import silence_known_warnings

# Sub-command name -> module in nni_capsnas.app.commands exposing ``register(subparsers)``.
# Modules are imported only to build the parser; each imports the heavy packages it needs (torch,
# NNI, pandas) inside its ``run``, which keeps ``--help`` and the light commands fast: importing
# ``nni.nas.experiment`` alone takes 5-7 s on a 2-core machine, ``torch`` 2 s.
COMMANDS: dict[str, str] = {
    "demo": "nni_capsnas.app.commands.demo",
    "train": "nni_capsnas.app.commands.train",
    "estimate": "nni_capsnas.app.commands.estimate",
    "search": "nni_capsnas.app.commands.search",
    "resume": "nni_capsnas.app.commands.resume",
    "report": "nni_capsnas.app.commands.report",
    "view": "nni_capsnas.app.commands.view",
    "retrain": "nni_capsnas.app.commands.retrain",
}


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="nni-capsnas",
        description="Hardware-aware neural architecture search for capsule networks and CNNs, inside NNI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    silence_known_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for chatty in ("onnxscript", "onnx_ir", "torch.onnx"):  # the exporter narrates every pass at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, FileExistsError) as error:
        message = " ".join(str(error).split()) or type(error).__name__  # always one line
        print(f"nni-capsnas {args.command}: error: {message}", file=sys.stderr)
        return 2

"""Sub-commands of ``nni-capsnas``; each module exposes ``register(subparsers)``."""

import sys


def print_now(line: str = "") -> None:
    """The CLI's output: one line on stdout, flushed (scripts and tests read it while running).

    Benchmarks under ``benchmarks/`` print their tables through it too.
    """
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()

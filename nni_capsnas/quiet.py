"""Silence the harmless warnings NNI 3.0 prints on current PyTorch and setuptools."""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator, Mapping


def silence_known_warnings() -> None:
    """Hide NNI's "is not a nn.Module" and setuptools' ``pkg_resources`` deprecation warnings.

    Call it from entry points (the CLI, trial code), never at import time of a library module.
    """
    warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*")
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")


@contextlib.contextmanager
def logger_levels(levels: Mapping[str, int]) -> Iterator[None]:
    """Set the given loggers' levels for the duration of the block, then restore them."""
    previous = {name: logging.getLogger(name).level for name in levels}
    try:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)

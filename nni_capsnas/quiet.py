"""Silence the harmless warnings NNI 3.0 prints on current PyTorch and setuptools."""

from __future__ import annotations

import warnings


def silence_known_warnings() -> None:
    """Hide NNI's "is not a nn.Module" and setuptools' ``pkg_resources`` deprecation warnings.

    Call it from entry points (the CLI, trial code), never at import time of a library module.
    """
    warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*")
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")

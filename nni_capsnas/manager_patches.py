"""Fixes for NNI 3.0's node.js manager, loaded with ``NODE_OPTIONS=--require``; NNI's files are untouched.

:func:`bind_trial_parameters`: NNI hands the architectures of new trials to the trial processes
in the order they ask for them, not to the trial each was created for (see
``nni_capsnas/node/bind_parameters.js``); managers started within the context give every
trial its own architecture, so NNI's database, the strategy and NNI's resume agree on what
each trial trained.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from typing import Iterator

BIND_PARAMETERS_SCRIPT = "bind_parameters.js"


def preload_path(script: str) -> str:
    """Path of one of the package's node.js preloads."""
    return str(resources.files("nni_capsnas") / "node" / script)


@contextlib.contextmanager
def node_preload(script: str) -> Iterator[None]:
    """Within this context, node.js processes started by this process preload ``script``."""
    saved = os.environ.get("NODE_OPTIONS")
    option = f"--require {preload_path(script)}"
    os.environ["NODE_OPTIONS"] = f"{saved} {option}" if saved else option
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("NODE_OPTIONS", None)
        else:
            os.environ["NODE_OPTIONS"] = saved


@contextlib.contextmanager
def bind_trial_parameters() -> Iterator[None]:
    """NNI managers started within this context give every trial the architecture made for it."""
    with node_preload(BIND_PARAMETERS_SCRIPT):
        yield

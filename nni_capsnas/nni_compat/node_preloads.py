"""Fixes for NNI 3.0's node.js manager, loaded with ``NODE_OPTIONS=--require``; NNI's files are untouched.

- :func:`bind_trial_parameters`: NNI hands the architectures of new trials to the trial
  processes in the order they ask for them, not to the trial each was created for (see
  ``node/bind_parameters.js``); managers started within the context give every trial its own
  architecture, so NNI's database, the strategy and NNI's resume agree on what each trial
  trained. Without it, the crash drill of ``tests/nni_capsnas/app/test_crash_resume.py`` finds
  trials that trained another trial's architecture.
- :func:`bind_webui`: NNI's REST server calls ``listen(port)`` without a host, so the web UI
  and REST API listen on every interface and NNI has no option for it; ``node/bind_host.js``
  gives ``listen`` a default host (127.0.0.1 unless told otherwise). Without it,
  ``tests/nni_capsnas/app/test_webui.py`` finds the port open on a non-loopback address.
- :func:`schedule_every_gpu`: NNI's GPU scheduler refuses a trial that asks for every GPU of the
  machine (``gpuNumber >= gpus.length``), so a one-GPU machine with ``trial_gpu_number = 1``
  never starts a trial; ``node/gpu_scheduler.js`` schedules such a trial as NNI schedules any
  whole number of GPUs. Without it,
  ``tests/nni_capsnas/nni_compat/test_gpu_scheduler.py::test_nni_alone_never_schedules_every_gpu``
  shows the refusal. It patches the manager only: NNI's trial keepers on remote workers keep
  the refusal.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from typing import Iterator

BIND_PARAMETERS_SCRIPT = "bind_parameters.js"
BIND_HOST_SCRIPT = "bind_host.js"
GPU_SCHEDULER_SCRIPT = "gpu_scheduler.js"
#: Environment variable ``bind_host.js`` reads the host from.
BIND_HOST_VARIABLE = "NNI_CAPSNAS_BIND_HOST"
#: Hosts that mean "every interface": NNI's own behaviour is kept.
EVERY_INTERFACE = ("", "0.0.0.0", "::")


def preload_path(script: str) -> str:
    """Path of one of the package's node.js preloads."""
    return str(resources.files("nni_capsnas.nni_compat") / "node" / script)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def node_preload(script: str) -> Iterator[None]:
    """Within this context, node.js processes started by this process preload ``script``."""
    saved = os.environ.get("NODE_OPTIONS")
    option = f"--require {preload_path(script)}"
    with _environment(NODE_OPTIONS=f"{saved} {option}" if saved else option):
        yield


@contextlib.contextmanager
def bind_trial_parameters() -> Iterator[None]:
    """NNI managers started within this context give every trial the architecture made for it."""
    with node_preload(BIND_PARAMETERS_SCRIPT):
        yield


@contextlib.contextmanager
def bind_webui(host: str = "127.0.0.1") -> Iterator[None]:
    """Within this context, NNI managers started by this process listen on ``host`` only.

    ``host="0.0.0.0"`` (or ``""``) keeps NNI's behaviour of listening everywhere (needed
    when remote workers must reach the manager).
    """
    if host in EVERY_INTERFACE:
        yield
        return
    with node_preload(BIND_HOST_SCRIPT), _environment(**{BIND_HOST_VARIABLE: host}):
        yield


@contextlib.contextmanager
def schedule_every_gpu() -> Iterator[None]:
    """NNI managers started within this context may give one trial every GPU of the machine."""
    with node_preload(GPU_SCHEDULER_SCRIPT):
        yield

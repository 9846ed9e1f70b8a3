"""The interpreter in NNI's trial command (private ``_trial_command_params``).

NNI 3.0 renders the trial command of every machine with the *driver's* ``sys.executable``;
the remote machines' ``python_path`` does not change it, so a worker whose interpreter lives
elsewhere fails every trial in under a second. The experiment config's private
``_trial_command_params`` replaces the interpreter. Without it,
``tests/nni_capsnas/test_remote_workers.py`` (a worker with its own environment path) fails.
"""

from __future__ import annotations

from typing import Any


def set_trial_python(experiment_config: Any, python: str) -> None:
    """Make every trial command start ``python`` (a path, or a name found on the worker's ``PATH``)."""
    experiment_config._trial_command_params = {"python": python}


def trial_python(experiment_config: Any) -> str | None:
    """The interpreter set by :func:`set_trial_python`, if any."""
    params = getattr(experiment_config, "_trial_command_params", None) or {}
    return params.get("python")

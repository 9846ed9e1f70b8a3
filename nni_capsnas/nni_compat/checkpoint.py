"""NNI's experiment checkpoint, written atomically and never emptied by a failed resume.

NNI 3.0's ``NasExperiment.save_checkpoint`` writes ``checkpoint/config.json`` and
``checkpoint/state.ckpt.torch`` in place, and ``stop()`` calls it even when a ``resume`` failed
before the saved state was loaded: a killed driver leaves a truncated checkpoint, and a failed
resume overwrites a finished search's state with an empty one. The experiment's checkpoint
folder, its action (``create`` / ``resume`` / ``view``) and its engine are private attributes
(``_checkpoint_directory``, ``_action``, ``_engine``); they are read here only.
``tests/nni_capsnas/nni_compat/test_checkpoint.py`` shows NNI overwriting the state of a search
whose resume failed, and :class:`~nni_capsnas.experiment.CapsNasExperiment` leaving it untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import nni
from nni.nas.utils.serializer import get_default_serializer

_logger = logging.getLogger(__name__)

#: NNI's strategy checkpoint file (``TorchSerializer`` adds the ``.torch`` suffix to ``state.ckpt``).
STATE_FILE = "state.ckpt.torch"
CONFIG_FILE = "config.json"


def checkpoint_directory(experiment: Any) -> Path:
    """Where NNI keeps an experiment's checkpoint (``<workdir>/<id>/checkpoint``)."""
    return Path(experiment._checkpoint_directory)


def is_resuming(experiment: Any) -> bool:
    """Whether the experiment was started with ``resume``."""
    return getattr(experiment, "_action", None) == "resume"


def has_engine(experiment: Any) -> bool:
    """Whether the experiment's execution engine exists (it is started, so its state is real)."""
    return getattr(experiment, "_engine", None) is not None


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it when the block succeeds."""
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_checkpoint(experiment: Any) -> None:
    """NNI's checkpoint (``config.json``, ``state.ckpt.*``), each file replaced atomically.

    The previous state is kept as ``state.ckpt.*.bak``. Errors propagate; the caller decides
    (NNI logs them and goes on).
    """
    directory = checkpoint_directory(experiment)
    directory.mkdir(parents=True, exist_ok=True)
    with replacing(directory / CONFIG_FILE) as temporary:
        with temporary.open("w", encoding="utf-8") as handle:
            nni.dump(experiment.config.json(), fp=handle, indent=2)
    if not has_engine(experiment):
        return
    serializer = get_default_serializer()
    target = directory / f"state.ckpt{serializer.suffix}"
    if target.is_file():
        with replacing(target.with_name(target.name + ".bak")) as temporary:
            shutil.copy2(target, temporary)
    staging = directory / ".state.ckpt.tmp"
    written = staging.with_name(staging.name + serializer.suffix)
    try:
        serializer.save(experiment.state_dict(), staging)
        os.replace(written, target)
    finally:
        written.unlink(missing_ok=True)

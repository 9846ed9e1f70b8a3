"""``CapsNasExperiment``: NNI's ``NasExperiment`` with safe resume and rolling checkpoints."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from nni.nas.experiment import NasExperiment

from .resume_shims import skip_unknown_commands

_logger = logging.getLogger(__name__)


class CapsNasExperiment(NasExperiment):
    """A ``NasExperiment`` that

    - skips the HPO commands NNI replays on resume (see :mod:`nni_capsnas.resume_shims`);
    - never overwrites a checkpoint with the empty state of a resume that failed before
      the saved state was loaded (NNI's ``stop()`` would), and keeps ``state.ckpt.*.bak``
      of the previous state each time it writes a new one;
    - after loading a checkpoint, hands the strategy every trial NNI recorded as finished
      (``strategy.adopt_trials``), so nothing finished is lost or trained again, even when
      the driver was killed after the last checkpoint;
    - checkpoints after every generation of strategies that announce them
      (``strategy.on_generation_end``), so a crash loses at most the running trials.

    Construct it exactly like ``NasExperiment``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state_loaded = False

    def execution_engine_factory(self, config: Any) -> Any:
        engine = super().execution_engine_factory(config)
        skip_unknown_commands(engine)
        hooks = getattr(self.strategy, "on_generation_end", None)
        if isinstance(hooks, list) and self.save_checkpoint not in hooks:
            hooks.append(self.save_checkpoint)
        if hasattr(self.strategy, "trial_history"):
            self.strategy.trial_history = self._finished_trials
        return engine

    def _finished_trials(self) -> list[Any]:
        from .experiment_store import ExperimentFolder, read_trial_records

        folder = ExperimentFolder(self.id, self._checkpoint_directory.parent)
        return read_trial_records(folder) if folder.database.is_file() else []

    def load_checkpoint(self) -> None:
        super().load_checkpoint()
        if self._engine is not None:
            self._state_loaded = True
            self._adopt_finished_trials()

    def _adopt_finished_trials(self) -> None:
        """Tell the strategy about every trial NNI finished, even after a stale checkpoint."""
        adopt = getattr(self.strategy, "adopt_trials", None)
        if adopt is not None:
            adopt(self._finished_trials())

    def save_checkpoint(self) -> None:
        """NNI's checkpoint (``config.json``, ``state.ckpt.*``), each file replaced atomically.

        NNI writes the files in place: a driver killed while writing would leave a truncated
        checkpoint. Here every file is written beside its target and renamed over it, so the
        checkpoint on disk is always a complete old or a complete new one; the previous state
        is kept as ``state.ckpt.*.bak``. Errors are logged, as NNI does.
        """
        if getattr(self, "_action", None) == "resume" and not self._state_loaded:
            _logger.warning("resume did not load the saved state: leaving the checkpoint of %s untouched", self.id)
            return
        import nni
        from nni.nas.utils.serializer import get_default_serializer

        directory = self._checkpoint_directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with _replacing(directory / "config.json") as temporary:
                with temporary.open("w", encoding="utf-8") as handle:
                    nni.dump(self.config.json(), fp=handle, indent=2)
            if self._engine is not None:
                serializer = get_default_serializer()
                target = directory / f"state.ckpt{serializer.suffix}"
                if target.is_file():
                    with _replacing(target.with_name(target.name + ".bak")) as temporary:
                        shutil.copy2(target, temporary)
                staging = directory / ".state.ckpt.tmp"
                written = staging.with_name(staging.name + serializer.suffix)
                try:
                    serializer.save(self.state_dict(), staging)
                    os.replace(written, target)
                finally:
                    written.unlink(missing_ok=True)
            _logger.debug("checkpoint saved to %s", directory)
        except Exception:  # as NNI: a failed checkpoint must not end the search
            _logger.exception("could not save the checkpoint of %s", self.id)


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it when the block succeeds."""
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)

"""``CapsNasExperiment``: NNI's ``NasExperiment`` with safe resume and rolling checkpoints."""

from __future__ import annotations

import logging
from typing import Any

from nni.nas.experiment import NasExperiment

from .nni_compat.checkpoint import checkpoint_directory, has_engine, is_resuming, write_checkpoint
from .nni_compat.experiment_db import ExperimentFolder, TrialRecord, read_trial_records
from .nni_compat.resume_commands import skip_unknown_commands

_logger = logging.getLogger(__name__)


class CapsNasExperiment(NasExperiment):
    """A ``NasExperiment`` that

    - skips the HPO commands NNI replays on resume (see :mod:`nni_capsnas.nni_compat.resume_commands`);
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

    def _finished_trials(self) -> list[TrialRecord]:
        folder = ExperimentFolder(self.id, checkpoint_directory(self).parent)
        return read_trial_records(folder) if folder.database.is_file() else []

    def load_checkpoint(self) -> None:
        super().load_checkpoint()
        if has_engine(self):
            self._state_loaded = True
            self._adopt_finished_trials()

    def _adopt_finished_trials(self) -> None:
        """Tell the strategy about every trial NNI finished, even after a stale checkpoint."""
        adopt = getattr(self.strategy, "adopt_trials", None)
        if adopt is not None:
            adopt(self._finished_trials())

    def save_checkpoint(self) -> None:
        """NNI's checkpoint, each file replaced atomically (see :mod:`nni_capsnas.nni_compat.checkpoint`).

        Errors are logged, as NNI does: a failed checkpoint must not end the search.
        """
        if is_resuming(self) and not self._state_loaded:
            _logger.warning("resume did not load the saved state: leaving the checkpoint of %s untouched", self.id)
            return
        try:
            write_checkpoint(self)
            _logger.debug("checkpoint saved to %s", checkpoint_directory(self))
        except Exception:  # as NNI: a failed checkpoint must not end the search
            _logger.exception("could not save the checkpoint of %s", self.id)

"""``CapsNasExperiment``: NNI's ``NasExperiment`` with safe resume and rolling checkpoints."""

from __future__ import annotations

import logging
import shutil
from typing import Any

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
        if getattr(self, "_action", None) == "resume" and not self._state_loaded:
            _logger.warning("resume did not load the saved state: leaving the checkpoint of %s untouched", self.id)
            return
        if self._engine is not None:
            for state in self._checkpoint_directory.glob("state.ckpt*"):
                if not state.name.endswith(".bak"):
                    shutil.copy2(state, state.with_name(state.name + ".bak"))
        super().save_checkpoint()

"""NNI's console output under an application that configures logging itself.

- Importing ``nni`` adds NNI's own stdout handler to the ``nni`` logger, which also
  propagates to the root logger: once the application configures root logging, every NNI
  line is printed twice. :func:`route_nni_logs_to_root` removes NNI's handler with NNI's public
  ``silence_stdout()`` so each line is printed once, by the application's handler (NNI's
  experiment log files are untouched).
- ``NasExperimentConfig`` logs "Using execution engine based on training service. Trial
  concurrency is set to 1." while building its defaults, before the application sets the real
  concurrency; on a machine with a GPU it also warns "GPU found but will not be used" unless
  ``trial_gpu_number`` is set, while the trials train on that GPU (``training.device = "auto"``).
  :func:`hide_misleading_startup_lines` drops those records (the other start-up lines are kept).

Without them, ``tests/nni_capsnas/nni_compat/test_console_log.py`` sees the duplicates and
the wrong concurrency.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from nni.runtime.log import silence_stdout

#: The logger of NNI's ``NasExperimentConfig`` defaults, and what it says before the concurrency is set.
EXPERIMENT_CONFIG_LOGGER = "nni.nas.experiment.config.experiment"
MISLEADING_FRAGMENT = "Trial concurrency is set to 1"
#: What NNI warns on a GPU machine without ``trial_gpu_number``, though the trials use the GPU.
GPU_UNUSED_FRAGMENT = "GPU found but will not be used"


def route_nni_logs_to_root() -> None:
    """Print NNI's log lines only through the root logger's handlers (no duplicate lines)."""
    silence_stdout()


class _DropMisleading(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return MISLEADING_FRAGMENT not in message and GPU_UNUSED_FRAGMENT not in message


@contextlib.contextmanager
def hide_misleading_startup_lines() -> Iterator[None]:
    """Within the block, NNI's "Trial concurrency is set to 1" and "GPU found but will not be used" lines
    are not emitted."""
    logger = logging.getLogger(EXPERIMENT_CONFIG_LOGGER)
    drop = _DropMisleading()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)

"""Each NNI log line reaches the console once, and NNI's wrong concurrency line is not shown."""

from __future__ import annotations

import logging
import sys

import pytest
from nni.runtime.log import start_stdout_logging

from nni_capsnas.app.config import parse_config
from nni_capsnas.app.experiment_builder import build_experiment
from nni_capsnas.nni_compat.console_log import (EXPERIMENT_CONFIG_LOGGER, GPU_UNUSED_FRAGMENT, MISLEADING_FRAGMENT,
                                                hide_misleading_startup_lines, route_nni_logs_to_root)


def _console_handlers(name: str) -> int:
    """Stream handlers on the way from logger ``name`` to the root (files excluded)."""
    count, logger = 0, logging.getLogger(name)
    while logger is not None:
        count += sum(1 for handler in logger.handlers
                     if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler))
        logger = logger.parent if logger.propagate else None
    return count


@pytest.fixture
def root_console() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
    start_stdout_logging()  # NNI's default, for the tests that follow


def test_nni_lines_reach_one_console_handler(root_console: logging.Handler) -> None:
    start_stdout_logging()
    ours = _console_handlers("nni_capsnas.app")  # the application's (and pytest's capture)
    assert _console_handlers("nni.nas.experiment") == ours + 1  # NNI's own stdout handler too: lines twice
    route_nni_logs_to_root()
    assert _console_handlers("nni.nas.experiment") == ours


def test_nni_misleading_concurrency_line_is_hidden(caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    config = parse_config({"experiment": {"trial_concurrency": 2, "workdir": str(tmp_path)},
                           "space": {"name": "capsnet"}, "training": {"epochs": 1}})
    with caplog.at_level(logging.INFO, logger=EXPERIMENT_CONFIG_LOGGER):
        build_experiment(config)
    assert not [r for r in caplog.records if MISLEADING_FRAGMENT in r.getMessage()]
    assert [r for r in caplog.records if r.name == EXPERIMENT_CONFIG_LOGGER], "NNI's other start-up lines are kept"


def test_without_the_filter_nni_says_concurrency_is_one(caplog: pytest.LogCaptureFixture) -> None:
    """The behaviour corrected above: NNI's default config announces a concurrency of 1."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import Random

    from search_spaces import CapsNetSpace

    with caplog.at_level(logging.INFO, logger=EXPERIMENT_CONFIG_LOGGER):
        NasExperiment(CapsNetSpace(), FunctionalEvaluator(print), Random())
    assert any(MISLEADING_FRAGMENT in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=EXPERIMENT_CONFIG_LOGGER), hide_misleading_startup_lines():
        NasExperiment(CapsNetSpace(), FunctionalEvaluator(print), Random())
    assert not any(MISLEADING_FRAGMENT in r.getMessage() for r in caplog.records)



@pytest.mark.cuda
def test_nni_gpu_unused_warning_is_hidden_on_a_gpu_machine(caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    """NNI warns that the GPU will not be used when trial_gpu_number is unset; the trials use it (auto)."""
    config = parse_config({"experiment": {"workdir": str(tmp_path)}, "space": {"name": "capsnet"}})
    with caplog.at_level(logging.INFO, logger=EXPERIMENT_CONFIG_LOGGER):
        build_experiment(config)
    assert not [r for r in caplog.records if GPU_UNUSED_FRAGMENT in r.getMessage()]

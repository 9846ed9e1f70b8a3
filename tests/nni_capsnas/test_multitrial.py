"""A 2-trial multi-trial search: NNI's node.js manager, local training service, trial processes."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
from nni.nas.experiment import NasExperiment
from nni.nas.strategy import Random
from nni.tools.nnictl import config_utils

from nni_capsnas.nni_compat.node_preloads import bind_webui
from search_spaces import CapsNetSpace
from trials.lightning import capsule_evaluator


def test_random_search_runs_two_trials_that_report_accuracy(tmp_path: Path, free_port: int,
                                                            isolated_nni: Path) -> None:
    space = CapsNetSpace()
    strategy = Random()
    exp = NasExperiment(space, capsule_evaluator("digits", epochs=1, limit_train_batches=3), strategy)
    exp.config.max_trial_number = 2
    exp.config.trial_concurrency = 2
    exp.config.experiment_working_directory = str(tmp_path / "experiments")
    try:
        with bind_webui("127.0.0.1"):
            exp.run(port=free_port)
        jobs = exp.list_trial_jobs()
        data = exp.export_data()
        top = exp.export_top_models(formatter="dict")
        models = list(strategy.list_models(sort=False, limit=None))
    finally:
        exp.stop()
    log_dir = tmp_path / "experiments" / exp.id
    assert [job.status for job in jobs] == ["SUCCEEDED", "SUCCEEDED"], f"trial logs under {log_dir / 'environments'}"
    assert len(data) == 2
    for result in data:
        assert isinstance(result.value, float) and 0.0 <= result.value <= 1.0 and math.isfinite(result.value)
    assert len(models) == 2
    labels = space.simplify()
    for model in models:
        assert set(model.sample) == set(labels)
        assert all(value in labels[label].values for label, value in model.sample.items())
        assert model.metric is not None and 0.0 <= model.metric <= 1.0
    assert top and top[0] == max(models, key=lambda m: m.metric).sample
    assert config_utils.Experiments(str(isolated_nni / "nni-experiments")).experiments[exp.id]["status"] == "STOPPED"
    assert (log_dir / "log" / "nnimanager.log").is_file()
    with pytest.raises(ConnectionRefusedError):  # the manager is gone
        socket.create_connection(("127.0.0.1", free_port), timeout=5).close()

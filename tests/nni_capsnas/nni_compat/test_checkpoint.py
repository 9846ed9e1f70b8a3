"""A resume that failed before loading the saved state never overwrites the checkpoint (NNI's stop() would)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nni.nas.experiment import NasExperiment

from nni_capsnas.experiment import CapsNasExperiment


def _resuming(cls: type, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An experiment of ``cls`` in the state NNI leaves when ``resume`` failed before loading the checkpoint."""
    experiment = cls.__new__(cls)
    monkeypatch.setattr(cls, "_checkpoint_directory", property(lambda self: checkpoint))
    experiment.id, experiment._action, experiment._engine = "x", "resume", object()
    experiment._state_loaded = False
    experiment.config = type("Config", (), {"json": lambda self: {"experimentName": "empty"}})()
    experiment.state_dict = lambda: {"strategy": {}}  # the fresh, empty strategy of the failed resume
    return experiment


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "state.ckpt.torch").write_bytes(b"a finished search")
    (folder / "config.json").write_text('{"experimentName": "finished"}')
    return folder


def test_nni_alone_overwrites_the_saved_state(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _resuming(NasExperiment, checkpoint, monkeypatch).save_checkpoint()
    assert (checkpoint / "state.ckpt.torch").read_bytes() != b"a finished search"


def test_a_failed_resume_leaves_the_checkpoint_untouched(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {path.name: path.read_bytes() for path in checkpoint.iterdir()}
    _resuming(CapsNasExperiment, checkpoint, monkeypatch).save_checkpoint()
    assert {path.name: path.read_bytes() for path in checkpoint.iterdir()} == before

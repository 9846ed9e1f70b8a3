"""GPU settings of a search: validation, NNI's GPU scheduling in the experiment config, refusal
before anything starts when this machine lacks the GPUs asked for.

No GPU trial runs here: the settings are checked in the NNI experiment config that a search
would start with (NNI's own validation included, through ``canonical_copy``).
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch

from nni_capsnas.app.cli import main
from nni_capsnas.app.config import ConfigError, parse_config
from nni_capsnas.app.device_check import check_devices_available
from nni_capsnas.app.experiment_builder import build_experiment
from nni_capsnas.app.training_service import remote_config

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_SPACE = {"name": "capsnet", "options": {"stem_channels": [8], "decoder": False}}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="the refusals of a machine without CUDA")


def _config(training: dict | None = None, service: dict | None = None, **sections: Any) -> dict[str, Any]:
    return {"space": TINY_SPACE, "training": training or {}, "training_service": service or {}, **sections}


def test_device_and_precision_default_to_auto_and_fp32() -> None:
    training = parse_config({}).training
    assert (training.device, training.precision) == ("auto", "fp32")
    service = parse_config({}).training_service
    assert (service.trial_gpu_number, service.gpu_indices, service.use_active_gpu,
            service.max_trial_number_per_gpu) == (None, None, False, 1)


@pytest.mark.parametrize("raw, message", [
    (_config({"device": "gpu"}), r"^training\.device: device must be one of auto, cpu, cuda, cuda:N \(N a GPU index\), "
                                 r"got 'gpu'$"),
    (_config({"precision": "fp64"}), r"^training\.precision: precision must be one of fp32, bf16, fp16, got 'fp64'$"),
    (_config(service={"trial_gpu_number": -1}), r"^training_service\.trial_gpu_number: must be >= 0, got -1$"),
    (_config(service={"trial_gpu_number": "1"}), r"^training_service\.trial_gpu_number: expected int, got str"),
    (_config(service={"max_trial_number_per_gpu": 2}),
     r"^training_service\.max_trial_number_per_gpu: NNI shares GPUs between trials only when it schedules them"),
    (_config(service={"trial_gpu_number": 1, "max_trial_number_per_gpu": 0}),
     r"^training_service\.max_trial_number_per_gpu: must be >= 1, got 0$"),
    (_config(service={"trial_gpu_number": 1, "gpu_indices": []}), r"^training_service\.gpu_indices: expected GPU "
                                                                   r"indices such as \[0, 1\], got an empty list"),
    (_config(service={"trial_gpu_number": 1, "gpu_indices": [0, 0]}), r"^training_service\.gpu_indices: lists a GPU "
                                                                       r"twice: \[0, 0\]$"),
    (_config(service={"trial_gpu_number": 1, "gpu_indices": [1, -1]}),
     r"^training_service\.gpu_indices\[1\]: must be >= 0, got -1$"),
    (_config(service={"trial_gpu_number": 1, "gpu_indices": ["0"]}),
     r"^training_service\.gpu_indices\[0\]: expected int, got str '0'$"),
    (_config(service={"trial_gpu_number": 1, "gpu_indices": 0}),
     r"^training_service\.gpu_indices: expected a list of int, got int 0$"),
    (_config(service={"gpu_indices": [0]}), r"^training_service\.gpu_indices: NNI restricts trials to these GPUs "
                                            r"only when it schedules them"),
    (_config({"device": "cuda"}, {"trial_gpu_number": 0}),
     r"^training\.device: 'cuda' needs a GPU, but training_service\.trial_gpu_number = 0 hides every GPU"),
    (_config({"device": "cuda:1"}, {"trial_gpu_number": 1}),
     r"^training\.device: 'cuda:1' names GPU 1, but NNI shows each trial only its 1 GPU\(s\), as cuda:0; use 'auto'"),
])
def test_bad_device_settings_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_nni_schedules_the_configured_gpus_for_local_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)  # NNI's trial code directory is the working directory
    service = {"trial_gpu_number": 2, "gpu_indices": [1, 3], "use_active_gpu": True, "max_trial_number_per_gpu": 2}
    config = parse_config(_config({"device": "cuda:1"}, service, experiment={"workdir": str(tmp_path)}))
    canonical = build_experiment(config).config.canonical_copy()  # NNI validates the experiment config here
    local = canonical.training_service
    assert (local.platform, local.trial_gpu_number, local.gpu_indices, local.use_active_gpu,
            local.max_trial_number_per_gpu) == ("local", 2, [1, 3], True, 2)
    assert canonical.json()["trainingService"]["trialGpuNumber"] == 2  # what NNI's manager receives
    # without the GPU keys NNI's default stays: no GPU scheduling, trials see every GPU
    plain = build_experiment(parse_config(_config(experiment={"workdir": str(tmp_path)}))).config.canonical_copy()
    assert plain.training_service.trial_gpu_number is None and plain.training_service.gpu_indices is None


def test_the_evaluator_carries_the_device_and_precision_to_the_trials(tmp_path: Path) -> None:
    config = parse_config(_config({"device": "cpu", "precision": "bf16"}, experiment={"workdir": str(tmp_path)}))
    evaluator = build_experiment(config).evaluator
    assert (evaluator.arguments["device"], evaluator.arguments["precision"]) == ("cpu", "bf16")


def test_remote_machines_get_the_gpu_scheduling(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("only its existence is checked\n")
    machine = {"host": "127.0.0.1", "user": "nas", "ssh_key_file": str(key), "python_path": "/opt/venv/bin"}
    section = parse_config(_config(service={"platform": "remote", "machines": [machine, machine],
                                            "trial_gpu_number": 1, "gpu_indices": [0],
                                            "max_trial_number_per_gpu": 3})).training_service
    nni_config = remote_config(section)
    assert nni_config.trial_gpu_number == 1
    assert [(m.gpu_indices, m.use_active_gpu, m.max_trial_number_per_gpu) for m in nni_config.machine_list] == [
        ([0], False, 3)] * 2


# --- this machine ---------------------------------------------------------------------------------


def test_cpu_and_remote_gpu_searches_pass_the_local_check() -> None:
    check_devices_available(parse_config(_config({"device": "cpu"})))
    check_devices_available(parse_config(_config({"device": "auto"})))


@no_cuda
@pytest.mark.parametrize("raw, message", [
    (_config({"device": "cuda"}), r"^training\.device: 'cuda' needs a CUDA GPU, but this machine has none"),
    (_config({"device": "cuda:0", "epochs": 1}, strategy={"name": "e2rnas"}, space={"name": "capsule-cell"}),
     r"^training\.device: 'cuda:0' needs a CUDA GPU, but this machine has none"),
    (_config(service={"trial_gpu_number": 1}), r"^training_service\.trial_gpu_number: NNI would give each trial "
                                               r"1 GPU\(s\), but this machine has no GPU that PyTorch can use"),
])
def test_gpu_settings_this_machine_cannot_honour_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_devices_available(parse_config(raw))


@no_cuda
def test_remote_trials_may_ask_for_gpus_this_machine_lacks_but_a_one_shot_phase_may_not(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("only its existence is checked\n")
    machine = {"host": "127.0.0.1", "user": "nas", "ssh_key_file": str(key), "python_path": "/opt/venv/bin"}
    remote = {"platform": "remote", "machines": [machine], "trial_gpu_number": 1}
    check_devices_available(parse_config(_config({"device": "cuda"}, remote)))  # the workers have them
    one_shot = _config({"device": "cuda"}, remote, strategy={"name": "e2rnas"}, space={"name": "capsule-cell"})
    with pytest.raises(ConfigError, match=r"the E2RNAS supernet trains on this machine"):
        check_devices_available(parse_config(one_shot))


@no_cuda
@pytest.mark.parametrize("section, key", [("training", "device"), ("training_service", "trial_gpu_number")])
def test_search_asking_for_cuda_without_a_gpu_exits_2_and_creates_nothing(tmp_path: Path, section: str,
                                                                          key: str) -> None:
    value = '"cuda"' if key == "device" else "1"
    config = tmp_path / "search.toml"
    config.write_text(f'[space]\nname = "capsnet"\n[{section}]\n{key} = {value}\n', encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(["search", "--config", str(config), "--workdir", str(tmp_path / "work")])
    lines = err.getvalue().strip().splitlines()
    assert status == 2 and out.getvalue() == ""
    assert len(lines) == 1 and lines[0].startswith(f"nni-capsnas search: error: {section}.{key}: "), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.toml"]


@pytest.mark.cuda
def test_gpu_settings_this_machine_has_pass() -> None:
    count = torch.cuda.device_count()
    check_devices_available(parse_config(_config({"device": "cuda"})))
    check_devices_available(parse_config(_config({"device": f"cuda:{count - 1}"})))
    check_devices_available(parse_config(_config(service={"trial_gpu_number": 1, "gpu_indices": [count - 1]})))
    with pytest.raises(ConfigError, match=rf"^training_service\.gpu_indices\[0\]: GPU {count} does not exist"):
        check_devices_available(parse_config(_config(service={"trial_gpu_number": 1, "gpu_indices": [count]})))

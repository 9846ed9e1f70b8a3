"""The ``nni-capsnas train`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nni_capsnas.app.cli import main


def test_train_one_epoch_prints_an_epoch_line_and_saves_weights(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "out" / "capsnet.pt"
    assert main(["train", "--epochs", "1", "--no-progress", "--json", "--save", str(weights)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch   1  loss ")
    assert "held-out accuracy" in lines[0]
    report = json.loads(lines[1])
    assert report["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # auto
    history = report["history"]
    assert [record["epoch"] for record in history] == [1]
    assert 0.0 <= history[0]["val_accuracy"] <= 1.0
    state = torch.load(weights, weights_only=True)
    assert {"conv1.weight", "primary.conv.weight", "class_caps.weight"} <= set(state)


def test_train_save_refuses_to_overwrite_and_leaves_the_file_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "weights.pt"
    existing.write_bytes(b"precious")
    before = existing.stat().st_mtime_ns
    assert main(["train", "--epochs", "1", "--no-progress", "--save", str(existing)]) == 2
    captured = capsys.readouterr()
    assert "already exists" in captured.err and str(existing) in captured.err
    assert "epoch" not in captured.out
    assert existing.read_bytes() == b"precious"
    assert existing.stat().st_mtime_ns == before


def test_train_unknown_dataset_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "imagenet", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nni-capsnas train: error: unknown dataset 'imagenet'")
    assert "Traceback" not in err


def test_train_bad_epochs_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "0", "--no-progress"]) == 2
    assert "epochs must be a positive integer, got 0" in capsys.readouterr().err


def test_mnist_t10k_without_data_root_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "mnist-t10k", "--no-progress"]) == 2
    assert "'mnist-t10k' needs root" in capsys.readouterr().err


def test_no_command_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "train" in capsys.readouterr().out


def test_module_entry_point_shows_train_help() -> None:
    result = subprocess.run([sys.executable, "-m", "nni_capsnas", "train", "--help"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0
    assert "--save" in result.stdout and "--epochs" in result.stdout


def test_adversarial_training_flags_train_and_bad_values_are_one_line_errors(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "1", "--no-progress", "--adversarial-epsilon", "0.1",
                 "--adversarial-weight", "0.3"]) == 0
    assert capsys.readouterr().out.startswith("epoch   1  loss ")

    assert main(["train", "--no-progress", "--adversarial-epsilon", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--adversarial-epsilon: epsilon must be a number in [0, 1] (pixel units), got 1.5" in err
    assert "Traceback" not in err

    assert main(["train", "--no-progress", "--adversarial-epsilon", "0.1", "--adversarial-weight", "0"]) == 2
    assert "adversarial_weight must be in (0, 1], got 0.0" in capsys.readouterr().err


def test_train_on_the_cpu_reports_the_device_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "1", "--no-progress", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[1])["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_train_on_cuda_without_a_gpu_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str) -> None:
    weights = tmp_path / "out" / "weights.pt"
    assert main(["train", "--epochs", "1", "--no-progress", "--device", device, "--save", str(weights)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nni-capsnas train: error: --device: device '{device}' needs a "
                                                   "CUDA GPU, but this machine has none"), lines
    assert captured.out == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--device", "gpu", "--device: device must be one of auto, cpu, cuda, cuda:N (N a GPU index), got 'gpu'"),
    ("--precision", "fp8", "--precision: precision must be one of fp32, bf16, fp16, got 'fp8'"),
])
def test_train_bad_device_or_precision_is_a_one_line_error(capsys: pytest.CaptureFixture[str], flag: str,
                                                            value: str, message: str) -> None:
    assert main(["train", "--no-progress", flag, value]) == 2
    assert capsys.readouterr().err.strip() == f"nni-capsnas train: error: {message}"


@pytest.mark.parametrize("flag, value, message", [
    ("--device", "cuda:x", "--device: device must be one of auto, cpu, cuda, cuda:N (N a GPU index), got 'cuda:x'"),
    ("--device", "cuda:9999", "--device: device 'cuda:9999' "),
    ("--precision", "tf32", "--precision: precision must be one of fp32, bf16, fp16, got 'tf32'"),
])
def test_retrain_checks_device_and_precision_before_reading_the_experiment(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str) -> None:
    assert main(["retrain", "no-such-experiment", "--workdir", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nni-capsnas retrain: error: {message}"), err
    assert list(tmp_path.iterdir()) == []

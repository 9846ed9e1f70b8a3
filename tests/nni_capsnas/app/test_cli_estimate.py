"""``nni-capsnas estimate``."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from nni_capsnas.app.cli import main

CAPSNET_GENE = [[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [1, 14, 32, 8, 9, 2, 7, 10, 16],
                [-1], [1]]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nni_capsnas.export import export_onnx

    network = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    path = tmp_path_factory.mktemp("cli") / "net.onnx"
    onnx.save(export_onnx(network, torch.zeros(1, 1, 8, 8)), path)
    return path


@pytest.fixture()
def chromosome_file(tmp_path: Path) -> Path:
    path = tmp_path / "capsnet.chr"
    path.write_text(json.dumps(CAPSNET_GENE), encoding="utf-8")
    return path


def test_chromosome_summary(chromosome_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["estimate", "--chromosome", str(chromosome_file)]) == 0
    out = capsys.readouterr().out
    assert "capsacc" in out and "88.80" in out and "1.82" in out and "weights 8572.6 KiB" in out


def test_model_json_per_layer(model_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["estimate", str(model_file), "--accelerator", "systolic", "--json", "--per-layer"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["accelerator"] == "systolic" and data["energy_mj"] > 0
    assert [layer["kind"] for layer in data["layers"] if layer["kind"] != "elementwise"] == ["conv", "matmul"]


def test_model_text_per_layer_and_host(model_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["estimate", str(model_file), "--per-layer", "--measure-host"]) == 0
    out = capsys.readouterr().out
    assert "energy" in out and "(measured on this CPU with onnxruntime" in out
    assert "conv" in out and "matmul" in out


def test_accelerator_file(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    accelerator = tmp_path / "chip.toml"
    accelerator.write_text('name = "chip"\nmodel = "systolic"\n[parameters]\nrows = 8\ncols = 8\n', encoding="utf-8")
    assert main(["estimate", str(model_file), "--accelerator", str(accelerator), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accelerator"] == "chip"


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"hello, I am text\n", "not a valid ONNX model"),
    (bytes(range(200, 256)) * 20, "not a valid ONNX model"),
])
def test_bad_model_files_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, content, message) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    before = sorted(tmp_path.iterdir())
    assert main(["estimate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nni-capsnas estimate: error:") and message in lines[0]
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_truncated_model_exits_2(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(model_file.read_bytes()[:200])
    assert main(["estimate", str(path)]) == 2
    assert "cut.onnx" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    ([], "give either MODEL.onnx or --chromosome"),
    (["x.onnx", "--chromosome", "y.chr"], "give either MODEL.onnx or --chromosome"),
    (["--chromosome", "missing.chr"], "does not exist"),
])
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["estimate", *argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_accelerator(chromosome_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["estimate", "--chromosome", str(chromosome_file), "--accelerator", "nope"]) == 2
    assert "neither a built-in accelerator" in capsys.readouterr().err

"""The benchmark scripts build their command lines, and the robustness benchmark runs end to end.

Benchmarks take minutes and are not run by the tests; these checks catch what breaks them
before a user does: an import or argument error in any script, and a tiny run of
``space_robustness.py`` (which shares the retraining code of ``e2rnas_vs_darts.py``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_prints_its_help(script: str) -> None:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_space_robustness_retrains_ranks_and_compares(mnist_t10k_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("space_robustness")
    output = tmp_path / "robustness.json"
    skip = {"feature_op": "skip", "primary_caps": 4, "primary_dim": 4, "capsule_op": "skip", "routing_iterations": 1}
    code = module.main(["--data-root", str(mnist_t10k_dir), "--seeds", "2", "--first-seed", "3",
                        "--retrain-train", "128", "--retrain-epochs", "1", "--eval-samples", "40", "--pgd-steps", "2",
                        "--threads", "1", "--architecture", json.dumps(skip), "--reference",
                        json.dumps(module.E2RNAS_EXPORT), "--output", str(output), "--plot",
                        str(tmp_path / "pgd.png")])
    assert code == 0
    assert (tmp_path / "pgd.png").read_bytes().startswith(b"\x89PNG")
    records = json.loads(output.read_text())["records"]
    # the given architecture, then the reference appended to the list
    assert [r["architecture"] for r in records] == [skip, module.E2RNAS_EXPORT]
    for record in records:
        assert record["seeds"] == [3, 4]
        for key in ("clean", "fgsm", "pgd"):
            assert len(record[key]) == 2 and all(0 <= value <= 1 for value in record[key])
        # an attack can only lower the accuracy on the same images
        assert all(p <= c for p, c in zip(record["pgd"], record["clean"]))
    assert records[1]["params"] == 65216  # the E2RNAS export's size, as in docs/e2rnas.md
    printed = capsys.readouterr().out
    assert "gain" in printed and "max_pool5x5, 4x4, skip, 1" in printed and "skip, 4x4, skip, 1" in printed
    # the reference's own gain is zero
    reference_row = next(line for line in printed.splitlines() if line.startswith("max_pool5x5, 4x4, skip, 1"))
    assert "+0.00" in reference_row


def test_space_robustness_names_a_bad_architecture(mnist_t10k_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("space_robustness")
    bad = {**module.E2RNAS_EXPORT, "feature_op": "conv7x7"}
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--data-root", str(mnist_t10k_dir), "--seeds", "1", "--retrain-train", "64",
                     "--retrain-epochs", "1", "--eval-samples", "10", "--architecture", json.dumps(bad)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "cannot build architecture" in error and "conv7x7" in error


def test_paired_gemm_ratio_is_the_step_against_the_gemm_around_it() -> None:
    import torch

    module = _load("capsnet_speed")
    a, b, out = torch.randn(256, 256), torch.randn(256, 256), torch.empty(256, 256)
    steps = []

    def step() -> None:  # the same work as the reference GEMM: a ratio of about 1 on any machine
        steps.append(torch.mm(a, b, out=out))

    ratios = module._paired_gemm_ratios(step, step_flops=2 * 256 ** 3, repeats=5, size=256)
    assert len(steps) == 5 and len(ratios) == 5
    assert 0.2 < sorted(ratios)[2] < 5

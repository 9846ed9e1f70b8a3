"""The benchmark scripts build their command lines, and the robustness benchmark runs end to end.

Benchmarks take minutes and are not run by the tests; these checks catch what breaks them
before a user does: an import or argument error in any script, and tiny runs of
``space_robustness.py`` (which shares the retraining code of ``e2rnas_vs_darts.py``) and of
``supernet_robustness.py`` (which runs that benchmark's search).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
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
    module = _load("capsnet_speed")
    a, b, out = torch.randn(256, 256), torch.randn(256, 256), torch.empty(256, 256)
    steps = []

    def step() -> None:  # the same work as the reference GEMM: a ratio of about 1 on any machine
        steps.append(torch.mm(a, b, out=out))

    ratios = module._paired_gemm_ratios(step, step_flops=2 * 256 ** 3, repeats=5, size=256)
    assert len(steps) == 5 and len(ratios) == 5
    assert 0.2 < sorted(ratios)[2] < 5


def test_forcing_a_sub_network_makes_its_choice_one_hot_and_restores_the_parameters() -> None:
    module = _load("supernet_robustness")
    parameters = {"op": torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1])), "size": torch.nn.Parameter(torch.zeros(2))}
    before = {label: p.detach().clone() for label, p in parameters.items()}
    with module.forced(parameters, {"op": 1}):
        assert torch.equal(torch.softmax(parameters["op"], 0), torch.tensor([0.0, 1.0, 0.0]))
        assert torch.equal(parameters["size"], before["size"])  # labels not forced are untouched
    assert all(torch.equal(parameters[label], before[label]) for label in parameters)
    with pytest.raises(RuntimeError, match="boom"):
        with module.forced(parameters, {"op": 2, "size": 0}):
            raise RuntimeError("boom")
    assert all(torch.equal(parameters[label], before[label]) for label in parameters)  # restored after an error too


def test_supernet_robustness_attacks_every_candidate_of_a_label(mnist_t10k_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("supernet_robustness")
    output = tmp_path / "supernet.json"
    code = module.main(["--data-root", str(mnist_t10k_dir), "--search-train", "128", "--search-val", "128",
                        "--search-epochs", "1", "--eval-samples", "30", "--pgd-steps", "2", "--threads", "1",
                        "--labels", "feature_op", "primary_caps", "--output", str(output)])
    assert code == 0
    result = json.loads(output.read_text())
    rows = result["rows"]
    from search_spaces.capsule_cell_space import FEATURE_OPS

    assert [r["value"] for r in rows if r["label"] == "feature_op"] == list(FEATURE_OPS)
    assert [r["value"] for r in rows if r["label"] == "primary_caps"] == [4, 8]
    for row in rows:
        assert 0 <= row["pgd"] <= row["clean"] <= 1  # an attack can only lower the accuracy
    # forcing the exported value of a label reproduces the export itself: same row for both labels
    exported = result["architecture"]
    same = [r for r in rows if r["value"] == exported[r["label"]]]
    assert len(same) == 2 and same[0]["clean"] == same[1]["clean"] and same[0]["pgd"] == same[1]["pgd"]
    printed = capsys.readouterr().out
    assert "darts supernet after 1 search epochs" in printed and "max_pool5x5" in printed


def test_supernet_robustness_names_an_unknown_label(mnist_t10k_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("supernet_robustness")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--data-root", str(mnist_t10k_dir), "--search-train", "64", "--search-val", "64",
                     "--search-epochs", "1", "--eval-samples", "10", "--threads", "1", "--labels", "stem_width"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "stem_width" in error and "feature_op" in error


def test_space_robustness_names_the_whole_training_split_when_retraining_on_all_of_it() -> None:
    module = _load("space_robustness")
    args = module.argparse.Namespace(retrain_epochs=4, retrain_train=0, first_seed=0, seeds=5, eval_samples=1000,
                                     epsilon=0.1, pgd_steps=10)
    header = module.table([], None, args).splitlines()[0]
    assert "4 epochs on all training images" in header and "on 0 images" not in header


def test_estimator_graphs_compares_both_exports_and_the_int8_graph(capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("estimator_graphs")
    assert module.main(["--size", "32", "--runs", "1", "--networks", "resnet18", "--threads", "1"]) == 0
    tables: list[list[dict[str, str]]] = []
    for line in capsys.readouterr().out.splitlines():
        cells = line.split()
        if cells[:2] == ["network", "exporter"]:
            tables.append([])
            header = cells
        elif tables and cells and cells[0] == "resnet18":
            tables[-1].append(dict(zip(header, cells)))
    exports, quantized = tables
    assert [row["exporter"] for row in exports] == ["torchscript", "dynamo"]
    for row in exports:
        assert float(row["macs/flop_counter"]) == pytest.approx(1, abs=0.01) and row["unknown_ops"] == "0"
        for column in ("dsystolic_mj", "dsystolic_ms", "dcapsacc_mj", "dcapsacc_ms"):
            assert abs(float(row[column].rstrip("%"))) < 2
    (int8,) = quantized
    assert int8["exporter"] == "int8_qdq" and int8["unknown_ops"] == "0"
    assert float(int8["systolic_int8/float"]) <= 0.5 and float(int8["macs/flop_counter"]) == pytest.approx(1, abs=0.01)


def test_the_plain_capsnet_baseline_is_sabours_network_as_ours_computes_it() -> None:
    """capsnet_speed.py --device cuda compares like with like: with our weights the plain CapsNet
    (einsum votes, autograd routing) gives our class capsules, reconstruction and loss."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    from _plain_capsnet import PlainCapsNet

    from search_spaces.reference import capsnet
    from trials.losses import ClassificationLoss

    torch.manual_seed(0)
    ours, plain = capsnet((1, 28, 28), 10), PlainCapsNet()
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in ours.parameters())
    with torch.no_grad():
        plain.conv1.load_state_dict(ours.conv1.state_dict())
        plain.primary.load_state_dict(ours.primary.conv.state_dict())
        # ours: (in_caps, in_dim, out_caps * out_dim); plain: (in_caps, out_caps, out_dim, in_dim)
        plain.weight.copy_(ours.class_caps.weight.view(1152, 8, 10, 16).permute(0, 2, 3, 1))
        linear = [m for m in plain.decoder if isinstance(m, torch.nn.Linear)]
        for mine, theirs in zip([m for m in ours.decoder.modules() if isinstance(m, torch.nn.Linear)], linear):
            theirs.load_state_dict(mine.state_dict())
    images, labels = torch.rand(3, 1, 28, 28), torch.tensor([1, 7, 3])
    criterion = ClassificationLoss()
    theirs, mine = plain(images), ours(images)
    torch.testing.assert_close(theirs, mine, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(criterion(theirs, labels, images, plain.decoder),
                               criterion(mine, labels, images, ours.decoder), rtol=1e-4, atol=1e-6)


def test_the_ablation_verdict_says_whether_the_adversarial_objective_changed_the_outcome() -> None:
    module = _load("e2rnas_vs_darts")

    def result(feature_op: str, pgd_runs: list[float]) -> object:
        found = module.Result("e2rnas", {"feature_op": feature_op}, [], [], 0.0, pgd_runs=pgd_runs)
        found.pgd_accuracy = sum(pgd_runs) / len(pgd_runs)
        return found

    full = result("max_pool5x5", [0.36, 0.38, 0.35, 0.37])
    assert "the same export" in module._ablation_verdict(full, result("max_pool5x5", full.pgd_runs))
    assert "does NOT change the outcome" in module._ablation_verdict(full, result("max_pool5x5", full.pgd_runs))
    beyond = module._ablation_verdict(full, result("skip", [0.25, 0.27, 0.26, 0.24]))
    assert "CHANGES the outcome (export and PGD beyond the standard error)" in beyond and "+11.00" in beyond
    within = module._ablation_verdict(full, result("max_pool3x3", [0.35, 0.39, 0.36, 0.37]))
    assert "CHANGES the outcome (export only; PGD within the standard error)" in within


def test_the_gradient_cosines_of_the_last_epoch_skip_steps_without_a_gradient() -> None:
    module = _load("e2rnas_vs_darts")
    Record = module.argparse.Namespace
    records = [Record(epoch=0, cosines={"op": -1.0}), Record(epoch=1, cosines={"op": 0.5}),
               Record(epoch=1, cosines={"op": float("nan")}), Record(epoch=1, cosines={"op": 1.0})]
    assert module.last_epoch_cosines(records) == {"op": 0.75}


def test_real_search_scores_each_run_in_one_box_and_a_dominating_front_scores_higher() -> None:
    module = _load("real_search")

    def run(variant: str, rows: list[tuple[float, float, float]]) -> dict[str, object]:
        return {"variant": variant, "seed": 0, "trained": len(rows), "epochs": len(rows), "train_seconds": 1.0,
                "seconds": 1.0, "rows": [{"accuracy": a, "energy_mj": e, "latency_ms": t} for a, e, t in rows]}

    worse = [(0.90, 1.0, 1.0), (0.95, 2.0, 2.0), (0.80, 3.0, 3.0)]  # the last one is dominated
    better = [(a + 0.02, e / 2, t / 2) for a, e, t in worse]
    frame = module.score([run("plain", worse), run("surrogate", better), run("failed", [])]).set_index("variant")
    assert frame.loc["plain", "front"] == 2 and frame.loc["surrogate", "front"] == 2
    assert 0 < frame.loc["plain", "hypervolume"] < frame.loc["surrogate", "hypervolume"] <= 1
    assert frame.loc["failed", "hypervolume"] == 0 and frame.loc["failed", "front"] == 0

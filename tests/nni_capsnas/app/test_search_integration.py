"""A real NNI experiment: NSGA2 over a tiny capsule space on digits, local training service.

Two concurrent trials, the web UI's REST API (through ``nni-capsnas view``), the report,
and stop + resume keeping every finished trial.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch

from nni_capsnas.app.config import parse_config
from nni_capsnas.nni_compat.experiment_db import locate_experiment, read_trials
from nni_capsnas.app.commands import retrain
from nni_capsnas.app.commands.demo import retrain_arguments
from nni_capsnas.app.report import write_report
from nni_capsnas.app.search_runner import resume_search, run_search

METRIC_KEYS = {"default", "accuracy", "energy_mj", "latency_ms", "memory_kib", "params", "host_latency_ms"}
TINY_SPACE = {"stem_channels": [8, 16], "primary_caps": [2, 4], "primary_dim": [4], "primary_kernel": [3],
              "iterations": [1, 2], "decoder": False}


def _config(workdir: Path, port: int, max_trials: int) -> dict:
    return {
        "experiment": {"max_trials": max_trials, "trial_concurrency": 2, "port": port, "workdir": str(workdir)},
        "dataset": {"name": "digits"},
        "space": {"name": "capsnet", "options": TINY_SPACE},
        "training": {"epochs": 1},
        "strategy": {"name": "nsga2", "population_size": 2, "offspring_size": 2, "seed": 3},
    }


def _read_until(process: subprocess.Popen, prefix: str, max_lines: int = 200) -> str:
    """The first line of ``process``'s output that starts with ``prefix``."""
    for _ in range(max_lines):
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    return f"no line starting with {prefix!r} (exit status {process.poll()})"


def _rest_metrics(experiment_id: str, workdir: Path, port: int) -> list[dict]:
    """Final metric dicts served by NNI's REST API of ``nni-capsnas view``."""
    viewer = subprocess.Popen([sys.executable, "-m", "nni_capsnas", "view", experiment_id, "--workdir",
                               str(workdir), "--port", str(port), "--seconds", "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = _read_until(viewer, "web UI: ")
        assert banner.startswith("web UI: http://127.0.0.1:"), banner
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/metric-data", timeout=5) as reply:
                    rows = json.load(reply)
                if rows:
                    return [json.loads(json.loads(r["data"])) for r in rows if r["type"] == "FINAL"]
            except OSError:
                time.sleep(1)
        pytest.fail("the web UI's REST API did not answer within 60 s")
    finally:
        viewer.terminate()
        viewer.wait(timeout=60)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the viewer left its web server running"


def _wait_for_successes(database: Path, count: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        if database.is_file():
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                done = connection.execute(
                    "SELECT COUNT(*) FROM TrialJobEvent WHERE event = 'SUCCEEDED'").fetchone()[0]
            if done >= count:
                return
        time.sleep(1)
    pytest.fail(f"fewer than {count} trials succeeded within {timeout} s")


@pytest.mark.timeout(900)
def test_nsga2_search_reports_every_metric(tmp_path: Path, free_port: int, isolated_nni: Path) -> None:
    outcome = run_search(parse_config(_config(tmp_path, free_port, max_trials=2)))
    assert outcome.statuses == {"SUCCEEDED": 2} and not outcome.interrupted
    assert outcome.front_size >= 1

    for name in ["trials.csv", "pareto_front.csv", "summary.md", "pareto_energy_mj.png",
                 "pareto_latency_ms.png", "pareto_memory_kib.png"]:
        assert (outcome.report_dir / name).stat().st_size > 0, name
    trials = pd.read_csv(outcome.report_dir / "trials.csv")
    assert set(trials.columns) >= METRIC_KEYS
    where = "cuda:0" if torch.cuda.is_available() else "cpu"  # training.device = "auto"
    assert set(trials["device"]) == {where}  # a string beside the metrics: NNI's database keeps it

    # the report's front is the strategy's own: same objectives and constraints (the search's saved ones)
    front = pd.read_csv(outcome.report_dir / "pareto_front.csv")
    arch_columns = [c for c in front.columns if c.startswith("arch/")]
    reported = {tuple(str(v) for v in row) for row in front[arch_columns].itertuples(index=False)}
    logged = {tuple(str(member["sample"][c[len("arch/"):]]) for c in arch_columns) for member in outcome.strategy_front}
    assert reported == logged and len(logged) == outcome.front_size
    folder = locate_experiment(outcome.experiment_id, tmp_path)
    best = write_report(folder, tmp_path / "accuracy-only", objectives={"accuracy": "max"}).front  # flags override
    assert set(best["accuracy"]) == {read_trials(folder)["accuracy"].max()}
    assert write_report(folder, tmp_path / "impossible", constraints={"energy_mj": 1e-12}).front.empty

    # the demo's retraining step, on this search: the most accurate front member, one more epoch
    assert retrain.run(retrain_arguments(outcome.experiment_id, tmp_path, top_k=1, epochs=1)) == 0
    retrained = pd.read_csv(folder.path / "retrain.csv")
    assert len(retrained) == 1 and 0 <= retrained["retrained_accuracy"].iloc[0] <= 1

    metrics = _rest_metrics(outcome.experiment_id, tmp_path, free_port)
    assert len(metrics) == 2
    for metric in metrics:
        assert set(metric) >= METRIC_KEYS
        assert metric["default"] == metric["accuracy"]
        assert metric["device"] == where  # and its REST API serves it


@pytest.mark.timeout(900)
def test_stopped_search_resumes_keeping_finished_trials(tmp_path: Path, free_port: int,
                                                       isolated_nni: Path) -> None:
    config_path = tmp_path / "search.json"
    config_path.write_text(json.dumps(_config(tmp_path, free_port, max_trials=6)))
    yaml_path = tmp_path / "search.yaml"
    yaml_path.write_text(__import__("yaml").safe_dump(json.loads(config_path.read_text())))
    # Ctrl-C as from a terminal: a child inherits an ignored SIGINT, and Python then keeps ignoring it
    driver = subprocess.Popen([sys.executable, "-m", "nni_capsnas", "search", "--config", str(yaml_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    banner = _read_until(driver, "web UI: ")
    assert banner.startswith("web UI: http://127.0.0.1:"), banner
    experiment_id = banner.split("experiment ")[1].rstrip(")\n")
    _wait_for_successes(tmp_path / experiment_id / "db" / "nni.sqlite", 2, driver, timeout=400)
    driver.send_signal(signal.SIGINT)
    output = driver.communicate(timeout=300)[0]
    assert "interrupted: continue with" in output, output
    folder = locate_experiment(experiment_id, tmp_path)
    before = read_trials(folder)
    finished = before[before["status"] == "SUCCEEDED"]
    assert len(finished) >= 2

    resumed = resume_search(experiment_id, workdir=str(tmp_path), report_dir=tmp_path / "report-after-resume")
    after = read_trials(folder).set_index("trial_id")
    for row in finished.to_dict("records"):
        assert after.loc[row["trial_id"], "status"] == "SUCCEEDED"
        assert after.loc[row["trial_id"], "accuracy"] == pytest.approx(row["accuracy"])
        assert after.loc[row["trial_id"], "energy_mj"] == pytest.approx(row["energy_mj"])
    succeeded = after[after["status"] == "SUCCEEDED"]
    assert len(succeeded) > len(finished), "the resumed search trained nothing new"
    architectures = succeeded[[c for c in after.columns if c.startswith("arch/")]].astype(str).agg("|".join, axis=1)
    assert architectures.is_unique, "an architecture was trained twice"
    assert resumed.report_dir is not None and (resumed.report_dir / "pareto_front.csv").is_file()

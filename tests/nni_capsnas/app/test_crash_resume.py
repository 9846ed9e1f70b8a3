"""Crash drill: a search whose driver is killed with SIGKILL, resumed with ``nni-capsnas resume``.

One real NNI experiment (NSGA2, a 16-architecture CapsNet space, digits, 1 epoch, 2 trials at a
time) runs in a subprocess. While it runs, the test watches its checkpoint grow generation by
generation and checks that a resume is refused. It then SIGKILLs the driver once the first
generation is checkpointed and the second one trains -- NNI's manager and trials keep running,
orphaned -- and resumes with the command line, which stops them. During the resume it SIGKILLs
one trial process in the middle of its training. Separate tests then check what the drill
left: finished trials and their metrics intact, no architecture trained twice, the budget
completed, the killed trial failed and the search went on, nothing left running.

The resume refusals (missing or corrupt files, changed configuration or space) run on copies
of the drill's finished experiment folder and check that no file changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pandas as pd
import psutil
import pytest
import torch
import yaml

from nni_capsnas.app.cli import main
from nni_capsnas.nni_compat.experiment_db import locate_experiment, read_trials

MAX_TRIALS = 7
SPACE = {"stem_channels": [8, 16], "primary_caps": [2, 4], "primary_dim": [4], "primary_kernel": [3, 5],
         "iterations": [1, 2], "decoder": False}  # 16 architectures
METRICS = ["default", "accuracy", "energy_mj", "latency_ms", "memory_kib", "params"]
TRIAL_MODULE = "nni.nas.execution.training_service"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _experiment_processes(experiment_id: str) -> list[psutil.Process]:
    """Every process of the experiment: NNI managers (by command line) and trials (by environment)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            command = process.info["cmdline"] or []
            if experiment_id in command or process.environ().get("NNI_EXP_ID") == experiment_id:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has already exited)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _trial_processes(experiment_id: str) -> list[psutil.Process]:
    # the command line process_iter already read: None (not an error) for a zombie or a denied read
    return [p for p in _experiment_processes(experiment_id)
            if any(TRIAL_MODULE in part for part in p.info["cmdline"] or [])]


def _archive_size(checkpoint: Path) -> Optional[tuple[int, int]]:
    """(archive length, generation) of the saved strategy state, if there is one."""
    path = checkpoint / "state.ckpt.torch"
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=True)  # written atomically: never half a file
    return len(state["strategy"]["archive"]), int(state["strategy"]["generation"])


def _succeeded(folder: Path) -> int:
    if not (folder / "db" / "nni.sqlite").is_file():
        return 0
    trials = read_trials(locate_experiment(folder.name, folder.parent))
    return int((trials["status"] == "SUCCEEDED").sum()) if "status" in trials else 0


@dataclasses.dataclass
class Drill:
    """What the crash drill observed."""

    root: Path
    experiment_id: str
    port: int
    checkpoints: list[tuple[int, int]]  # (archive length, generation) seen while the driver ran
    resumed_checkpoints: list[tuple[int, int]]  # the same while the resumed search ran
    refused_while_running: subprocess.CompletedProcess
    orphans_after_kill: list[int]
    finished_at_kill: pd.DataFrame
    killed_trial: Optional[str]
    killed_at: float
    resume: subprocess.CompletedProcess
    after: pd.DataFrame

    @property
    def folder(self) -> Path:
        return self.root / self.experiment_id


def _kill_all(groups: list[int], experiment_id: Optional[str]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if experiment_id:
        leftovers = _experiment_processes(experiment_id)
        for process in leftovers:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(leftovers, timeout=30)


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    root = tmp_path_factory.mktemp("crash-drill")
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    config = root / "search.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": {"max_trials": MAX_TRIALS, "trial_concurrency": 2, "port": port, "workdir": str(root)},
        "dataset": {"name": "digits"},
        "space": {"name": "capsnet", "options": SPACE},
        "training": {"epochs": 1},
        "hardware": {"measure_host": False},
        "strategy": {"name": "nsga2", "population_size": 2, "offspring_size": 2, "seed": 5},
    }))
    command = [sys.executable, "-m", "nni_capsnas"]
    groups: list[int] = []
    experiment_id: Optional[str] = None
    try:
        driver_log = root / "driver.log"
        with driver_log.open("w") as log:  # a file, not a pipe: a full pipe would block the driver
            driver = subprocess.Popen([*command, "search", "--config", str(config)], env=env, cwd=root,
                                      stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        groups.append(driver.pid)
        banner = ""
        for _ in range(600):
            banner = next((line for line in driver_log.read_text().splitlines() if line.startswith("web UI: ")), "")
            if banner or driver.poll() is not None:
                break
            time.sleep(0.2)
        assert banner.startswith(f"web UI: http://127.0.0.1:{port}"), driver_log.read_text()
        experiment_id = banner.split("experiment ")[1].rstrip(")")
        folder = root / experiment_id

        manager_log = folder / "log" / "nnimanager.log"

        def training(known: set[str]) -> list[tuple[psutil.Process, str]]:
            """Trial processes (not in ``known``) that NNI has handed their architecture to."""
            handed_out = manager_log.read_text(errors="replace") if manager_log.is_file() else ""
            found = []
            for process in _trial_processes(experiment_id):
                try:
                    trial_id = process.environ().get("NNI_TRIAL_JOB_ID", "")
                except psutil.Error:
                    continue
                if trial_id not in known and f"Trial parameter: {trial_id} " in handed_out:
                    found.append((process, trial_id))
            return found

        # 1. The checkpoint grows while the search runs; a resume is refused meanwhile.
        checkpoints: list[tuple[int, int]] = []
        refused = None
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            assert driver.poll() is None, f"the search ended early:\n{driver_log.read_text()[-3000:]}"
            seen = _archive_size(folder / "checkpoint")
            if seen is not None and (not checkpoints or seen != checkpoints[-1]):
                checkpoints.append(seen)
            if refused is None and seen is not None:
                refused = subprocess.run([*command, "resume", experiment_id, "--workdir", str(root)], env=env,
                                         capture_output=True, text=True, timeout=120)
            if seen is not None and seen[0] >= 2 and training(set()):
                break  # the first generation is checkpointed, the second one is training
            time.sleep(0.5)
        else:
            pytest.fail(f"the search did not reach its second generation in time: checkpoints {checkpoints}")
        assert refused is not None

        # 2. Crash: SIGKILL the driver. Its NNI manager and trials keep running, orphaned.
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        time.sleep(1)
        orphans = [p.pid for p in _experiment_processes(experiment_id)]
        finished = read_trials(locate_experiment(experiment_id, root))
        finished = finished[finished["status"] == "SUCCEEDED"]

        # 3. Resume; SIGKILL one trial it starts, once it has its architecture and trains. (NNI 3.0
        #    hands architectures to trials in the order they ask: a trial killed before asking
        #    would make every later trial train its neighbour's architecture.)
        known = set(read_trials(locate_experiment(experiment_id, root))["trial_id"])
        resume_log = root / "resume.log"
        with resume_log.open("w") as log:
            resume = subprocess.Popen([*command, "resume", experiment_id, "--workdir", str(root)], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        groups.append(resume.pid)
        killed_trial, killed_at = None, 0.0
        resumed_checkpoints: list[tuple[int, int]] = []
        deadline = time.monotonic() + 400
        while resume.poll() is None and time.monotonic() < deadline:
            seen = _archive_size(folder / "checkpoint")
            if seen is not None and (not resumed_checkpoints or seen != resumed_checkpoints[-1]):
                resumed_checkpoints.append(seen)
            victims = training(known) if killed_trial is None else []
            if victims:
                process, trial_id = victims[0]
                time.sleep(1.0)  # in the middle of its (one-epoch) training
                try:
                    process.send_signal(signal.SIGKILL)
                    killed_trial, killed_at = trial_id, time.time()
                except psutil.Error:
                    pass
            time.sleep(0.3)
        resume.wait(timeout=max(30.0, deadline - time.monotonic()))
        resumed = subprocess.CompletedProcess(resume.args, resume.returncode, resume_log.read_text(), "")
        after = read_trials(locate_experiment(experiment_id, root))
        yield Drill(root, experiment_id, port, checkpoints, resumed_checkpoints, refused, orphans, finished,
                    killed_trial, killed_at, resumed, after)
    finally:
        _kill_all(groups, experiment_id)


# --- the drill ------------------------------------------------------------------------------------------


def test_checkpoint_grows_generation_by_generation_while_the_search_runs(drill: Drill) -> None:
    for seen in (drill.checkpoints, drill.resumed_checkpoints):
        sizes = [size for size, _ in seen]
        generations = [generation for _, generation in seen]
        assert sizes == sorted(sizes) and generations == sorted(generations), seen
    assert len(drill.checkpoints) >= 2 and drill.checkpoints[-1][0] >= 2, drill.checkpoints
    assert len(drill.resumed_checkpoints) >= 2, drill.resumed_checkpoints
    assert drill.resumed_checkpoints[-1][0] > drill.checkpoints[-1][0], (drill.checkpoints, drill.resumed_checkpoints)
    assert not list((drill.folder / "checkpoint").glob(".*tmp*")), "a temporary checkpoint file was left"


def test_resume_is_refused_while_the_driver_runs(drill: Drill) -> None:
    refused = drill.refused_while_running
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "is still running (driver process" in lines[0], refused.stderr


def test_a_killed_driver_leaves_its_nni_manager_running_and_resume_stops_it(drill: Drill) -> None:
    assert drill.orphans_after_kill, "expected the orphaned NNI manager to survive its driver"
    assert "stopped" in drill.resume.stdout and "left running" in drill.resume.stdout, drill.resume.stdout
    assert not any(_alive(pid) for pid in drill.orphans_after_kill)


def test_resumed_search_completes_its_budget(drill: Drill) -> None:
    assert drill.resume.returncode == 0, drill.resume.stdout[-3000:]
    assert "interrupted: continue with" not in drill.resume.stdout
    assert len(drill.after) == MAX_TRIALS, drill.after[["trial_id", "status"]]
    unsuccessful = set(drill.after.loc[drill.after["status"] != "SUCCEEDED", "trial_id"])
    assert unsuccessful == {drill.killed_trial}, drill.after[["trial_id", "status"]]
    assert (drill.folder / "report" / "pareto_front.csv").is_file()


def test_every_trial_finished_before_the_crash_keeps_all_its_metrics(drill: Drill) -> None:
    assert len(drill.finished_at_kill) >= 2
    after = drill.after.set_index("trial_id")
    for row in drill.finished_at_kill.to_dict("records"):
        assert after.loc[row["trial_id"], "status"] == "SUCCEEDED"
        for key in METRICS:
            assert after.loc[row["trial_id"], key] == pytest.approx(row[key]), (row["trial_id"], key)
        for key in (k for k in row if k.startswith("arch/")):
            assert after.loc[row["trial_id"], key] == row[key]


def test_no_architecture_is_trained_twice(drill: Drill) -> None:
    succeeded = drill.after[drill.after["status"] == "SUCCEEDED"]
    columns = sorted(c for c in drill.after.columns if c.startswith("arch/"))
    assert len(columns) == len(SPACE) - 1  # every searched label
    architectures = succeeded[columns].astype(str).agg("|".join, axis=1)
    assert architectures.is_unique, succeeded[["trial_id", *columns]]


def test_a_trial_killed_mid_training_fails_and_the_search_goes_on(drill: Drill) -> None:
    assert drill.killed_trial is not None, "no trial of the resumed search was seen running"
    after = drill.after.set_index("trial_id")
    # NNI's local training service records a trial killed by a signal as USER_CANCELED.
    assert after.loc[drill.killed_trial, "status"] in ("FAILED", "USER_CANCELED")
    assert pd.isna(after.loc[drill.killed_trial].get("accuracy")), "the killed trial reported a final metric"
    assert f"failed trial {drill.killed_trial}" in drill.resume.stdout, drill.resume.stdout[-2000:]
    assert "trial failed (trial ended with status failed" in drill.resume.stdout
    started_later = [row for row in drill.after.to_dict("records") if row["trial_id"] != drill.killed_trial
                     and row["status"] == "SUCCEEDED" and _start_time(drill, row["trial_id"]) > drill.killed_at]
    assert started_later, "no trial ran after the killed one"


def test_every_trial_trains_the_architecture_nni_records_for_it(drill: Drill) -> None:
    """NNI 3.0 alone hands architectures to trials in the order they ask (nni_capsnas/nni_compat/node/bind_parameters.js)."""
    import sqlite3

    with sqlite3.connect(f"file:{drill.folder / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as connection:
        recorded = {trial: json.loads(data)["parameter_id"] for trial, data in connection.execute(
            "SELECT trialJobId, data FROM TrialJobEvent WHERE data IS NOT NULL AND data != ''")}
        trained = connection.execute("SELECT trialJobId, parameterId FROM MetricData WHERE type = 'FINAL'").fetchall()
    assert len(trained) >= MAX_TRIALS - 1
    assert [(trial, int(parameter)) for trial, parameter in trained if int(parameter) != recorded[trial]] == []


def test_nothing_is_left_running(drill: Drill) -> None:
    assert _experiment_processes(drill.experiment_id) == []
    assert not _port_in_use(drill.port)


def _start_time(drill: Drill, trial_id: str) -> float:
    """When NNI started a trial (seconds since the epoch), from its database."""
    import sqlite3

    with sqlite3.connect(f"file:{drill.folder / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as connection:
        (stamp,) = connection.execute("SELECT MAX(timestamp) FROM TrialJobEvent WHERE trialJobId = ? AND "
                                      "event = 'RUNNING'", (trial_id,)).fetchone()
    return stamp / 1000


# --- resumes that cannot proceed -------------------------------------------------------------------------


def _hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture()
def copy(drill: Drill, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the drill's finished experiment folder, in a workdir of its own."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = tmp_path / "work" / drill.experiment_id
    shutil.copytree(drill.folder, target, symlinks=True)
    return target


def _refused(copy: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    """Run ``nni-capsnas resume`` on ``copy``; assert exit 2, one line and no file changed; return the line."""
    before = _hashes(copy.parent)
    status = main(["resume", copy.name, "--workdir", str(copy.parent), "--port", str(_free_port()), *extra])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.out + captured.err
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("nni-capsnas resume: error: "), captured
    assert _hashes(copy.parent) == before, "a refused resume changed files"
    assert not (copy.parent.parent / "home" / "nni-experiments").exists(), "a refused resume wrote NNI's manifest"
    return lines[0]


def test_refused_without_checkpoint_folder(copy: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.rmtree(copy / "checkpoint")
    assert "checkpoint is missing" in _refused(copy, capsys)


@pytest.mark.parametrize("damage", [lambda data: data[: len(data) // 2], lambda data: b"\x00" * len(data),
                                    lambda data: b"not a checkpoint"])
def test_refused_with_corrupt_strategy_state(copy: Path, capsys: pytest.CaptureFixture, damage: Any) -> None:
    state = copy / "checkpoint" / "state.ckpt.torch"
    state.write_bytes(damage(state.read_bytes()))
    line = _refused(copy, capsys)
    assert "state.ckpt.torch is corrupt" in line and "state.ckpt.torch.bak" in line


def test_refused_without_strategy_state(copy: Path, capsys: pytest.CaptureFixture) -> None:
    (copy / "checkpoint" / "state.ckpt.torch").unlink()
    assert "no saved strategy state" in _refused(copy, capsys)


def test_refused_with_corrupt_nni_checkpoint_config(copy: Path, capsys: pytest.CaptureFixture) -> None:
    (copy / "checkpoint" / "config.json").write_text('{"experimentName": ', encoding="utf-8")
    assert "config.json is corrupt" in _refused(copy, capsys)


def test_refused_without_search_config(copy: Path, capsys: pytest.CaptureFixture) -> None:
    (copy / "nni-capsnas-config.json").unlink()
    assert "nni-capsnas-config.json is missing" in _refused(copy, capsys)


def test_refused_with_corrupt_search_config(copy: Path, capsys: pytest.CaptureFixture) -> None:
    path = copy / "nni-capsnas-config.json"
    path.write_bytes(path.read_bytes()[:40])
    assert "nni-capsnas-config.json is corrupt" in _refused(copy, capsys)


def test_refused_when_the_config_changes_the_space(copy: Path, capsys: pytest.CaptureFixture) -> None:
    path = copy / "nni-capsnas-config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["space"]["options"]["stem_channels"] = [8, 16, 32]
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    line = _refused(copy, capsys)
    assert "space.options changed since the search started" in line and "start a new search" in line


def test_refused_when_the_space_code_changed(copy: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Same configuration, but the space code now builds another space (e.g. a new release)."""
    from nni_capsnas.app import search_runner

    build_space = search_runner.build_space

    def other_space(config: Any) -> Any:
        config.space.options = {**config.space.options, "iterations": [1, 2, 3]}
        return build_space(config)

    monkeypatch.setattr(search_runner, "build_space", other_space)
    line = _refused(copy, capsys)
    assert "search space" in line and "has changed" in line and "iterations" in line


def test_a_larger_budget_is_a_change_a_resume_accepts(copy: Path) -> None:
    from nni_capsnas.app.resume_guard import check_resumable

    path = copy / "nni-capsnas-config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["experiment"]["max_trials"] = 2 * MAX_TRIALS
    path.write_text(json.dumps(config), encoding="utf-8")
    assert check_resumable(copy).config.experiment.max_trials == 2 * MAX_TRIALS


def test_a_search_from_before_a_config_key_existed_still_resumes(copy: Path) -> None:
    """Identities written before ``training.adversarial*`` existed lack those keys: their defaults held."""
    from nni_capsnas.app.resume_guard import ResumeError, check_resumable

    identity_path, config_path = copy / "nni-capsnas-space.json", copy / "nni-capsnas-config.json"
    identity = json.loads(identity_path.read_text(encoding="utf-8"))
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("adversarial", "adversarial_weight"):
        del identity["config"][f"training.{key}"], config["training"][key]
    identity_path.write_text(json.dumps(identity), encoding="utf-8")
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert check_resumable(copy).config.training.adversarial_weight == 0.5

    config["training"]["adversarial_weight"] = 0.3
    config_path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ResumeError, match="training.adversarial_weight changed since the search started"):
        check_resumable(copy)


def test_refused_for_an_unknown_experiment(copy: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["resume", "nosuchid", "--workdir", str(copy.parent)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "no NNI experiment 'nosuchid'" in lines[0]


# --- the pieces, without NNI --------------------------------------------------------------------------


def test_adopt_trials_keeps_in_flight_architectures_and_forgets_cancelled_ones() -> None:
    """What NNI's database says after a crash, as the strategy reads it on resume and after each generation."""
    from nni.mutable import Categorical

    from nni_capsnas.nni_compat.experiment_db import TrialRecord
    from nni_capsnas.strategy import NSGA2
    from nni_capsnas.strategy.archive import FAILED, RUNNING, TRAINED, Evaluation
    from nni_capsnas.strategy.encoding import SampleCodec

    strategy = NSGA2(population_size=2)
    strategy._codec = SampleCodec({"a": Categorical([1, 2], label="a"), "b": Categorical([3, 4], label="b")})
    metrics = {"default": 0.5, "accuracy": 0.5, "energy_mj": 1.0, "latency_ms": 1.0, "memory_kib": 1.0}
    strategy.archive.record((0, 1), Evaluation({"a": 1, "b": 4}, RUNNING))  # running at the checkpoint
    records = [TrialRecord("resumed", "RUNNING", {"a": 1, "b": 3}),  # NNI runs it again
               TrialRecord("done", "SUCCEEDED", {"a": 2, "b": 3}, metrics),
               TrialRecord("stopped", "USER_CANCELED", {"a": 1, "b": 4}),  # Ctrl-C cancelled it
               TrialRecord("broken", "FAILED", {"a": 2, "b": 4})]
    assert strategy.adopt_trials(records) == 4
    assert strategy.archive[(0, 0)].status == RUNNING  # not proposed again while NNI runs it
    assert strategy.archive[(1, 0)].status == TRAINED and strategy.archive[(1, 0)].metrics == metrics
    assert (0, 1) not in strategy.archive  # may be proposed again
    assert strategy.archive[(1, 1)].status == FAILED
    assert strategy.adopt_trials([TrialRecord("resumed", "SUCCEEDED", {"a": 1, "b": 3}, metrics)]) == 1
    assert strategy.archive[(0, 0)].status == TRAINED
    assert strategy.adopt_trials(records) == 0  # finished verdicts are final


def test_trial_records_follow_the_parameter_a_trial_reported(tmp_path: Path) -> None:
    """A database written by NNI 3.0 without the fix: two trials swapped their architectures."""
    import sqlite3

    from nni_capsnas.nni_compat.experiment_db import ExperimentFolder, read_trial_records

    database = tmp_path / "exp" / "db" / "nni.sqlite"
    database.parent.mkdir(parents=True)
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE TrialJobEvent (timestamp INTEGER, trialJobId TEXT, event TEXT, data TEXT, "
                           "logPath TEXT, sequenceId INTEGER, message TEXT, environmentId TEXT)")
        connection.execute("CREATE TABLE MetricData (timestamp INTEGER, trialJobId TEXT, parameterId TEXT, "
                           "type TEXT, sequence INTEGER, data TEXT)")
        for stamp, (trial, parameter, width) in enumerate([("A", 0, 8), ("B", 1, 16)]):
            data = json.dumps({"parameter_id": parameter, "parameters": {"sample": {"width": width}}})
            connection.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'RUNNING', ?, NULL, ?, NULL, NULL)",
                               (stamp, trial, data, parameter))
            connection.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'SUCCEEDED', '', NULL, ?, NULL, NULL)",
                               (10 + stamp, trial, parameter))
        # A asked second and trained parameter 1 (width 16); B trained parameter 0 (width 8)
        for stamp, (trial, parameter, accuracy) in enumerate([("A", "1", 0.9), ("B", "0", 0.4)]):
            connection.execute("INSERT INTO MetricData VALUES (?, ?, ?, 'FINAL', 0, ?)",
                               (20 + stamp, trial, parameter, json.dumps(json.dumps({"default": accuracy}))))
    records = {r.trial_id: r for r in read_trial_records(ExperimentFolder("exp", tmp_path / "exp"))}
    assert (records["A"].sample, records["A"].metrics["default"]) == ({"width": 16}, 0.9)
    assert (records["B"].sample, records["B"].metrics["default"]) == ({"width": 8}, 0.4)


def test_checkpoint_files_are_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write leaves the previous checkpoint intact and no temporary file behind."""
    from nni.nas.utils.serializer import TorchSerializer

    from nni_capsnas.experiment import CapsNasExperiment

    experiment = CapsNasExperiment.__new__(CapsNasExperiment)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "state.ckpt.torch").write_bytes(b"previous state")
    monkeypatch.setattr(CapsNasExperiment, "_checkpoint_directory", property(lambda self: checkpoint))
    experiment.id, experiment._action, experiment._engine = "x", "create", object()
    experiment.config = type("Config", (), {"json": lambda self: {"experimentName": "x"}})()
    experiment.state_dict = lambda: {"strategy": {"archive": []}}

    def interrupted_save(self: Any, data: Any, path: Path) -> None:
        Path(str(path) + self.suffix).write_bytes(b"half a")
        raise OSError("disk full")

    monkeypatch.setattr(TorchSerializer, "save", interrupted_save)
    experiment.save_checkpoint()  # logs the error, as NNI does
    assert (checkpoint / "state.ckpt.torch").read_bytes() == b"previous state"
    assert json.loads((checkpoint / "config.json").read_text()) == {"experimentName": "x"}
    assert not [p.name for p in checkpoint.iterdir() if ".tmp" in p.name]

    monkeypatch.undo()
    monkeypatch.setattr(CapsNasExperiment, "_checkpoint_directory", property(lambda self: checkpoint))
    experiment.save_checkpoint()
    assert torch.load(checkpoint / "state.ckpt.torch", weights_only=True) == {"strategy": {"archive": []}}
    assert (checkpoint / "state.ckpt.torch.bak").read_bytes() == b"previous state"
    assert sorted(p.name for p in checkpoint.iterdir()) == ["config.json", "state.ckpt.torch", "state.ckpt.torch.bak"]

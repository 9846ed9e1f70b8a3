"""``[training_service]``: validation, the NNI config it becomes, the upload check, error reports.

The real SSH workers run in ``test_remote_workers.py``; these tests need no server.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from nni_capsnas.app.config import ConfigError, parse_config
from nni_capsnas.nni_compat.experiment_db import failure_reason
from nni_capsnas.app.training_service import (UPLOAD_MAX_FILES, WORKER_PYTHON, check_upload, manager_bind_host,
                                          remote_config, startup_failure)

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("not a real key: only its existence is checked before NNI reads it\n")
    return path


def _remote(key_file: Path, **overrides: object) -> dict:
    machine = {"host": "127.0.0.1", "user": "nas", "ssh_key_file": str(key_file), "python_path": "/opt/venv/bin"}
    section = {"platform": "remote", "machines": [machine, dict(machine, port=2222)]}
    section.update(overrides)
    return {"training_service": section}


def test_local_is_the_default_and_remote_round_trips(key_file: Path) -> None:
    local = parse_config({}).training_service
    assert local.platform == "local" and local.machines == [] and local.nni_manager_ip == "127.0.0.1"
    assert local.reuse_mode is False
    config = parse_config(_remote(key_file))
    machines = config.training_service.machines
    assert [(m.host, m.port, m.user, m.python_path) for m in machines] == [
        ("127.0.0.1", 22, "nas", "/opt/venv/bin"), ("127.0.0.1", 2222, "nas", "/opt/venv/bin")]
    assert parse_config(config.to_dict()) == config  # the saved configuration of a search resumes


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(platform="kubernetes"), r"training_service\.platform: unknown platform 'kubernetes'"),
    (lambda s: s.update(reuse_mode=True), r"training_service\.reuse_mode: must be false"),
    (lambda s: s.update(colour=1), r"training_service\.colour: unknown key"),
    (lambda s: s.update(machines=[]), r"training_service\.machines: platform 'remote' needs at least one machine"),
    (lambda s: s.update(machines={"host": "a"}), r"training_service\.machines: expected a list of tables, got dict"),
    (lambda s: s["machines"].append("gpu1"), r"training_service\.machines\[2\]: expected a table of settings"),
    (lambda s: s["machines"][1].pop("ssh_key_file"),
     r"training_service\.machines\[1\]\.ssh_key_file: missing; required keys are host, user, ssh_key_file, "
     r"python_path"),
    (lambda s: s["machines"][1].update(ssh_key_file="/no/such/key"),
     r"training_service\.machines\[1\]\.ssh_key_file: '/no/such/key' is not a file"),
    (lambda s: s["machines"][0].update(ssh_key_file="bad\x00name"),
     r"training_service\.machines\[0\]\.ssh_key_file: 'bad\\x00name' is not a file"),
    (lambda s: s["machines"][1].update(port=70000), r"training_service\.machines\[1\]\.port: must be in 1\.\.65535"),
    (lambda s: s["machines"][0].update(port="22"), r"training_service\.machines\[0\]\.port: expected int, got str"),
    (lambda s: s["machines"][0].update(gpu=True), r"training_service\.machines\[0\]\.gpu: unknown key; expected one "
                                                  r"of host, port, python_path, ssh_key_file, user"),
    (lambda s: s["machines"][0].update(host="gpu 1"), r"training_service\.machines\[0\]\.host: expected a host name"),
    (lambda s: s["machines"][0].update(user=""), r"training_service\.machines\[0\]\.user: expected a user name"),
    (lambda s: s["machines"][0].update(python_path="venv/bin"),
     r"training_service\.machines\[0\]\.python_path: expected the absolute path of the directory"),
    (lambda s: s["machines"][0].update(python_path="/opt/venv/bin/python3.11"),
     r"training_service\.machines\[0\]\.python_path: '/opt/venv/bin/python3\.11' looks like the interpreter itself; "
     r"give its directory \('/opt/venv/bin'\)"),
    (lambda s: s["machines"][1].update(host="gpu1.lab"),
     r"training_service\.nni_manager_ip: '127\.0\.0\.1' is reachable from this machine only, but "
     r"training_service\.machines\[1\]\.host is 'gpu1\.lab'"),
    (lambda s: s.update(nni_manager_ip="http://10.0.0.5"), r"training_service\.nni_manager_ip: expected a host name"),
    (lambda s: s.update(platform="local"), r"training_service\.machines: only used with platform = 'remote'"),
])
def test_bad_training_service_sections_name_the_key(key_file: Path, change, message: str) -> None:
    raw = _remote(key_file)
    change(raw["training_service"])
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_remote_machines_on_other_hosts_need_a_reachable_manager_address(key_file: Path) -> None:
    raw = _remote(key_file, nni_manager_ip="10.0.0.5")
    raw["training_service"]["machines"][1]["host"] = "gpu1.lab"
    assert parse_config(raw).training_service.machines[1].host == "gpu1.lab"


def test_nni_gets_a_remote_config_and_a_trial_command_without_the_drivers_interpreter(
        key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni_capsnas.app.experiment_builder import build_experiment

    monkeypatch.chdir(REPO_ROOT)  # NNI uploads the working directory: the project root
    raw = _remote(key_file, nni_manager_ip="127.0.0.1")
    raw.update(space={"name": "capsnet", "options": {"stem_channels": [8], "decoder": False}},
               experiment={"workdir": str(tmp_path / "experiments")})
    config = parse_config(raw)
    canonical = build_experiment(config).config.canonical_copy()
    service = canonical.training_service
    assert service.platform == "remote" and service.reuse_mode is False and service.nni_manager_ip == "127.0.0.1"
    assert [(m.host, m.port, m.user, m.python_path, m.ssh_key_file) for m in service.machine_list] == [
        ("127.0.0.1", 22, "nas", "/opt/venv/bin", str(key_file)), ("127.0.0.1", 2222, "nas", "/opt/venv/bin",
                                                                   str(key_file))]
    assert canonical.trial_command == f"{WORKER_PYTHON} -m nni.nas.execution.training_service trial"
    assert sys.executable not in canonical.trial_command

    local = build_experiment(parse_config({k: v for k, v in raw.items() if k != "training_service"}))
    assert local.config.canonical_copy().trial_command.startswith(sys.executable)


def test_remote_config_expands_the_key_path(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(key_file.parent))
    raw = _remote(key_file)
    raw["training_service"]["machines"][0]["ssh_key_file"] = "~/id_ed25519"
    nni_config = remote_config(parse_config(raw).training_service)
    assert nni_config.machine_list[0].ssh_key_file == str(key_file)


def test_the_manager_listens_where_workers_reach_it(key_file: Path) -> None:
    assert manager_bind_host(parse_config({})) == "127.0.0.1"
    assert manager_bind_host(parse_config({"experiment": {"host": "192.168.1.4"}})) == "192.168.1.4"
    assert manager_bind_host(parse_config(_remote(key_file))) == "127.0.0.1"  # workers on this machine
    assert manager_bind_host(parse_config(_remote(key_file, nni_manager_ip="10.0.0.5"))) == "0.0.0.0"
    explicit = _remote(key_file, nni_manager_ip="10.0.0.5")
    explicit["experiment"] = {"host": "10.0.0.5"}
    assert manager_bind_host(parse_config(explicit)) == "10.0.0.5"


def test_the_project_root_uploads_only_the_packages() -> None:
    size = check_upload(REPO_ROOT)
    assert size is not None and size.complete and size.files < 500
    assert set(size.top) >= {"nni_capsnas", "search_spaces", "trials", "hw_estimators"}
    assert not {".venv", ".git", "tests", "docs"} & set(size.top)


def test_a_directory_nni_would_refuse_to_upload_is_a_config_error(tmp_path: Path) -> None:
    crowded = tmp_path / "env" / "lib"
    crowded.mkdir(parents=True)
    for index in range(UPLOAD_MAX_FILES + 1):
        (crowded / f"{index}.py").touch()
    (tmp_path / "search.toml").touch()
    expected = (rf"training_service: NNI uploads the working directory {re.escape(str(tmp_path))} to every "
                r"worker, but it holds more than 2000 files after no \.nniignore \(most in env \(\d+ files\)")
    with pytest.raises(ConfigError, match=expected):
        check_upload(tmp_path)
    (tmp_path / ".nniignore").write_text("/env/\n")
    size = check_upload(tmp_path)
    assert size is not None and size.files == 2 and size.complete


MANAGER_LOG = """\
[2026-11-22 02:37:04] INFO (RemoteV3.Worker.2) Installing nni and dependencies...
[2026-11-22 02:37:05] ERROR (RemoteV3.Ssh.2) Command failed: python3 -m pip install nni --upgrade {
  stdout: '',
  stderr: 'error: externally-managed-environment\\n' +
    '\\n',
  code: 1
}
[2026-11-22 02:37:05] INFO (ShutdownManager) Initiate shutdown: training service initialize failed
[2026-11-22 02:37:05] ERROR (TrainingServiceCompat) Training srevice initialize failed: Error: SSH command failed: \
python3 -m pip install nni --upgrade
    at Ssh.run (/x/nni_node/training_service/remote_v3/ssh.js:94:19)
"""


def test_a_worker_that_did_not_start_is_named_with_nnis_reason(key_file: Path, tmp_path: Path) -> None:
    section = parse_config(_remote(key_file)).training_service
    (tmp_path / "nnimanager.log").write_text(MANAGER_LOG)
    message = startup_failure(tmp_path, section)
    assert message.startswith("training_service.machines[1] (nas@127.0.0.1:2222): NNI could not start the remote "
                              "workers: Error: SSH command failed: python3 -m pip install nni --upgrade")
    assert "stderr: error: externally-managed-environment" in message and "\n" not in message

    (tmp_path / "nnimanager.log").write_text(
        "[2026-11-22 02:35:43] INFO (ShutdownManager) Initiate shutdown: training service initialize failed\n"
        "[2026-11-22 02:35:43] ERROR (TrainingServiceCompat) Training srevice initialize failed: Error: connect "
        "ECONNREFUSED 127.0.0.1:2222\n")
    assert startup_failure(tmp_path, section).startswith(
        "training_service.machines[1] (nas@127.0.0.1:2222): NNI could not start the remote workers: Error: connect "
        "ECONNREFUSED 127.0.0.1:2222")
    (tmp_path / "nnimanager.log").write_text("[2026-11-22 02:35:43] INFO (NNIManager) Experiment stopped.\n")
    assert startup_failure(tmp_path, section) is None
    assert startup_failure(tmp_path / "missing", section) is None


def test_remote_failure_reasons_come_from_the_copied_logs(tmp_path: Path) -> None:
    remote = "10.0.0.21:~/nni-experiments/abc/environments/remote-worker1/trials/T1"
    assert failure_reason(remote, copy=tmp_path / "trials" / "T1") == f"see the log on the worker: {remote}"
    copy = tmp_path / "trials" / "T1"
    copy.mkdir(parents=True)
    (copy / "trial.stdout").write_text("")
    (copy / "trial.stderr").write_text("Traceback (most recent call last):\nModuleNotFoundError: No module named "
                                       "'trials'\n")
    assert failure_reason(remote, copy=copy) == "ModuleNotFoundError: No module named 'trials'"
    assert failure_reason(None) == "no log"

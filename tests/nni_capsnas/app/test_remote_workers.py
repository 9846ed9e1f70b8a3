"""NNI's remote training service for real: SSH workers served by an sshd on 127.0.0.1.

Each test starts its own OpenSSH server (``/usr/sbin/sshd``, which ``scripts/test.sh``
installs) on a free port of 127.0.0.1, with a throwaway host key and a throwaway client key,
and stops it before asserting that it is gone. Sessions get ``HOME`` set to a folder under
``tmp_path`` (``SetEnv``), so NNI's worker-side files (``~/nni-experiments/<id>/environments``)
land there, not in the real home, and ``NODE_OPTIONS`` preloading nni-capsnas' bind script, so
the trial keeper NNI starts on each worker listens on 127.0.0.1 only.

The keys live under pytest's ``tmp_path``, inside the world-writable ``/tmp``, which sshd's
``StrictModes`` rejects ("bad ownership or modes for directory /tmp") whatever the modes of
the key files themselves: the server runs with ``StrictModes no``; the key files are 0600 in
a 0700 folder, and the server accepts only the throwaway key, only from 127.0.0.1.

The second worker's interpreter lives at another path than the driver's: a virtual
environment made for the test with ``python -m venv --without-pip`` from the driver's base
Python, whose site-packages has a ``.pth`` file naming the driver's site-packages. Only that
path is added (``.pth`` files inside it are not processed), so worker 2 sees torch, NNI and
the other dependencies but *not* nni-capsnas' editable install: its trials import the
project from the trial code NNI uploaded (the repository root, thinned by ``.nniignore``).
A second ``.pth`` makes that interpreter write its ``sys.executable`` into
``$NNI_OUTPUT_DIR/interpreter.txt`` whenever it starts as a trial, which shows which
interpreter ran each trial; the trial keeper NNI starts on each worker records its own.

Both tests run from the repository root: NNI uploads the working directory as trial code.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from nni_capsnas.app.config import parse_config
from nni_capsnas.nni_compat.experiment_db import locate_experiment, read_trials
from nni_capsnas.app.search_runner import run_search
from nni_capsnas.nni_compat.node_preloads import BIND_HOST_SCRIPT, preload_path

from .test_search_integration import METRIC_KEYS, _config

SSHD = Path("/usr/sbin/sshd")
REPO_ROOT = Path(__file__).resolve().parents[3]
RECORD_INTERPRETER = ('import os, sys; _d = os.environ.get("NNI_OUTPUT_DIR"); '
                      '_d and os.environ.get("NNI_TRIAL_JOB_ID") and '
                      'open(os.path.join(_d, "interpreter.txt"), "a").write(sys.executable + "\\n")\n')


@dataclass
class SshServer:
    """A running throwaway sshd."""

    port: int
    user: str
    client_key: Path
    home: Path
    process: subprocess.Popen
    log: Path

    def machine(self, python_path: str) -> dict[str, Any]:
        """A ``[[training_service.machines]]`` entry for this server."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "ssh_key_file": str(self.client_key), "python_path": python_path}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_sshd(folder: Path) -> Iterator[SshServer]:
    """An sshd on a free port of 127.0.0.1 accepting one throwaway key; stopped on exit."""
    if not SSHD.is_file():
        pytest.fail(f"{SSHD} is missing: install openssh-server (scripts/test.sh does, as root with apt-get)")
    folder.mkdir(mode=0o700)
    home = folder / "worker-home"
    home.mkdir()
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nni-capsnas-test", "-f", str(key)],
                       check=True, capture_output=True)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_ed25519.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE",
        # worker-side files under tmp_path; NNI's trial keeper listens on 127.0.0.1 only (it
        # binds every interface otherwise): the hardening the README suggests for real workers
        f'SetEnv HOME={home} "NODE_OPTIONS=--require {preload_path(BIND_HOST_SCRIPT)}" NNI_CAPSNAS_BIND_HOST=127.0.0.1', ""]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = folder / "sshd.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = SshServer(port, getpass.getuser(), client_key, home, process, log)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start (exit status {process.poll()}): {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):  # sessions still open in its process group
            os.killpg(process.pid, signal.SIGTERM)


def _different_venv(folder: Path) -> Path:
    """A virtual environment at ``folder`` that borrows the driver's third-party packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(subprocess.run([str(python), "-c", query], check=True, capture_output=True,
                                        text=True).stdout.strip())
    (site_packages / "driver_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site_packages / "record_interpreter.pth").write_text(RECORD_INTERPRETER)
    return python


def _processes_of(folder: Path) -> list[int]:
    """Ids of live processes whose command line names ``folder`` or that run inside it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if state != "Z" and (str(folder) in command or cwd.startswith(str(folder))):
            found.append(int(entry.name))
    return found


def _stop_leftovers(folder: Path, grace: float = 30.0) -> list[int]:
    """Wait up to ``grace`` seconds for the test's processes to end, then kill the rest; returns them."""
    deadline = time.monotonic() + grace
    while (leftovers := _processes_of(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


def _assert_stopped(server: SshServer, leftovers: list[int]) -> None:
    assert server.process.poll() is not None, "sshd is still running"
    assert not _listening(server.port), f"port {server.port} still accepts connections"
    assert not leftovers, f"processes left running (now killed): {leftovers}"


@pytest.mark.timeout(600)
def test_nsga2_search_runs_on_two_ssh_workers_with_different_interpreters(
        tmp_path: Path, free_port: int, isolated_nni: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    worker_python = _different_venv(tmp_path / "worker-venv")
    driver_bin = str(Path(sys.executable).parent)
    assert str(worker_python.parent) != driver_bin
    # worker 2's interpreter has NNI and torch but not nni-capsnas: trials import the uploaded code
    probe = subprocess.run([str(worker_python), "-c", "import nni, torch; import nni_capsnas"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert "No module named 'nni_capsnas'" in probe.stderr, probe.stderr

    raw = _config(tmp_path / "experiments", free_port, max_trials=4)
    try:
        with running_sshd(tmp_path / "sshd") as server:
            raw["training_service"] = {"platform": "remote", "nni_manager_ip": "127.0.0.1",
                                       "machines": [server.machine(driver_bin),
                                                    server.machine(str(worker_python.parent))]}
            started = time.monotonic()
            outcome = run_search(parse_config(raw))
            took = time.monotonic() - started
    finally:
        leftovers = _stop_leftovers(tmp_path)
    _assert_stopped(server, leftovers)

    assert outcome.statuses == {"SUCCEEDED": 4} and not outcome.failures, outcome.summary()
    trials = read_trials(locate_experiment(outcome.experiment_id, tmp_path / "experiments"))
    assert set(trials["environment_id"]) == {"remote-worker1", "remote-worker2"}, trials["environment_id"]
    assert set(trials.columns) >= METRIC_KEYS
    assert trials[sorted(METRIC_KEYS)].notna().all().all(), trials
    assert (trials["default"] == trials["accuracy"]).all()

    # each worker ran its trials with its own interpreter, and kept their logs
    environments = server.home / "nni-experiments" / outcome.experiment_id / "environments"
    for worker, python in [("remote-worker1", sys.executable), ("remote-worker2", str(worker_python))]:
        keeper = json.loads((environments / worker / "trial_keeper" / "trial_keeper_config.json").read_text())
        assert keeper["pythonInterpreter"] == python
        assert keeper["managerCommandChannel"].startswith(f"ws://127.0.0.1:{free_port}/platform/remote/")
    for row in trials.to_dict("records"):
        trial_dir = environments / row["environment_id"] / "trials" / row["trial_id"]
        assert (trial_dir / "trial.log").is_file(), trial_dir
        assert row["log_path"] == (f"127.0.0.1:~/nni-experiments/{outcome.experiment_id}/environments/"
                                   f"{row['environment_id']}/trials/{row['trial_id']}")
        record = trial_dir / "interpreter.txt"
        if row["environment_id"] == "remote-worker2":
            assert set(record.read_text().split()) == {str(worker_python)}
        else:
            assert not record.exists(), "worker 1 ran a trial with worker 2's interpreter"
    # the upload was thinned by .nniignore
    uploaded = environments / "remote-worker2" / "upload" / "trial_code"
    assert (uploaded / "nni_capsnas" / "__init__.py").is_file() and (uploaded / "hw_estimators" / "data").is_dir()
    assert not (uploaded / ".venv").exists() and not (uploaded / ".git").exists()
    print(f"remote search of 4 trials on 2 workers: {took:.0f} s")


@pytest.mark.timeout(300)
def test_failed_remote_trials_are_counted_with_reasons_copied_from_the_worker(
        tmp_path: Path, free_port: int, isolated_nni: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    # this worker's python runs NNI's bootstrap (it is the driver's), but every trial fails at once
    (broken / "python").write_text("#!/bin/sh\n"
                                   'if [ -n "$NNI_TRIAL_JOB_ID" ]; then\n'
                                   '    echo "RuntimeError: this worker cannot train" >&2; exit 3\n'
                                   "fi\n"
                                   f'exec "{sys.executable}" "$@"\n')
    (broken / "python").chmod(0o755)
    raw = _config(tmp_path / "experiments", free_port, max_trials=2)
    try:
        with running_sshd(tmp_path / "sshd") as server:
            raw["training_service"] = {"platform": "remote", "machines": [server.machine(str(broken))]}
            outcome = run_search(parse_config(raw))
    finally:
        leftovers = _stop_leftovers(tmp_path)
    _assert_stopped(server, leftovers)

    assert outcome.statuses == {"FAILED": 2} and outcome.report_dir is None
    assert len(outcome.failures) == 2
    for trial_id, reason in outcome.failures:
        assert reason == "on remote-worker1: RuntimeError: this worker cannot train", reason
        assert (outcome.folder / "trials" / trial_id / "trial.stderr").is_file()
    summary = outcome.summary()
    assert "2 failed" in summary and summary.count("RuntimeError: this worker cannot train") == 2

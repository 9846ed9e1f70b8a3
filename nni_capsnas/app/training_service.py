"""Where trials run: NNI's local training service, or SSH workers (``[training_service]``).

How NNI 3.0's remote training service (non-reuse mode, ``nni_node/training_service/remote_v3``)
runs a search, and what this module sets for it:

- The manager logs in to every machine with its key, runs ``python -m pip install nni
  --upgrade`` there, and starts a *trial keeper* that dials back to
  ``ws://<nni_manager_ip>:<port>``: workers must reach the manager's port at that address
  (:func:`manager_bind_host`).
- It packs the driver's working directory (NAS experiments insist that the trial code
  directory is the current directory), leaving out what ``.nniignore`` names, and unpacks it
  on every worker; trials start in that directory, so the packages travel with it when the
  search starts from the project root. NNI refuses more than 2000 files or 300 MB, and a
  refused upload leaves the search waiting for workers forever: :func:`check_upload` counts
  first, with NNI's own ignore rules.
- The trial command is one string for every machine, rendered with the *driver's*
  ``sys.executable``. Here it is a plain ``python``: NNI puts each machine's ``python_path``
  first on the ``PATH`` of that machine's trial keeper, whose environment the trials inherit,
  so every machine runs its own interpreter, whatever its path
  (:data:`WORKER_PYTHON`).
- GPUs: with ``trial_gpu_number`` set, NNI's trial keeper on each machine (the manager for
  ``local``) picks that many GPUs for every trial among ``gpu_indices``, skipping GPUs that
  other processes use unless ``use_active_gpu``, sharing one GPU between up to
  ``max_trial_number_per_gpu`` trials, and starts the trial with ``CUDA_VISIBLE_DEVICES`` set
  to them; a trial then trains on ``cuda:0`` of what it sees (:func:`gpu_settings`).
- Trials alternate between the connected workers. Their logs stay on the worker, under
  ``~/nni-experiments/<experiment>/environments/<environment>/trials/<trial>/``; NNI copies
  ``trial.log``, ``trial.stdout`` and ``trial.stderr`` to ``<experiment folder>/trials/<trial>/``
  only when asked, while the worker is connected: :func:`fetch_trial_logs` asks for them.
"""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Optional

from nni.experiment.config import LocalConfig, RemoteConfig, RemoteMachineConfig

from ..nni_compat.remote_trials import set_trial_python
from ..nni_compat.trial_upload import UPLOAD_MAX_BYTES, UPLOAD_MAX_FILES, UploadSize, upload_size
from .config import ConfigError, SearchConfig, TrainingServiceSection, is_loopback_host

_logger = logging.getLogger(__name__)


class TrainingServiceError(ConfigError):
    """NNI could not start the training service (an unreachable worker, a rejected key, a
    worker interpreter without NNI...); the message names NNI's reason and, where it can
    tell, the machine (``training_service.machines[<i>]``)."""


#: The interpreter in the trial command of remote searches: found on each worker's ``PATH``,
#: where NNI put that machine's ``python_path`` first.
WORKER_PYTHON = "python"
#: The packages a trial imports; shipped when the search starts from the project root.
TRIAL_PACKAGES = ("nni_capsnas", "search_spaces", "trials", "hw_estimators")


def is_remote(config: SearchConfig) -> bool:
    """Whether ``config`` runs its trials on SSH workers."""
    return config.training_service.platform == "remote"


def gpu_settings(section: TrainingServiceSection) -> dict[str, Any]:
    """NNI's per-machine GPU scheduling fields of a validated ``[training_service]`` section.

    Empty when ``trial_gpu_number`` is unset (NNI then schedules no GPU and leaves
    ``CUDA_VISIBLE_DEVICES`` alone). NNI insists on an explicit ``use_active_gpu`` for local
    GPU scheduling; the section's default is ``False``.
    """
    if section.trial_gpu_number is None:
        return {}
    settings: dict[str, Any] = {"use_active_gpu": section.use_active_gpu,
                                "max_trial_number_per_gpu": section.max_trial_number_per_gpu}
    if section.gpu_indices is not None:
        settings["gpu_indices"] = list(section.gpu_indices)
    return settings


def local_config(section: TrainingServiceSection) -> Any:
    """NNI's ``LocalConfig`` for a validated ``[training_service]`` section (its GPU scheduling)."""
    config = LocalConfig(**gpu_settings(section))
    if section.trial_gpu_number is not None:
        config.trial_gpu_number = section.trial_gpu_number
    return config


def remote_config(section: TrainingServiceSection) -> Any:
    """NNI's ``RemoteConfig`` (non-reuse mode) for a validated ``[training_service]`` section."""
    machines = [RemoteMachineConfig(host=machine.host, port=machine.port, user=machine.user,
                                    ssh_key_file=str(Path(machine.ssh_key_file).expanduser().resolve()),
                                    python_path=machine.python_path, **gpu_settings(section))
                for machine in section.machines]
    config = RemoteConfig(machine_list=machines, nni_manager_ip=section.nni_manager_ip, reuse_mode=False)
    if section.trial_gpu_number is not None:
        config.trial_gpu_number = section.trial_gpu_number
    return config


def configure_training_service(experiment_config: Any, section: TrainingServiceSection,
                               code_directory: Optional[Path] = None) -> None:
    """Point an NNI ``NasExperimentConfig`` at the training service of ``section``.

    ``local`` sets NNI's GPU scheduling (and leaves NNI's default without ``trial_gpu_number``). ``remote`` sets
    the machine list (each with the GPU scheduling), the manager address, non-reuse mode and
    :data:`WORKER_PYTHON` as the trial interpreter, after checking that NNI can ship
    ``code_directory`` (default: the current directory, which NNI uploads).

    Raises
    ------
    ConfigError
        If NNI would refuse to upload the trial code directory.
    """
    if section.platform != "remote":
        if section.trial_gpu_number is None:
            return  # NNI's default: no GPU scheduling
        experiment_config.training_service = local_config(section)
        if section.trial_gpu_number:
            _logger.info("NNI gives each trial %d GPU(s)%s, up to %d trial(s) per GPU", section.trial_gpu_number,
                         f" of {section.gpu_indices}" if section.gpu_indices is not None else "",
                         section.max_trial_number_per_gpu)
        if section.max_trial_number_per_gpu > 1 and not section.use_active_gpu:
            _logger.warning("training_service.max_trial_number_per_gpu = %d but use_active_gpu = false: NNI counts a "
                            "GPU that runs a trial as busy, so trials will rarely share one; set use_active_gpu = "
                            "true to share", section.max_trial_number_per_gpu)
        return
    code_directory = Path(code_directory or Path.cwd())
    check_upload(code_directory)
    if not all((code_directory / package / "__init__.py").is_file() for package in TRIAL_PACKAGES):
        _logger.info("the search starts outside the nni-capsnas source tree (%s): every worker imports the trial "
                     "code from its own nni-capsnas installation, which must be the driver's version", code_directory)
    experiment_config.training_service = remote_config(section)
    # NNI renders the trial command with the driver's sys.executable, which need not exist on a
    # worker; a plain name resolves through the PATH that NNI prefixed with each python_path.
    set_trial_python(experiment_config, WORKER_PYTHON)
    _logger.info("remote training service: %s; workers reach the manager at %s",
                 ", ".join(f"{m.user}@{m.host}:{m.port} ({m.python_path})" for m in section.machines),
                 section.nni_manager_ip)


def manager_bind_host(config: SearchConfig) -> str:
    """The address the NNI manager (web UI, REST API, worker channel) listens on.

    ``experiment.host`` (127.0.0.1 by default), except that remote workers that reach the
    manager at a non-loopback ``nni_manager_ip`` need it reachable from the network: then a
    loopback ``experiment.host`` becomes every interface (``0.0.0.0``). Binding
    ``nni_manager_ip`` alone would not do: NNI's own Python client and strategy channel talk
    to ``localhost``.
    """
    host = config.experiment.host
    section = config.training_service
    if section.platform == "remote" and not is_loopback_host(section.nni_manager_ip) and is_loopback_host(host):
        _logger.warning("remote workers reach the manager at %s:%d, so it listens on every interface: the web UI "
                        "and REST API are reachable from the network too (allow only the workers through a "
                        "firewall)", section.nni_manager_ip, config.experiment.port)
        return "0.0.0.0"
    return host


# --- the trial code upload -----------------------------------------------------------------------


def check_upload(directory: Path) -> Optional[UploadSize]:
    """Refuse a trial code directory that NNI's remote training service would not upload.

    Raises
    ------
    ConfigError
        If ``directory`` holds more than 2000 files or 300 MB once ``.nniignore`` is applied.
    """
    size = upload_size(directory)
    if size is None:
        return None
    if size.files > UPLOAD_MAX_FILES or size.bytes > UPLOAD_MAX_BYTES:
        amount = (f"more than {UPLOAD_MAX_FILES} files" if size.files > UPLOAD_MAX_FILES
                  else f"{size.bytes / 2 ** 20:.0f} MB (limit {UPLOAD_MAX_BYTES // 2 ** 20} MB)")
        ignore = directory / ".nniignore"
        raise ConfigError(f"training_service: NNI uploads the working directory {directory} to every worker, but "
                          f"it holds {amount} after {'its .nniignore' if ignore.is_file() else 'no .nniignore'} "
                          f"(most in {size.largest()}); start the search from the nni-capsnas project root, whose "
                          f".nniignore ships only the packages, or list what to leave out in {ignore}")
    _logger.info("trial code NNI will upload to the workers: %d files, %.1f MB from %s", size.files,
                 size.bytes / 2 ** 20, directory)
    return size


# --- trial logs on the workers -------------------------------------------------------------------------


def fetch_trial_logs(port: int, host: str, folder: Path, trial_ids: Iterable[str],
                     timeout: float = 60.0) -> dict[str, Path]:
    """Have the running NNI manager copy remote trials' logs into ``folder/trials/<trial>/``.

    NNI downloads ``trial.log``, ``trial.stdout`` and ``trial.stderr`` of a trial from its
    worker when its ``/trial-file`` REST endpoint is asked for one of them; this works while
    the manager and the worker are still running (before ``experiment.stop()``).

    Parameters
    ----------
    port, host
        Where the manager's REST API listens (``0.0.0.0`` is reached at 127.0.0.1).
    folder
        The experiment folder (``<workdir>/<experiment id>``).
    trial_ids
        The trials whose logs to copy.
    timeout
        Seconds allowed per trial.

    Returns
    -------
    dict
        Trial id -> local folder holding its copied logs, for the trials that could be copied.
    """
    address = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    copied: dict[str, Path] = {}
    for trial_id in trial_ids:
        # "stderr" (trial.stderr) always exists; NNI answers 500 for a trial.log the trial never wrote
        url = f"http://{address}:{port}/api/v1/nni/trial-file/{urllib.parse.quote(trial_id, safe='')}/stderr"
        problem: Optional[BaseException] = None
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                reply.read()
        except (OSError, urllib.error.URLError) as error:  # HTTPError included
            problem = error
        local = folder / "trials" / trial_id
        if any((local / name).is_file() for name in ("trial.log", "trial.stdout", "trial.stderr")):
            copied[trial_id] = local
        else:
            _logger.warning("could not copy the logs of trial %s from its worker: %s", trial_id,
                            problem or "NNI copied none")
    return copied


# --- a training service that did not start ---------------------------------------------------------

#: How NNI's manager logs a training service that failed to start (sic: "srevice").
_STARTUP_FAILED = re.compile(r"training s(er|re)vice initiali[sz]e failed:\s*(?P<reason>.+)", re.IGNORECASE)
#: The first line of one entry of NNI's manager log: ``[time] LEVEL (source) message``.
_ENTRY = re.compile(r"^\[[^\]]*\]\s+(?P<level>[A-Z]+)\s+\((?P<source>[^)]*)\)\s?(?P<message>.*)$")
_STDERR = re.compile(r"stderr: '(?P<text>[^'\\]*)")


def _log_entries(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """(level, source, lines) of every entry of an NNI manager log, continuation lines included."""
    entries: list[tuple[str, str, list[str]]] = []
    for line in lines:
        match = _ENTRY.match(line)
        if match is not None:
            entries.append((match.group("level"), match.group("source"), [match.group("message")]))
        elif entries:
            entries[-1][2].append(line)
    return entries


def startup_failure(log_folder: Path, section: TrainingServiceSection) -> Optional[str]:
    """Why NNI's manager gave up starting the remote training service, from ``nnimanager.log``.

    Returns ``None`` when the log records no such failure.
    """
    path = log_folder / "nnimanager.log"
    try:
        entries = _log_entries(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return None
    for index, (level, _, lines) in enumerate(entries):
        match = _STARTUP_FAILED.search(lines[0])
        if level != "ERROR" or match is None:
            continue
        parts = [match.group("reason").strip()]
        machine_index: Optional[int] = None
        # the worker's own error (e.g. "Command failed: ... { stderr: '...' }") comes just before
        worker_errors = [entry for entry in entries[max(0, index - 5):index]
                         if entry[0] == "ERROR" and entry[1].startswith("RemoteV3")]
        if worker_errors:
            source, detail = worker_errors[-1][1], worker_errors[-1][2]
            channel = source.rsplit(".", 1)[-1]  # RemoteV3.Ssh.<n>: the n-th machine of the list
            if channel.isdigit() and 1 <= int(channel) <= len(section.machines):
                machine_index = int(channel) - 1
            parts.append(detail[0].rstrip(" {"))
            stderr = next((m.group("text") for m in map(_STDERR.search, detail) if m is not None), "")
            if stderr.strip():
                parts.append(f"stderr: {stderr.strip()}")
        text = " ".join(" - ".join(parts).split())[:600]
        if machine_index is None:
            machine_index = next((i for i, machine in enumerate(section.machines)
                                  if re.search(rf"(?<![\w.-]){re.escape(machine.host)}:{machine.port}(?!\d)", text)),
                                 None)
        culprit = "training_service.machines"
        if machine_index is not None:
            machine = section.machines[machine_index]
            culprit = f"training_service.machines[{machine_index}] ({machine.user}@{machine.host}:{machine.port})"
        return (f"{culprit}: NNI could not start the remote workers: {text} (manager log: {path}). Each worker "
                "needs an SSH server that accepts the key, and a python with nni 3.0 and pip in python_path (NNI "
                "falls back to the worker's default python when python_path has none)")
    return None

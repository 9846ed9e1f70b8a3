"""What makes ``nni-capsnas resume`` safe after a crash.

A search folder (``<workdir>/<id>``) holds, besides NNI's own files:

- ``nni-capsnas-config.json``: the configuration the search started with;
- ``nni-capsnas-space.json``: its identity, written at start: the searched space (label ->
  candidates, as the space code built it) and every configuration value that shapes the
  search (all but the :data:`RESUMABLE_KEYS`, which a resume may change);
- ``nni-capsnas.lock``: locked by the process driving the search while it runs (the
  kernel releases the lock when that process dies, even by ``SIGKILL``).

Before a resume starts anything, :func:`check_resumable` reads and validates every file the
resume needs and compares the search's identity; on any problem it raises
:class:`ResumeError` and has changed nothing. Only then does :func:`stop_orphaned_processes`
stop what a killed driver left behind (its NNI manager still holds the port and keeps
running trials).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import psutil
import torch

from ..nni_compat.checkpoint import STATE_FILE
from .config import CONFIG_FILE, ConfigError, SearchConfig, parse_config

try:
    import fcntl
except ImportError:  # Windows has no flock: a live driver cannot be told from a dead one
    fcntl = None

_logger = logging.getLogger(__name__)

IDENTITY_FILE = "nni-capsnas-space.json"
LOCK_FILE = "nni-capsnas.lock"

#: Settings a resume may change: budget, concurrency, where the web UI listens and where trials run.
RESUMABLE_KEYS = frozenset({
    "experiment.name", "experiment.max_trials", "experiment.trial_concurrency", "experiment.max_duration",
    "experiment.port", "experiment.host", "experiment.workdir", "experiment.trial_threads",
    "training.device",  # where trials train, not what the search explores
})
RESUMABLE_SECTIONS = frozenset({"training_service"})


class ResumeError(ValueError):
    """A search that cannot be resumed as it is. Nothing was changed on disk."""


@dataclass
class ResumePlan:
    """What :func:`check_resumable` validated.

    Attributes
    ----------
    config
        The configuration the search started with (with the changes a resume may make).
    identity
        The search's identity, if recorded (``None`` for searches of older releases).
    code_directory
        The directory the search was started from: NNI runs a NAS experiment's trials from
        it, and accepts to resume the experiment only from there.
    """

    config: SearchConfig
    identity: Optional[dict[str, Any]]
    code_directory: Optional[Path] = None


# --- identity of a search ----------------------------------------------------------------


def space_signature(model_space: Any) -> dict[str, str]:
    """Label -> description of every choice of an NNI model space (``space.simplify()``)."""
    return {str(label): repr(mutable) for label, mutable in model_space.simplify().items()}


def config_identity(config: SearchConfig) -> dict[str, Any]:
    """Every configuration value that shapes the search, as dotted keys (JSON-compatible)."""
    flat: dict[str, Any] = {}
    for section, values in config.to_dict().items():
        if section in RESUMABLE_SECTIONS:
            continue
        for key, value in values.items():
            if f"{section}.{key}" not in RESUMABLE_KEYS:
                flat[f"{section}.{key}"] = json.loads(json.dumps(value))
    return flat


def write_identity(folder: Path, config: SearchConfig, model_space: Any) -> None:
    """Record what the search in ``folder`` explores (read back by :func:`check_resumable`)."""
    space = space_signature(model_space)
    digest = hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()
    identity = {"space": space, "space_sha256": digest, "config": config_identity(config)}
    _write_atomically(folder / IDENTITY_FILE, json.dumps(identity, indent=2, sort_keys=True))


def check_space(plan: ResumePlan, folder: Path, model_space: Any) -> None:
    """Raise :class:`ResumeError` if ``model_space`` is not the space the search started with."""
    if plan.identity is None:
        return
    stored, current = plan.identity["space"], space_signature(model_space)
    changed = sorted(label for label in set(stored) | set(current) if stored.get(label) != current.get(label))
    if changed:
        details = "; ".join(f"{label}: {stored.get(label, 'absent')} -> {current.get(label, 'absent')}"
                            for label in changed[:3])
        raise ResumeError(f"the search space of {folder.name} has changed since the search started "
                          f"({details}{'; ...' if len(changed) > 3 else ''}): its finished trials belong to "
                          f"another space; start a new search instead")


# --- validation before anything starts ----------------------------------------------------


def check_resumable(folder: Path) -> ResumePlan:
    """Validate everything a resume of the search in ``folder`` reads; change nothing.

    Raises
    ------
    ResumeError
        Naming the file and the problem: the search is still running, a file is missing or
        corrupt, or the configuration was edited in a way that changes the search.
    """
    driver = running_driver(folder)
    if driver is not None:
        raise ResumeError(f"experiment {folder.name} is still running (driver process {driver or 'unknown'}); "
                          f"stop it first (Ctrl-C{f', or kill {driver}' if driver else ''})")
    config = _read_config(folder / CONFIG_FILE)
    code_directory = _check_checkpoint(folder / "checkpoint")
    identity = _read_identity(folder / IDENTITY_FILE)
    if identity is None:
        _logger.warning("%s has no %s (started by an older nni-capsnas): cannot check that the space and "
                        "configuration are unchanged", folder, IDENTITY_FILE)
    else:
        _check_config_unchanged(folder / CONFIG_FILE, identity["config"], config_identity(config))
    return ResumePlan(config, identity, code_directory)


def _read_config(path: Path) -> SearchConfig:
    if not path.is_file():
        raise ResumeError(f"{path} is missing: only searches started by 'nni-capsnas search' can be resumed")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResumeError(f"{path} is corrupt ({_one_line(error)}); restore it from a backup to resume") from error
    try:
        return parse_config(raw)
    except ConfigError as error:
        raise ResumeError(f"{path} is not a valid search configuration: {error}") from error


def _check_checkpoint(directory: Path) -> Optional[Path]:
    """Validate NNI's checkpoint; returns the trial code directory it names."""
    if not directory.is_dir():
        raise ResumeError(f"{directory} is missing: the search left no checkpoint to resume from")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ResumeError(f"{config_path} is missing: the checkpoint is incomplete")
    try:
        nni_config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(nni_config, dict):
            raise ValueError(f"expected a JSON object, got {type(nni_config).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ResumeError(f"{config_path} is corrupt ({_one_line(error)})") from error
    code_directory = nni_config.get("trialCodeDirectory")
    if isinstance(code_directory, str) and code_directory not in ("", "."):
        code_directory = Path(code_directory)
        if not code_directory.is_dir():
            raise ResumeError(f"the search was started from {code_directory}, which no longer exists: NNI runs "
                              f"the trials of a NAS experiment from the directory it started in")
    else:
        code_directory = None
    state_path = directory / STATE_FILE
    backup = state_path.with_name(state_path.name + ".bak")
    hint = (f"; the state before the last checkpoint is in {backup.name}: copy it over {state_path.name} "
            f"to resume from there" if backup.is_file() else "")
    if not state_path.is_file():
        raise ResumeError(f"{state_path} is missing: no saved strategy state to resume from{hint}")
    try:
        state = torch.load(state_path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many types for corrupt files (pickle, zip, EOF, ...)
        raise ResumeError(f"{state_path} is corrupt ({_one_line(error)[:200]}){hint}") from error
    if not isinstance(state, Mapping) or not isinstance(state.get("strategy"), Mapping):
        raise ResumeError(f"{state_path} holds no strategy state (got {type(state).__name__}){hint}")
    return code_directory


def _read_identity(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        identity = json.loads(path.read_text(encoding="utf-8"))
        space, config = identity["space"], identity["config"]
        if not isinstance(space, dict) or not isinstance(config, dict):
            raise TypeError("'space' and 'config' must be tables")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ResumeError(f"{path} is corrupt ({_one_line(error)})") from error
    return identity


def _check_config_unchanged(path: Path, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    # a key that a later release added is absent from older identities: it held its default then
    defaults = config_identity(SearchConfig())
    stored = {**{key: value for key, value in defaults.items() if key not in stored}, **stored}
    changed = sorted(key for key in set(stored) | set(current) if stored.get(key) != current.get(key))
    if changed:
        key = changed[0]
        raise ResumeError(f"{path}: {key} changed since the search started ({stored.get(key)!r} -> "
                          f"{current.get(key)!r}{f', and {len(changed) - 1} more' if len(changed) > 1 else ''}); "
                          f"a resume may change only {', '.join(sorted(RESUMABLE_KEYS | RESUMABLE_SECTIONS))}: "
                          f"start a new search for other changes")


# --- the driver lock ---------------------------------------------------------------------


def running_driver(folder: Path) -> Optional[int]:
    """Pid (0 if unknown) of the live process driving the search in ``folder``, else ``None``."""
    path = folder / LOCK_FILE
    if not path.is_file():
        return None
    if fcntl is None:
        return None
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def driver_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (with this process's pid in it) while the search runs here."""
    if fcntl is None:
        yield
        return
    with (folder / LOCK_FILE).open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.seek(0)
            raise ResumeError(f"experiment {folder.name} is already running (driver process "
                              f"{handle.read().strip() or 'unknown'})") from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


# --- what a killed driver leaves behind -------------------------------------------------------


def leftover_processes(folder: Path) -> list[Any]:
    """NNI manager and trial processes of the experiment in ``folder`` (``psutil.Process``)."""
    experiment_id, workdir = folder.name, folder.parent.resolve()
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid == os.getpid():
            continue
        command = process.info.get("cmdline") or []
        try:
            if any(part.endswith("main.js") for part in command) and _argument(command, "--experiment-id") == \
                    experiment_id and Path(_argument(command, "--experiments-directory") or "").resolve() == workdir:
                found.append(process)
            elif any("nni" in part for part in command):
                environment = process.environ()
                if environment.get("NNI_EXP_ID") == experiment_id and \
                        Path(environment.get("NNI_SYS_DIR", "/")).resolve().is_relative_to(folder.resolve()):
                    found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def stop_orphaned_processes(folder: Path, timeout: float = 15.0) -> int:
    """Kill the NNI manager and trials a killed driver left running; returns how many processes.

    Call only when :func:`running_driver` is ``None``: the processes are then orphans. They
    are killed as a crash would (``SIGKILL``), so NNI's resume runs their unfinished trials
    again and the strategy adopts the results.
    """
    processes = leftover_processes(folder)
    if not processes:
        return 0
    if fcntl is None:  # without the driver lock, a live driver cannot be told from a dead one
        raise ResumeError(f"processes of experiment {folder.name} are still running "
                          f"({', '.join(str(p.pid) for p in processes)}): stop them first") from None
    for process in processes:
        try:
            children = process.children(recursive=True)
        except psutil.Error:
            children = []
        for victim in [process, *children]:
            with contextlib.suppress(psutil.Error, OSError):
                victim.send_signal(signal.SIGKILL)
        processes.extend(child for child in children if child not in processes)
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    if alive:
        raise ResumeError(f"could not stop the processes left by the crashed search: "
                          f"{', '.join(str(p.pid) for p in alive)}")
    _logger.warning("stopped %d processes (NNI manager, trials) that the interrupted driver of %s left running",
                    len(processes), folder.name)
    return len(processes)


def check_port_free(port: int) -> None:
    """Raise :class:`~nni_capsnas.app.config.ConfigError` if something listens on ``localhost:port``.

    NNI would refuse with a traceback after it has started writing the experiment's files.
    """
    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex(("localhost", port)) == 0:
            raise ConfigError(f"experiment.port: port {port} is in use by another program; pass --port with a "
                              f"free port")


# --- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def working_directory(path: Optional[Path]) -> Iterator[None]:
    """Run the block in ``path`` (if given), then return to the current directory."""
    previous = Path.cwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _argument(command: list[str], flag: str) -> Optional[str]:
    try:
        return command[command.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)

"""Run a configured search end to end: experiment, web UI binding, failure summary, report."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..nni_compat.console_log import route_nni_logs_to_root
from ..nni_compat.experiment_db import (ExperimentFolder, failure_reason, locate_experiment, read_trial_records,
                                        read_trials)
from ..nni_compat.node_preloads import EVERY_INTERFACE, bind_trial_parameters, bind_webui, schedule_every_gpu
from .config import CONFIG_FILE, SearchConfig, is_one_shot
from .device_check import check_devices_available
from .experiment_builder import build_experiment, build_space
from .oneshot_search import ARCHITECTURE_FILE, run_one_shot_phase
from .report import write_report
from .resume_guard import (ResumeError, check_port_free, check_resumable, check_space, driver_lock,
                           stop_orphaned_processes, working_directory, write_identity)
from .training_service import TrainingServiceError, fetch_trial_logs, is_remote, manager_bind_host, startup_failure

_logger = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    """What a finished search left behind."""

    experiment_id: str
    folder: Path
    statuses: dict[str, int]
    failures: list[tuple[str, str]] = field(default_factory=list)
    report_dir: Optional[Path] = None
    front_size: int = 0
    interrupted: bool = False
    #: Where remote trials' logs are (they stay on the workers); ``None`` for local searches.
    worker_logs: Optional[str] = None
    #: A one-shot search's supernet phase files (derived architecture, MGDA weights).
    one_shot_dir: Optional[Path] = None
    #: The strategy's own Pareto front (samples with their metrics), for strategies that keep one (NSGA2).
    strategy_front: Optional[list[dict[str, Any]]] = None

    @property
    def succeeded(self) -> bool:
        return self.statuses.get("SUCCEEDED", 0) > 0

    def summary(self) -> str:
        lines = [f"experiment {self.experiment_id}: "
                 + ", ".join(f"{count} {status.lower()}" for status, count in sorted(self.statuses.items()))]
        for trial_id, reason in self.failures:
            lines.append(f"  failed trial {trial_id}: {reason}")
        if self.one_shot_dir is not None:
            lines.append(f"E2RNAS derived architecture, probabilities and MGDA weights in {self.one_shot_dir}")
        if self.report_dir is not None:
            lines.append(f"Pareto front of {self.front_size} architectures; report in {self.report_dir}")
        lines.append(f"experiment folder: {self.folder}")
        if self.worker_logs:
            lines.append(f"trial logs on the workers: {self.worker_logs}")
        if self.interrupted:
            lines.append(f"interrupted: continue with  nni-capsnas resume {self.experiment_id} "
                         f"--workdir {self.folder.parent}")
        return "\n".join(lines)


#: Where a one-shot (E2RNAS) search keeps its supernet phase's files, inside the experiment folder.
ONE_SHOT_FOLDER = "e2rnas"


#: Receives the ``web UI: http://HOST:PORT  (experiment ID)`` line when the manager starts.
Announce = Callable[[str], None]


def _log_line(line: str) -> None:
    _logger.info("%s", line)


def run_search(config: SearchConfig, *, report_dir: Optional[Path] = None,
               announce: Announce = _log_line) -> SearchOutcome:
    """Build and run the experiment of ``config``; summarise failures and write the report.

    ``announce`` receives the web UI address line (the CLI prints it; default: logged).

    Besides NNI's files, the experiment folder gets the configuration, the search's identity
    (space and search-shaping settings, checked by :func:`resume_search`) and a lock held
    while this process drives the search (see :mod:`nni_capsnas.app.resume_guard`).
    """
    route_nni_logs_to_root()
    check_devices_available(config)
    check_port_free(config.experiment.port)
    experiment = build_experiment(config)
    folder = Path(experiment.config.experiment_working_directory).expanduser() / experiment.id
    folder.mkdir(parents=True, exist_ok=True)
    with driver_lock(folder):
        (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
        write_identity(folder, config, experiment.model_space)
        if is_one_shot(config):
            experiment.strategy.samples = run_one_shot_phase(config, folder / ONE_SHOT_FOLDER)
        return _run(experiment, config, report_dir, resume=False, announce=announce)


def resume_search(experiment_id: str, *, workdir: Optional[str] = None, port: Optional[int] = None,
                  report_dir: Optional[Path] = None, announce: Announce = _log_line) -> SearchOutcome:
    """Continue an interrupted search from its checkpoint, with the configuration it started with.

    Everything the resume reads is validated first: on a missing or corrupt checkpoint or
    configuration, a configuration edited in a way that changes the search, a changed space
    or a driver still running, it raises :class:`~nni_capsnas.app.resume_guard.ResumeError` and
    no file was changed. Then the NNI manager and trials that a killed driver left running
    are stopped, and the search goes on: trials that finished meanwhile are adopted, trials
    that were cut short run again.

    Raises
    ------
    FileNotFoundError
        If there is no experiment ``experiment_id`` (in ``workdir``).
    ResumeError
        If the search cannot be resumed as it is (the message says why).
    ConfigError
        If the web UI port is taken, or this machine lacks the GPUs the search trains on.
    """
    route_nni_logs_to_root()
    folder = locate_experiment(experiment_id, workdir)
    folder.path = folder.path.resolve()
    plan = check_resumable(folder.path)
    config = plan.config
    check_devices_available(config)
    config.experiment.workdir = str(folder.path.parent)
    if port is not None:
        config.experiment.port = port
    report_dir = report_dir.resolve() if report_dir is not None else None
    # NNI resumes a NAS experiment only from the directory it started in (its trial code directory).
    with working_directory(plan.code_directory):
        space = build_space(config)
        check_space(plan, folder.path, space)
        experiment = build_experiment(config, experiment_id=folder.experiment_id, space=space)
        if is_one_shot(config):
            experiment.strategy.samples = _derived_architectures(folder.path)
        stop_orphaned_processes(folder.path)
        check_port_free(config.experiment.port)
        with driver_lock(folder.path):
            return _run(experiment, config, report_dir, resume=True, announce=announce)


def _derived_architectures(folder: Path) -> list[dict[str, Any]]:
    """The architecture a finished one-shot phase derived, for resuming its evaluation."""
    path = folder / ONE_SHOT_FOLDER / ARCHITECTURE_FILE
    try:
        sample = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeError(f"{folder.name}: the E2RNAS one-shot phase did not finish (no {path}); one-shot "
                          "training cannot be resumed: start the search again") from None
    except (OSError, ValueError) as error:
        raise ResumeError(f"{path} is not a readable architecture: {error}") from error
    if not isinstance(sample, dict):
        raise ResumeError(f"{path}: expected an architecture table, got {type(sample).__name__}")
    return [sample]


def _run(experiment: Any, config: SearchConfig, report_dir: Optional[Path], *, resume: bool,
         announce: Announce) -> SearchOutcome:
    port, host = config.experiment.port, manager_bind_host(config)
    shown_host = "127.0.0.1" if host in EVERY_INTERFACE else host
    announce(f"web UI: http://{shown_host}:{port}  (experiment {experiment.id})")
    logging.getLogger("nni").setLevel(logging.WARNING)
    interrupted = False
    try:
        with bind_trial_parameters(), schedule_every_gpu(), bind_webui(host):
            # NNI returns None when it caught a KeyboardInterrupt (and stopped the experiment).
            finished = experiment.resume(port=port) if resume else experiment.run(port=port)
        interrupted = finished is None
        if not interrupted and is_remote(config):
            _copy_failed_trial_logs(experiment, port, host)
    except KeyboardInterrupt:
        interrupted = True
        _logger.warning("interrupted: stopping the experiment (finished trials and the checkpoint are kept)")
    except Exception as error:
        # NNI's manager shuts down when a worker cannot be started, and its Python client
        # then fails on a closed connection: name NNI's reason instead.
        if is_remote(config):
            folder = Path(experiment.config.experiment_working_directory).expanduser() / experiment.id
            problem = startup_failure(folder / "log", config.training_service)
            if problem is not None:
                raise TrainingServiceError(problem) from error
        raise
    finally:
        _stop_quietly(experiment)
    workdir = Path(experiment.config.experiment_working_directory).expanduser()
    folder = locate_experiment(experiment.id, workdir)
    trials = read_trials(folder)
    statuses = trials["status"].value_counts().to_dict() if "status" in trials else {}
    failures = [(row["trial_id"], _failure(row, folder.path, remote=is_remote(config)))
                for row in trials.to_dict("records") if row.get("status") not in ("SUCCEEDED", None)]
    outcome = SearchOutcome(experiment.id, folder.path, statuses, failures, interrupted=interrupted)
    if callable(getattr(experiment.strategy, "pareto_front", None)):
        outcome.strategy_front = experiment.strategy.pareto_front()
    if (folder.path / ONE_SHOT_FOLDER).is_dir():
        outcome.one_shot_dir = folder.path / ONE_SHOT_FOLDER
    if is_remote(config):
        outcome.worker_logs = (f"~/nni-experiments/{experiment.id}/environments/<worker>/trials/<trial> on each "
                               f"machine; failed trials' logs copied to {folder.path / 'trials'}")
    if outcome.succeeded:
        target = report_dir or folder.path / "report"
        if target.exists():
            target = target.with_name(f"{target.name}-{len(list(target.parent.glob(target.name + '*')))}")
        report = write_report(folder, target)  # the search's own objectives and constraints
        outcome.report_dir, outcome.front_size = report.summary.parent, len(report.front)
    else:
        _logger.error("no trial succeeded: see the reasons above and the trial logs in %s", folder.path)
    return outcome


def _failed_trial_ids(experiment: Any) -> list[str]:
    folder = Path(experiment.config.experiment_working_directory).expanduser() / experiment.id
    store = ExperimentFolder(experiment.id, folder)
    if not store.database.is_file():
        return []
    return [record.trial_id for record in read_trial_records(store) if record.status not in ("SUCCEEDED", "UNKNOWN")]


def _copy_failed_trial_logs(experiment: Any, port: int, host: str) -> None:
    """Copy the logs of failed remote trials from their workers while the manager still runs."""
    failed = _failed_trial_ids(experiment)
    if failed:
        folder = Path(experiment.config.experiment_working_directory).expanduser() / experiment.id
        copied = fetch_trial_logs(port, host, folder, failed)
        _logger.info("copied the logs of %d of %d failed trials from their workers", len(copied), len(failed))


def _failure(row: dict[str, Any], folder: Path, *, remote: bool) -> str:
    """Why a trial failed; for remote trials read from the logs copied off the worker, naming the worker."""
    if not remote:
        return failure_reason(row.get("log_path"))
    reason = failure_reason(row.get("log_path"), copy=folder / "trials" / str(row["trial_id"]))
    environment = row.get("environment_id")
    return f"on {environment}: {reason}" if isinstance(environment, str) and environment else reason


def _stop_quietly(experiment: Any) -> None:
    try:
        experiment.stop()
    except Exception as error:  # stopping an already-stopped experiment is fine
        _logger.debug("stop: %s", error)

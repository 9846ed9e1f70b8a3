"""Read a (running or finished) NNI experiment's trials from its folder, without a server.

NNI keeps every trial event and metric in ``<workdir>/<id>/db/nni.sqlite`` (tables
``TrialJobEvent`` and ``MetricData``, NNI's private schema); this module reads it read-only,
so reports never change what the user has. NNI's REST API would need a running manager, and
its records of a trial whose parameters were swapped (see :mod:`.node_preloads`) name the
wrong architecture: the metric's ``parameterId`` names the right one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import nni
import pandas as pd

DEFAULT_WORKDIR = Path.home() / "nni-experiments"
_logger = logging.getLogger(__name__)


@dataclass
class ExperimentFolder:
    """Where an experiment lives on disk."""

    experiment_id: str
    path: Path

    @property
    def database(self) -> Path:
        return self.path / "db" / "nni.sqlite"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"


def locate_experiment(experiment: str, workdir: Optional[str | Path] = None) -> ExperimentFolder:
    """Find an experiment by id (under ``workdir``, default ``~/nni-experiments``) or by folder path."""
    candidate = Path(experiment).expanduser()
    folder = candidate if (candidate / "db").is_dir() else Path(workdir or DEFAULT_WORKDIR).expanduser() / experiment
    if not (folder / "db" / "nni.sqlite").is_file():
        raise FileNotFoundError(f"no NNI experiment {experiment!r} in {folder.parent} (looked for "
                                f"{folder / 'db' / 'nni.sqlite'}); pass --workdir if it lives elsewhere")
    return ExperimentFolder(folder.name, folder)


def _decode_metric(text: str) -> Any:
    value = json.loads(text)
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class TrialRecord:
    """One trial as NNI stored it."""

    trial_id: str
    status: str = "UNKNOWN"
    sample: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    log_path: Optional[str] = None
    #: NNI's environment that ran it: ``local-env``, or ``remote-worker<n>`` for the n-th SSH worker.
    environment_id: Optional[str] = None


def read_trial_records(folder: ExperimentFolder) -> list[TrialRecord]:
    """Every trial of the experiment with its last status, architecture and final metrics."""
    uri = f"file:{folder.database}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        events = connection.execute(
            "SELECT trialJobId, event, data, logPath, environmentId FROM TrialJobEvent "
            "ORDER BY timestamp, rowid").fetchall()
        finals = connection.execute(
            "SELECT trialJobId, parameterId, data FROM MetricData WHERE type = 'FINAL' ORDER BY timestamp").fetchall()
    records: dict[str, TrialRecord] = {}
    assigned: dict[str, str] = {}  # trial -> parameter id NNI assigned to it
    samples: dict[str, dict[str, Any]] = {}  # parameter id -> architecture
    for trial_id, event, data, log_path, environment_id in events:
        record = records.setdefault(trial_id, TrialRecord(trial_id))
        record.status = event
        record.log_path = log_path or record.log_path
        record.environment_id = environment_id or record.environment_id
        if data:
            payload = json.loads(data)
            sample = (payload.get("parameters") or {}).get("sample") or {}
            record.sample.update(sample)
            assigned[trial_id] = str(payload.get("parameter_id"))
            samples.setdefault(str(payload.get("parameter_id")), dict(sample))
    for trial_id, parameter_id, data in finals:
        metric = _decode_metric(data)
        record = records.setdefault(trial_id, TrialRecord(trial_id))
        record.metrics = dict(metric) if isinstance(metric, dict) else {"default": metric}
        # NNI 3.0's local training service hands parameters to trials in request order: when a
        # trial dies before asking for its own, the next one trains that one instead. The metric
        # carries the parameter actually trained.
        if parameter_id is not None and assigned.get(trial_id) not in (None, str(parameter_id)) \
                and str(parameter_id) in samples:
            _logger.debug("trial %s trained parameter %s, not %s as NNI recorded: using that architecture",
                          trial_id, parameter_id, assigned[trial_id])
            record.sample = dict(samples[str(parameter_id)])
    return list(records.values())


def read_trials(folder: ExperimentFolder) -> pd.DataFrame:
    """One row per trial: id, status, log folder, environment (worker), the architecture
    (``arch/<label>``) and final metrics."""
    rows = []
    for record in read_trial_records(folder):
        row: dict[str, Any] = {"trial_id": record.trial_id, "status": record.status, "log_path": record.log_path,
                               "environment_id": record.environment_id}
        row.update({f"arch/{label}": value for label, value in record.sample.items()})
        row.update(record.metrics)
        rows.append(row)
    return pd.DataFrame(rows)


def failure_reason(log_path: Optional[str], copy: Optional[Path] = None) -> str:
    """The last error line a failed trial wrote, or a pointer to its log.

    Parameters
    ----------
    log_path
        NNI's log location of the trial: a local folder, or ``host:~/nni-experiments/...``
        on the worker for remote trials.
    copy
        A local folder with copies of the trial's logs (``<experiment>/trials/<trial>`` where
        NNI downloads a remote trial's logs), read first.
    """
    folders = [folder for folder in (copy, Path(log_path) if log_path else None) if folder is not None]
    for folder in folders:
        for name in ("trial.log", "trial.stderr", "stderr"):
            path = folder / name
            if path.is_file():
                lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
                errors = [line for line in lines if "trial failed:" in line or "Error" in line]
                if errors:
                    return errors[-1][-300:]
    if copy is not None and copy.is_dir() and any(copy.iterdir()):
        return f"see {copy}"
    if not log_path:
        return "no log"
    return f"see {log_path}" if Path(log_path).is_dir() else f"see the log on the worker: {log_path}"


def load_trial_model(folder: ExperimentFolder, trial_id: str) -> tuple[Any, dict[str, Any]]:
    """The network a trial trained (freshly initialised) and its evaluator's keyword arguments."""
    uri = f"file:{folder.database}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        row = connection.execute(
            "SELECT data FROM TrialJobEvent WHERE trialJobId = ? AND data IS NOT NULL LIMIT 1", (trial_id,)).fetchone()
    if row is None:
        raise ValueError(f"experiment {folder.experiment_id} has no trial {trial_id!r}")
    frozen = nni.load(json.dumps(json.loads(row[0])["parameters"]))
    evaluator = getattr(frozen, "evaluator", None)
    return frozen.executable_model(), dict(getattr(evaluator, "arguments", {}) or {})

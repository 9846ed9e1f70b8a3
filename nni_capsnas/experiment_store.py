"""Read a (running or finished) NNI experiment's trials from its folder, without a server.

NNI keeps every trial event and metric in ``<workdir>/<id>/db/nni.sqlite``; this module
reads it read-only, so reports never change what the user has.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

DEFAULT_WORKDIR = Path.home() / "nni-experiments"


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


def read_trial_records(folder: ExperimentFolder) -> list[TrialRecord]:
    """Every trial of the experiment with its last status, architecture and final metrics."""
    uri = f"file:{folder.database}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        events = connection.execute(
            "SELECT trialJobId, event, data, logPath FROM TrialJobEvent ORDER BY timestamp, rowid").fetchall()
        finals = connection.execute(
            "SELECT trialJobId, data FROM MetricData WHERE type = 'FINAL' ORDER BY timestamp").fetchall()
    records: dict[str, TrialRecord] = {}
    for trial_id, event, data, log_path in events:
        record = records.setdefault(trial_id, TrialRecord(trial_id))
        record.status = event
        record.log_path = log_path or record.log_path
        if data:
            parameters = json.loads(data).get("parameters", {})
            record.sample.update(parameters.get("sample") or {})
    for trial_id, data in finals:
        metric = _decode_metric(data)
        record = records.setdefault(trial_id, TrialRecord(trial_id))
        record.metrics = dict(metric) if isinstance(metric, dict) else {"default": metric}
    return list(records.values())


def read_trials(folder: ExperimentFolder) -> pd.DataFrame:
    """One row per trial: id, status, log folder, the architecture (``arch/<label>``) and final metrics."""
    rows = []
    for record in read_trial_records(folder):
        row: dict[str, Any] = {"trial_id": record.trial_id, "status": record.status, "log_path": record.log_path}
        row.update({f"arch/{label}": value for label, value in record.sample.items()})
        row.update(record.metrics)
        rows.append(row)
    return pd.DataFrame(rows)


def failure_reason(log_path: Optional[str]) -> str:
    """The last error line a failed trial wrote, or a pointer to its log."""
    if not log_path:
        return "no log"
    folder = Path(log_path)
    for name in ("trial.log", "stderr"):
        path = folder / name
        if path.is_file():
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
            errors = [line for line in lines if "trial failed:" in line or "Error" in line]
            if errors:
                return errors[-1][-300:]
    return f"see {folder}"


def load_trial_model(folder: ExperimentFolder, trial_id: str) -> tuple[Any, dict[str, Any]]:
    """The network a trial trained (freshly initialised) and its evaluator's keyword arguments."""
    import nni

    uri = f"file:{folder.database}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        row = connection.execute(
            "SELECT data FROM TrialJobEvent WHERE trialJobId = ? AND data IS NOT NULL LIMIT 1", (trial_id,)).fetchone()
    if row is None:
        raise ValueError(f"experiment {folder.experiment_id} has no trial {trial_id!r}")
    frozen = nni.load(json.dumps(json.loads(row[0])["parameters"]))
    evaluator = getattr(frozen, "evaluator", None)
    return frozen.executable_model(), dict(getattr(evaluator, "arguments", {}) or {})

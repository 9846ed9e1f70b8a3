"""Run a configured search end to end: experiment, web UI binding, failure summary, report."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .config import SearchConfig

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

    @property
    def succeeded(self) -> bool:
        return self.statuses.get("SUCCEEDED", 0) > 0

    def summary(self) -> str:
        lines = [f"experiment {self.experiment_id}: "
                 + ", ".join(f"{count} {status.lower()}" for status, count in sorted(self.statuses.items()))]
        for trial_id, reason in self.failures:
            lines.append(f"  failed trial {trial_id}: {reason}")
        if self.report_dir is not None:
            lines.append(f"Pareto front of {self.front_size} architectures; report in {self.report_dir}")
        lines.append(f"experiment folder: {self.folder}")
        if self.interrupted:
            lines.append(f"interrupted: continue with  nni-capsnas resume {self.experiment_id} "
                         f"--workdir {self.folder.parent}")
        return "\n".join(lines)


CONFIG_FILE = "nni-capsnas-config.json"


def run_search(config: SearchConfig, *, report_dir: Optional[Path] = None) -> SearchOutcome:
    """Build and run the experiment of ``config``; summarise failures and write the report."""
    from .experiment_builder import build_experiment

    experiment = build_experiment(config)
    folder = Path(experiment.config.experiment_working_directory).expanduser() / experiment.id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    return _run(experiment, config, report_dir, resume=False)


def resume_search(experiment_id: str, *, workdir: Optional[str] = None, port: Optional[int] = None,
                  report_dir: Optional[Path] = None) -> SearchOutcome:
    """Continue an interrupted search from its checkpoint, with the configuration it started with."""
    from .config import ConfigError, parse_config
    from .experiment_builder import build_experiment
    from .experiment_store import locate_experiment

    folder = locate_experiment(experiment_id, workdir)
    config_path = folder.path / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{config_path} is missing: only searches started by 'nni-capsnas search' can be resumed")
    if not any(folder.checkpoint.glob("state.ckpt*")):
        raise ConfigError(f"{folder.checkpoint} holds no saved state to resume from")
    config = parse_config(json.loads(config_path.read_text(encoding="utf-8")))
    config.experiment.workdir = str(folder.path.parent)
    if port is not None:
        config.experiment.port = port
    experiment = build_experiment(config, experiment_id=folder.experiment_id)
    return _run(experiment, config, report_dir, resume=True)


def _run(experiment: Any, config: SearchConfig, report_dir: Optional[Path], *, resume: bool) -> SearchOutcome:
    from .experiment_store import failure_reason, locate_experiment, read_trials
    from .report import write_report
    from .webui import bind_webui

    port, host = config.experiment.port, config.experiment.host
    shown_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    print(f"web UI: http://{shown_host}:{port}  (experiment {experiment.id})", flush=True)
    logging.getLogger("nni").setLevel(logging.WARNING)
    interrupted = False
    try:
        with bind_webui(host):
            # NNI returns None when it caught a KeyboardInterrupt (and stopped the experiment).
            finished = experiment.resume(port=port) if resume else experiment.run(port=port)
        interrupted = finished is None
    except KeyboardInterrupt:
        interrupted = True
        _logger.warning("interrupted: stopping the experiment (finished trials and the checkpoint are kept)")
    finally:
        _stop_quietly(experiment)
    workdir = Path(experiment.config.experiment_working_directory).expanduser()
    folder = locate_experiment(experiment.id, workdir)
    trials = read_trials(folder)
    statuses = trials["status"].value_counts().to_dict() if "status" in trials else {}
    failures = [(row["trial_id"], failure_reason(row.get("log_path")))
                for row in trials.to_dict("records") if row.get("status") not in ("SUCCEEDED", None)]
    outcome = SearchOutcome(experiment.id, folder.path, statuses, failures, interrupted=interrupted)
    if outcome.succeeded:
        target = report_dir or folder.path / "report"
        if target.exists():
            target = target.with_name(f"{target.name}-{len(list(target.parent.glob(target.name + '*')))}")
        report = write_report(folder, target, objectives=config.strategy.objectives,
                              constraints=config.strategy.constraints or None)
        outcome.report_dir, outcome.front_size = report.summary.parent, len(report.front)
    else:
        _logger.error("no trial succeeded: see the reasons above and the trial logs in %s", folder.path)
    return outcome


def _stop_quietly(experiment: Any) -> None:
    try:
        experiment.stop()
    except Exception as error:  # stopping an already-stopped experiment is fine
        _logger.debug("stop: %s", error)

"""Turn an experiment into tables, Pareto plots and a summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from .experiment_store import ExperimentFolder, read_trials
from .strategy.objectives import DEFAULT_OBJECTIVES, Objectives
from .strategy.pareto import non_dominated

_logger = logging.getLogger(__name__)

HARDWARE_AXES = ("energy_mj", "latency_ms", "memory_kib")


@dataclass
class Report:
    """Paths of what :func:`write_report` wrote, and the front itself."""

    trials_csv: Path
    front_csv: Path
    plots: list[Path]
    summary: Path
    front: pd.DataFrame


def pareto_table(trials: pd.DataFrame, objectives: Objectives) -> pd.DataFrame:
    """Succeeded trials that are non-dominated for ``objectives`` and satisfy its constraints."""
    needed = objectives.names + list(objectives.constraints)
    if trials.empty or not set(needed) <= set(trials.columns):
        return trials.iloc[0:0]
    usable = trials[(trials.get("status") == "SUCCEEDED") & trials[needed].notna().all(axis=1)]
    for name, bound in objectives.constraints.items():
        usable = usable[usable[name] <= bound]
    if usable.empty:
        return usable
    points = np.stack([objectives.to_minimisation(row) for row in usable[objectives.names].to_dict("records")])
    return usable.iloc[sorted(non_dominated(points))].sort_values(objectives.names[0], ascending=False)


def _plot(trials: pd.DataFrame, front: pd.DataFrame, metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4))
    done = trials[trials["status"] == "SUCCEEDED"]
    axes.scatter(done[metric], done["accuracy"], s=18, c="0.6", label="trials")
    ordered = front.sort_values(metric)
    axes.plot(ordered[metric], ordered["accuracy"], "o-", c="C3", label="Pareto front (all objectives)")
    axes.set_xlabel(metric)
    axes.set_ylabel("accuracy")
    axes.set_xscale("log" if done[metric].max() > 20 * max(done[metric].min(), 1e-12) else "linear")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(folder: ExperimentFolder, output: Path,
                 objectives: Optional[Mapping[str, str]] = None,
                 constraints: Optional[Mapping[str, float]] = None) -> Report:
    """Write ``trials.csv``, ``pareto_front.csv``, ``pareto_<metric>.png`` and ``summary.md``.

    Refuses to overwrite an existing report folder's files.
    """
    trials = read_trials(folder)
    if trials.empty:
        raise ValueError(f"experiment {folder.experiment_id} has no trials yet")
    objective_spec = Objectives(objectives or {k: v for k, v in DEFAULT_OBJECTIVES.items() if k in trials.columns}
                                or {"default": "max"}, constraints)
    output.mkdir(parents=True, exist_ok=True)
    names = ["trials.csv", "pareto_front.csv", "summary.md"] + [f"pareto_{m}.png" for m in HARDWARE_AXES]
    clashes = [n for n in names if (output / n).exists()]
    if clashes:
        raise FileExistsError(f"{output} already holds {', '.join(clashes)}; choose another --output")
    front = pareto_table(trials, objective_spec)
    trials.to_csv(output / "trials.csv", index=False)
    front.to_csv(output / "pareto_front.csv", index=False)
    plots = [_plot(trials, front, metric, output / f"pareto_{metric}.png")
             for metric in HARDWARE_AXES if {metric, "accuracy"} <= set(trials.columns) and not front.empty]
    summary = output / "summary.md"
    summary.write_text(_summary(folder, trials, front, objective_spec), encoding="utf-8")
    _logger.info("report of %s written to %s", folder.experiment_id, output)
    return Report(output / "trials.csv", output / "pareto_front.csv", plots, summary, front)


def _summary(folder: ExperimentFolder, trials: pd.DataFrame, front: pd.DataFrame, objectives: Objectives) -> str:
    counts = trials["status"].value_counts().to_dict() if "status" in trials else {}
    lines = [f"# Experiment {folder.experiment_id}", "",
             f"- trials: {len(trials)} ({', '.join(f'{n} {s.lower()}' for s, n in counts.items())})",
             f"- objectives: {', '.join(f'{k} ({v})' for k, v in objectives.directions.items())}",
             f"- Pareto front: {len(front)} architectures", ""]
    if not front.empty:
        columns = [c for c in dict.fromkeys(["trial_id", *objectives.names, "params"]) if c in front.columns]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in front[columns].to_dict("records"):
            lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"

"""Turn an experiment into tables, Pareto plots and a summary.

The front is the search's own: :func:`write_report` defaults to the objectives and
constraints the search was configured with (``nni-capsnas-config.json``) and computes the
front with :func:`nni_capsnas.strategy.pareto.feasible_front`, as the NSGA-II strategy does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd
from matplotlib.figure import Figure

from ..metrics import axis_label
from ..nni_compat.experiment_db import ExperimentFolder, read_trials
from ..strategy.objectives import Objectives
from ..strategy.pareto import feasible_front
from .config import read_saved_config, search_objectives

_logger = logging.getLogger(__name__)

SUCCEEDED = "SUCCEEDED"


@dataclass
class Report:
    """Paths of what :func:`write_report` wrote, and the front itself."""

    trials_csv: Path
    front_csv: Path
    plots: list[Path]
    summary: Path
    front: pd.DataFrame


def pareto_table(trials: pd.DataFrame, objectives: Objectives) -> pd.DataFrame:
    """Succeeded trials on the Pareto front of ``objectives`` (constraints met), best first objective first."""
    needed = list(dict.fromkeys([*objectives.names, *objectives.constraints]))
    if trials.empty or not set(needed) <= set(trials.columns):
        return trials.iloc[0:0]
    succeeded = trials[trials.get("status") == SUCCEEDED]
    rows = succeeded[needed].to_dict("records")
    front = succeeded.iloc[feasible_front(rows, objectives)]
    first = objectives.names[0]
    return front.sort_values(first, ascending=objectives.directions[first] == "min")


def resolve_objectives(folder: ExperimentFolder, objectives: Optional[Mapping[str, str]] = None,
                       constraints: Optional[Mapping[str, float]] = None) -> Objectives:
    """The search's saved objectives and constraints, each overridden when given.

    Experiments not started by ``nni-capsnas search`` (no saved configuration) fall back to
    the default objectives.
    """
    saved = search_objectives(read_saved_config(folder.path))
    return Objectives(objectives if objectives is not None else saved.directions,
                      constraints if constraints is not None else saved.constraints)


def pair_front(points: pd.DataFrame, x: str, y: str, directions: Mapping[str, str]) -> pd.DataFrame:
    """The 2-D Pareto front of ``points`` for the objective pair (``x``, ``y``), sorted by ``x``."""
    pair = Objectives({x: directions[x], y: directions[y]})
    front = points.iloc[feasible_front(points[[x, y]].to_dict("records"), pair)]
    return front.sort_values(x)


def plot_pair(trials: pd.DataFrame, front: pd.DataFrame, x: str, y: str, objectives: Objectives,
              path: Path) -> Path:
    """One objective pair: every trial, that pair's own front as a step line, and the
    all-objective front members marked and labelled with their trial ids."""
    done = trials[(trials["status"] == SUCCEEDED) & trials[[x, y]].notna().all(axis=1)]
    within = done[[all(v <= 0 for v in objectives.violations(row).values())
                   for row in done.to_dict("records")]] if objectives.constraints else done
    figure = Figure(figsize=(6, 4.2))
    axes = figure.subplots()
    axes.scatter(done[x], done[y], s=16, c="0.65", label="trials")
    own = pair_front(within, x, y, objectives.directions)
    axes.step(own[x], own[y], where="post" if objectives.directions[y] == "max" else "pre", c="C0",
              label=f"front of {x} / {y} only")
    axes.scatter(front[x], front[y], s=46, marker="D", facecolors="none", edgecolors="C3", linewidths=1.5,
                 label="Pareto front (all objectives)", zorder=3)
    for row in front[["trial_id", x, y]].to_dict("records"):
        axes.annotate(str(row["trial_id"]), (row[x], row[y]), textcoords="offset points", xytext=(4, 4),
                      fontsize=7, color="C3")
    axes.set_xlabel(axis_label(x))
    axes.set_ylabel(axis_label(y))
    values = done[x][done[x] > 0]
    if len(values) and values.max() > 20 * values.min():
        axes.set_xscale("log")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def write_report(folder: ExperimentFolder, output: Path,
                 objectives: Optional[Mapping[str, str]] = None,
                 constraints: Optional[Mapping[str, float]] = None) -> Report:
    """Write ``trials.csv``, ``pareto_front.csv``, ``pareto_<metric>.png`` and ``summary.md``.

    ``objectives`` and ``constraints`` default to the search's own. One plot per objective
    after the first, against the first. Refuses to overwrite an existing report's files.
    """
    trials = read_trials(folder)
    if trials.empty:
        raise ValueError(f"experiment {folder.experiment_id} has no trials yet")
    objective_spec = resolve_objectives(folder, objectives, constraints)
    first, others = objective_spec.names[0], objective_spec.names[1:]
    output.mkdir(parents=True, exist_ok=True)
    names = ["trials.csv", "pareto_front.csv", "summary.md"] + [f"pareto_{m}.png" for m in others]
    clashes = [n for n in names if (output / n).exists()]
    if clashes:
        raise FileExistsError(f"{output} already holds {', '.join(clashes)}; choose another --output")
    front = pareto_table(trials, objective_spec)
    trials.to_csv(output / "trials.csv", index=False)
    front.to_csv(output / "pareto_front.csv", index=False)
    plots = [plot_pair(trials, front, metric, first, objective_spec, output / f"pareto_{metric}.png")
             for metric in others if not front.empty]
    summary = output / "summary.md"
    summary.write_text(_summary(folder, trials, front, objective_spec), encoding="utf-8")
    _logger.info("report of %s written to %s", folder.experiment_id, output)
    return Report(output / "trials.csv", output / "pareto_front.csv", plots, summary, front)


def _summary(folder: ExperimentFolder, trials: pd.DataFrame, front: pd.DataFrame, objectives: Objectives) -> str:
    counts = trials["status"].value_counts().to_dict() if "status" in trials else {}
    constraints = ", ".join(f"{k} <= {v:g}" for k, v in objectives.constraints.items()) or "none"
    lines = [f"# Experiment {folder.experiment_id}", "",
             f"- trials: {len(trials)} ({', '.join(f'{n} {s.lower()}' for s, n in counts.items())})",
             f"- objectives: {', '.join(f'{k} ({v})' for k, v in objectives.directions.items())}",
             f"- constraints: {constraints}",
             f"- Pareto front: {len(front)} architectures", ""]
    if not front.empty:
        columns = [c for c in dict.fromkeys(["trial_id", *objectives.names, "params"]) if c in front.columns]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in front[columns].to_dict("records"):
            lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"

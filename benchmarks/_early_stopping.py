"""The early-stopping study of ``search_quality.py``: replay each search with the rule of
:mod:`nni_capsnas.strategy.early_stopping` on the measured learning curves of cnn-864."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from _search_tables import SpaceTable
from nni_capsnas.app.commands import print_now
from nni_capsnas.strategy.early_stopping import cannot_reach_front, remaining_gain
from nni_capsnas.strategy.pareto import non_dominated

QUANTILES = (0.9, 1.0)


def replay(table: SpaceTable, sequence: Sequence[tuple], epoch_columns: Sequence[str],
           quantile: float) -> tuple[list[tuple], int, int]:
    """Trials that would finish under the rule, epochs trained, epochs without the rule."""
    finished: list[tuple] = []
    curves: list[list[float]] = []
    epochs, total = 0, 0
    for key in sequence:
        row = table.rows[key]
        curve = [float(row[column]) for column in epoch_columns]
        total += len(curve)
        point = table.scale.points([row])[0]
        front = _front(table, finished)
        stopped_after = None
        for epoch in range(1, len(curve)):
            if cannot_reach_front(curve[epoch - 1], remaining_gain(curves, epoch, quantile), point[1:], front):
                stopped_after = epoch
                break
        if stopped_after is None:
            epochs += len(curve)
            finished.append(key)
            curves.append(curve)
        else:
            epochs += stopped_after
    return finished, epochs, total


def _front(table: SpaceTable, keys: Sequence[tuple]) -> np.ndarray:
    if not keys:
        return np.zeros((0, len(table.objectives)))
    points = table.scale.points([table.rows[k] for k in keys])
    return points[non_dominated(points)]


def early_stopping_study(table: SpaceTable, frame: pd.DataFrame, epoch_columns: Sequence[str]) -> None:
    """Epochs saved and front quality lost, per strategy, at the largest budget."""
    last = frame[frame.budget == frame.budget.max()]
    rows = []
    for quantile in QUANTILES:
        for name, group in last.groupby("strategy", sort=False):
            saved, gap_loss = [], []
            for sequence in group["sequence"]:
                finished, epochs, total = replay(table, sequence, epoch_columns, quantile)
                saved.append(1 - epochs / total)
                gap_loss.append(table.gap(finished) - table.gap(list(sequence)))
            rows.append({"rule quantile": quantile, "strategy": name, "epochs saved": f"{np.mean(saved):.1%}",
                         "gap increase": f"{np.mean(gap_loss):+.4f}"})
    shown = pd.DataFrame(rows).set_index("rule quantile")
    print_now()
    print_now(f"Early stopping on the measured learning curves ({len(epoch_columns)} epochs), replayed on each "
              f"run at {int(last.budget.max())} evaluations (mean over seeds)")
    header = ["rule quantile", *shown.columns]
    print_now("| " + " | ".join(header) + " |")
    print_now("|" + "---|" * len(header))
    for quantile, row in shown.iterrows():
        print_now("| " + " | ".join([str(quantile), *map(str, row.values)]) + " |")

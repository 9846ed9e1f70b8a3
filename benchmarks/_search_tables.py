"""The two enumerable spaces of ``benchmarks/search_quality.py``, as tables with a known front.

- ``cnn-864``: the 864 two-convolution CNNs of ``_search_quality_space.py``, each trained once on
  digits (accuracy after every epoch, training seconds) and costed once with the ``capsacc``
  estimator (built by ``search_quality.py``, cached under ``benchmarks/output/``);
- ``nascaps-124k``: the 124,416 NASCaps-shaped networks of ``_nascaps_shaped_space.py``, with
  NASCaps' chromosome energy and latency and a synthetic accuracy (cached the same way).

The score of a run is its **hypervolume gap**: ``1 - HV(evaluated) / HV(true front)``, with the
hypervolume taken in raw objective units (accuracy; log10 of the costs, which span decades) up to
a fixed reference point: the true front's worst value of each objective plus 10% of the front's
range. Min-max normalising over the whole space instead puts most of the box behind any sample,
so every strategy scores near 1 and differences vanish.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import _nascaps_shaped_space as nascaps_shaped
from hw_estimators import estimate_chromosome
from nni_capsnas.strategy.objective_scale import ObjectiveScale
from nni_capsnas.strategy.objectives import Objectives
from nni_capsnas.strategy.pareto import hypervolume, non_dominated

_logger = logging.getLogger("search_quality")

OUTPUT_DIR = Path(__file__).resolve().parent / "output"
REFERENCE_MARGIN = 0.1


@dataclass
class SpaceTable:
    """One enumerated space: metrics per architecture, its true front and reference point.

    Attributes
    ----------
    name
        ``cnn-864`` or ``nascaps-124k``.
    candidates
        Label -> candidate values (gene order).
    frame
        One row per architecture: label columns and metric columns.
    objectives
        The benchmark's objectives on this space.
    hardware
        Metrics known before training (what a hardware estimator answers).
    space_factory
        Builds the NNI model space (its frozen instances have ``arch``: label -> value).
    train_seconds
        Column with each architecture's training time (measured or modelled).
    """

    name: str
    candidates: Mapping[str, Sequence[Any]]
    frame: pd.DataFrame
    objectives: Mapping[str, str]
    hardware: Sequence[str]
    space_factory: Callable[[], Any]
    train_seconds: str
    description: str
    rows: dict[tuple, dict[str, float]] = field(init=False)
    scale: ObjectiveScale = field(init=False)
    front_keys: list[tuple] = field(init=False)
    reference: np.ndarray = field(init=False)
    front_hv: float = field(init=False)

    def __post_init__(self) -> None:
        labels = list(self.candidates)
        metrics = [c for c in self.frame.columns if c not in labels]
        keys = [tuple(_typed(value, self.candidates[label]) for label, value in zip(labels, row))
                for row in self.frame[labels].itertuples(index=False)]
        values = self.frame[metrics].to_dict("records")
        self.rows = dict(zip(keys, values))
        self.scale = ObjectiveScale(Objectives(self.objectives))
        points = self.scale.points(values)
        front = non_dominated(points)
        self.front_keys = [keys[i] for i in front]
        worst, best = points[front].max(axis=0), points[front].min(axis=0)
        self.reference = worst + REFERENCE_MARGIN * np.where(worst > best, worst - best, 1.0)
        self.front_hv = hypervolume(points[front], self.reference)

    def key(self, sample: Mapping[str, Any]) -> tuple:
        return tuple(sample[label] for label in self.candidates)

    def gap(self, keys: Sequence[tuple]) -> float:
        """``1 - HV(keys) / HV(true front)`` (fixed reference point, raw objective units)."""
        if not keys:
            return 1.0
        points = self.scale.points([self.rows[k] for k in keys])
        return 1.0 - hypervolume(points[non_dominated(points)], self.reference) / self.front_hv

    def hardware_of(self, sample: Mapping[str, Any]) -> dict[str, float]:
        row = self.rows[self.key(sample)]
        return {name: float(row[name]) for name in self.hardware}


def _typed(value: Any, candidates: Sequence[Any]) -> Any:
    """A CSV cell as the candidate value it stands for."""
    for candidate in candidates:
        if str(candidate) == str(value) or (not isinstance(candidate, str) and not isinstance(value, str)
                                            and float(candidate) == float(value)):
            return candidate
    raise ValueError(f"table value {value!r} is not a candidate of {list(candidates)}")


# --- nascaps-124k --------------------------------------------------------------------------------

#: Modelled training time: a fixed start-up plus a time per MAC (the measured CapsNet half of NASCaps'
#: space took 15-399 s for 2 epochs on mnist-t10k, growing with MACs).
TRAIN_STARTUP_S, TRAIN_S_PER_GMAC = 15.0, 900.0


def nascaps_table(rebuild: bool = False) -> SpaceTable:
    """The NASCaps-shaped space (built in about 4 minutes on first use, then cached)."""
    path = OUTPUT_DIR / f"nascaps_shaped_{_digest()}.csv"
    if rebuild or not path.exists():
        _build_nascaps(path)
    frame = pd.read_csv(path)
    return SpaceTable("nascaps-124k", nascaps_shaped.CANDIDATES, frame,
                      {"accuracy": "max", "energy_mj": "min", "latency_ms": "min"},
                      ("energy_mj", "latency_ms", "memory_kib", "macs"), nascaps_shaped.NASCapsShapedSpace,
                      "train_seconds", f"{nascaps_shaped.space_size():,} NASCaps-shaped networks (28x28 input): "
                      "NASCaps' chromosome energy and latency (capsacc), synthetic accuracy")


def _digest() -> str:
    import hashlib
    import inspect

    source = inspect.getsource(nascaps_shaped) + f"{TRAIN_STARTUP_S},{TRAIN_S_PER_GMAC}"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _build_nascaps(path: Path) -> None:
    rows = []
    start = time.perf_counter()
    for sample in tqdm(nascaps_shaped.all_samples(), total=nascaps_shaped.space_size(), unit="arch",
                       desc="nascaps-124k table", mininterval=5):
        cost = estimate_chromosome(nascaps_shaped.chromosome(sample))
        rows.append({**sample, "accuracy": nascaps_shaped.synthetic_accuracy(sample), "energy_mj": cost.energy_mj,
                     "latency_ms": cost.latency_ms, "memory_kib": cost.weight_memory_kib, "macs": cost.macs,
                     "train_seconds": TRAIN_STARTUP_S + TRAIN_S_PER_GMAC * cost.macs / 1e9})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    pd.DataFrame(rows).to_csv(partial, index=False)
    partial.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"build_seconds": time.perf_counter() - start}))


def cnn_table(frame: pd.DataFrame, candidates: Mapping[str, Sequence[Any]], space_factory: Callable[[], Any],
              epochs: int) -> SpaceTable:
    """The measured 864-architecture table (built by ``search_quality.build_table``)."""
    return SpaceTable("cnn-864", candidates, frame,
                      {"accuracy": "max", "energy_mj": "min", "latency_ms": "min", "memory_kib": "min"},
                      ("energy_mj", "latency_ms", "memory_kib", "macs", "params"), space_factory, "train_s",
                      f"864 two-convolution CNNs, each trained {epochs} epochs on digits and costed on capsacc")


def prefix_gaps(table: SpaceTable, evaluated: Sequence[tuple], budgets: Sequence[int]) -> dict[int, float]:
    """The gap after the first ``b`` evaluations, for every budget ``b``."""
    return {budget: table.gap(list(evaluated[:budget])) for budget in budgets}


def seconds_to_gap(table: SpaceTable, evaluated: Sequence[tuple], target: float) -> float:
    """Training seconds spent until the gap first reaches ``target`` (inf if never)."""
    spent = 0.0
    for count, key in enumerate(evaluated, start=1):
        spent += float(table.rows[key][table.train_seconds])
        if count % 5 == 0 or count == len(evaluated):
            if table.gap(list(evaluated[:count])) <= target:
                return spent
    return math.inf

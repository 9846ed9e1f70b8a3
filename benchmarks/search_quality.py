"""Search quality: how close each strategy gets to the true Pareto front per evaluation.

Two enumerable spaces with known fronts (``_search_tables.py``): ``cnn-864``, 864 CNNs each
trained and costed once (the table is built on first use, about 15 minutes on 2 cores, and
cached under ``benchmarks/output/``), and ``nascaps-124k``, 124,416 NASCaps-shaped networks with
NASCaps' chromosome energy and latency and a synthetic accuracy. Every strategy runs on NNI's
sequential engine with an evaluator that looks the architecture up in the table; the hardware
metrics are available before training to the strategies that can use them (NSGA2's hardware
estimator). Score: the hypervolume gap ``1 - HV / HV(true front)`` at 25 / 50 / 100 / 200
evaluations (prefixes of one run per seed), raw objective units, fixed reference point.

Also measured: cost-aware selection (gain per expected training second) as the training seconds
spent until a gap is reached, and an early-stopping rule on the cnn-864 learning curves.

Run: ``.venv/bin/python benchmarks/search_quality.py [--spaces cnn-864 nascaps-124k] [--seeds 5]
[--budgets 25 50 100 200] [--strategies ...]``. Exits 0 whether or not the targets are met; the
last lines say which.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nni_capsnas.app.commands import print_now  # noqa: E402
from nni_capsnas.quiet import silence_known_warnings  # noqa: E402

silence_known_warnings()  # before NNI's modules are imported (they warn at import time)

import nni  # noqa: E402
from nni.nas.evaluator import FunctionalEvaluator  # noqa: E402
from nni.nas.execution import SequentialExecutionEngine  # noqa: E402
from nni.nas.space import SimplifiedModelSpace  # noqa: E402
from nni.nas.strategy import TPE, Random, RegularizedEvolution  # noqa: E402

from _search_quality_space import (  # noqa: E402
    CANDIDATES, COST_FREE_LABELS, INPUT_SHAPE, TinyCNNSpace, all_samples, arch_key, cost_key, definition_hash,
    space_size,
)
from _search_tables import SpaceTable, _typed, cnn_table, nascaps_table, prefix_gaps, seconds_to_gap  # noqa: E402
from _early_stopping import early_stopping_study  # noqa: E402
from nni_capsnas.hardware_cost import network_cost  # noqa: E402
from nni_capsnas.strategy import NSGA2  # noqa: E402
from trials.datasets import load_dataset  # noqa: E402
from trials.training import TrainConfig, train  # noqa: E402

OUTPUT_DIR = Path(__file__).resolve().parent / "output"
DATASET = "digits"
ACCELERATOR = "capsacc"
TRAINING = {"epochs": 3, "batch_size": 64, "learning_rate": 3e-3, "lr_decay": 0.96, "seed": 0}
#: Held-out accuracy after each epoch (learning curves, for the early-stopping study).
EPOCH_COLUMNS = [f"accuracy_epoch{epoch}" for epoch in range(1, TRAINING["epochs"] + 1)]
SPACES = ("cnn-864", "nascaps-124k")
STRATEGIES = ("NSGA2", "NSGA2+surrogate", "Random", "RegularizedEvolution", "TPE")
#: Targets on nascaps-124k: gap at most this at each budget, and below Random and RegularizedEvolution.
TARGETS = {50: 0.06, 100: 0.03, 200: 0.015}

# Strategy settings (public knobs only). Plain NSGA2 and RegularizedEvolution: chosen on seeds 100-119 of
# cnn-864 by an earlier study. The surrogate's: chosen on seeds 100-102 of both spaces (population 8 or 12,
# offspring 4 or 8, optimism 0.5 / 1 / 2, a first generation spread over the costs: all within noise of
# each other at 100-200 evaluations; 8 / 4 / 1 kept), never on the reported seeds.
NSGA2_SETTINGS = {"population_size": 12, "offspring_size": 12}
SURROGATE_SETTINGS = {"population_size": 8, "offspring_size": 4}
EVOLUTION_SETTINGS = {"population_size": 20, "sample_size": 5, "mutation_prob": 0.2}


# --------------------------------------------------------------------------------------------
# The cnn-864 table: every architecture trained and costed once
# --------------------------------------------------------------------------------------------

def table_paths() -> tuple[Path, Path, str]:
    """CSV and metadata paths of the table for the current definition, and its hash."""
    digest = definition_hash({"dataset": DATASET, "accelerator": ACCELERATOR, "training": TRAINING,
                              "table_version": 2})
    return (OUTPUT_DIR / f"search_quality_table_{digest}.csv",
            OUTPUT_DIR / f"search_quality_table_{digest}.json", digest)


def build_table(path: Path, meta_path: Path) -> float:
    """Train and cost every architecture; rows go to ``<path>.partial`` first (resumable).

    Returns the build time in seconds (of this call plus any earlier partial build).
    """
    columns = [*CANDIDATES, "accuracy", "energy_mj", "latency_ms", "memory_kib", "macs", "params",
               "train_s", "estimate_s", *EPOCH_COLUMNS]
    partial = path.with_suffix(".csv.partial")
    done: set[tuple] = set()
    earlier = 0.0
    if partial.exists():
        previous = pd.read_csv(partial)
        done = {arch_key({label: _typed(row[label], values) for label, values in CANDIDATES.items()})
                for row in previous.to_dict("records")}
        earlier = float(previous["train_s"].sum() + previous["estimate_s"].sum())
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("w", newline="") as handle:
            csv.writer(handle).writerow(columns)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: one thread is faster, and the machine is shared
    space = TinyCNNSpace()
    data = load_dataset(DATASET)
    config = TrainConfig(**TRAINING)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for sample in all_samples():
        groups.setdefault(cost_key(sample), []).append(sample)
    start = time.perf_counter()
    try:
        _check_cost_free_labels(space, next(iter(groups.values())), network_cost)
        with partial.open("a", newline="") as handle, \
                tqdm(total=space_size(), initial=len(done), unit="arch", desc="building table") as bar:
            writer = csv.writer(handle)
            for samples in groups.values():
                todo = [s for s in samples if arch_key(s) not in done]
                if not todo:
                    continue
                tic = time.perf_counter()
                cost = network_cost(space.freeze(todo[0]), INPUT_SHAPE, accelerator=ACCELERATOR)
                estimate_s = (time.perf_counter() - tic) / len(todo)
                for sample in todo:
                    tic = time.perf_counter()
                    torch.manual_seed(TRAINING["seed"])
                    model = space.freeze(sample)
                    history = train(model, data, config, progress=False).history
                    writer.writerow([*(sample[label] for label in CANDIDATES), history[-1].val_accuracy,
                                     cost["energy_mj"], cost["latency_ms"], cost["memory_kib"], cost["macs"],
                                     cost["params"], time.perf_counter() - tic, estimate_s,
                                     *(record.val_accuracy for record in history)])
                    bar.update(1)
                handle.flush()
    finally:
        torch.set_num_threads(threads)
    seconds = earlier + time.perf_counter() - start
    partial.replace(path)
    meta_path.write_text(json.dumps({"build_seconds": seconds, "architectures": space_size(),
                                     "training": TRAINING, "dataset": DATASET, "accelerator": ACCELERATOR,
                                     "torch_threads": 1}, indent=2))
    return seconds


def _check_cost_free_labels(space: TinyCNNSpace, samples: list[dict[str, Any]],
                            network_cost: Callable[..., dict[str, float]]) -> None:
    """Labels in COST_FREE_LABELS must not change the estimate (they share one export)."""
    if len(samples) < 2:
        return
    costs = [network_cost(space.freeze(samples[i]), INPUT_SHAPE, accelerator=ACCELERATOR) for i in (0, -1)]
    if costs[0] != costs[1]:
        raise RuntimeError(f"{COST_FREE_LABELS} change the hardware estimate ({costs[0]} vs {costs[1]}); "
                           "they cannot share one export")




def load_cnn_table(rebuild: bool) -> SpaceTable:
    """The cnn-864 table (trained and costed on first use)."""
    path, meta_path, _ = table_paths()
    if rebuild or not path.exists():
        if rebuild:
            path.with_suffix(".csv.partial").unlink(missing_ok=True)
        print_now(f"Building the cnn-864 table ({space_size()} architectures, {DATASET}, {TRAINING['epochs']} "
                  f"epochs, {ACCELERATOR}) -> {path}")
        build_table(path, meta_path)
    return cnn_table(pd.read_csv(path), CANDIDATES, TinyCNNSpace, TRAINING["epochs"])


# --------------------------------------------------------------------------------------------
# Runs: each strategy on NNI's sequential engine, objectives looked up in the table
# --------------------------------------------------------------------------------------------

class TableLookup:
    """The evaluator's body: report an architecture's metrics from the table, remember the order."""

    def __init__(self, table: SpaceTable, default: str) -> None:
        self.table = table
        self.default = default
        self.evaluated: list[tuple] = []
        points = table.scale.points(list(table.rows.values()))
        self._low, self._high = points.min(axis=0), points.max(axis=0)

    def __call__(self, model: Any) -> None:
        key = self.table.key(model.arch)
        metrics = dict(self.table.rows[key])
        metrics["train_seconds"] = metrics[self.table.train_seconds]  # the trials' own name for it
        metrics["default"] = self.scalarised(metrics) if self.default == "scalarised" else metrics["accuracy"]
        self.evaluated.append(key)
        nni.report_final_result(metrics)

    def scalarised(self, metrics: Mapping[str, float]) -> float:
        """Mean of the objectives min-max normalised over the table (comparison scale), higher is better."""
        point = self.table.scale.points([metrics])[0]
        normalised = (point - self._low) / np.where(self._high > self._low, self._high - self._low, 1.0)
        return float(1.0 - normalised.mean())


def make_strategy(name: str, table: SpaceTable, seed: int, surrogate_options: Mapping[str, Any]) -> Any:
    """A fresh strategy; NSGA2 variants get the table's hardware metrics before training."""
    if name.startswith("NSGA2"):
        if name == "NSGA2":
            return NSGA2(objectives=dict(table.objectives), seed=seed, surrogate=None,
                         hardware_estimator=table.hardware_of, **NSGA2_SETTINGS)
        options = {**SURROGATE_SETTINGS, "cost_aware": name.endswith("/s"), **surrogate_options}
        return NSGA2(objectives=dict(table.objectives), seed=seed, hardware_estimator=table.hardware_of, **options)
    if name == "Random":
        return Random(seed=seed)
    if name == "RegularizedEvolution":
        return RegularizedEvolution(seed=seed, **EVOLUTION_SETTINGS)
    if name == "TPE":
        return TPE()
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)} or NSGA2+surrogate/s")


def run_once(table: SpaceTable, name: str, budget: int, seed: int,
             surrogate_options: Mapping[str, Any] = {}) -> list[tuple]:
    """One search of ``budget`` evaluations; returns the architectures it evaluated, in order."""
    nni_default = "accuracy" if name.startswith("NSGA2") else "scalarised"
    lookup = TableLookup(table, nni_default)
    space = SimplifiedModelSpace.from_model(table.space_factory(), FunctionalEvaluator(lookup))
    np.random.seed(seed)  # NNI's TPE draws from numpy's global generator
    make_strategy(name, table, seed, surrogate_options)(space, SequentialExecutionEngine(max_model_count=budget))
    return list(lookup.evaluated)


def run_all(table: SpaceTable, strategies: Sequence[str], seeds: Sequence[int], budgets: Sequence[int],
            surrogate_options: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for name in strategies:
        for seed in tqdm(seeds, desc=f"{table.name} {name}", unit="run", leave=False):
            tic = time.perf_counter()
            evaluated = run_once(table, name, max(budgets), seed, surrogate_options)
            seconds = time.perf_counter() - tic
            for budget, gap in prefix_gaps(table, evaluated, budgets).items():
                rows.append({"space": table.name, "strategy": name, "seed": seed, "budget": budget, "gap": gap,
                             "evaluated": min(len(evaluated), budget), "distinct": len(set(evaluated[:budget])),
                             "found": len(set(evaluated[:budget]) & set(table.front_keys)), "run_s": seconds,
                             "sequence": evaluated})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def report(table: SpaceTable, frame: pd.DataFrame, budgets: Sequence[int], seeds: Sequence[int]) -> None:
    print_now()
    print_now(f"## {table.name}: {table.description}")
    print_now(f"Objectives {dict(table.objectives)}; true front {len(table.front_keys)} architectures; reference "
              f"point (accuracy, log10 costs) = {np.round(table.reference * [-1 if d == 'max' else 1 for d in table.objectives.values()], 4).tolist()}")
    stats = frame.groupby(["strategy", "budget"])["gap"].agg(["mean", "std"])
    order = list(dict.fromkeys(frame["strategy"]))
    shown = pd.DataFrame({budget: {name: f"{stats.loc[(name, budget), 'mean']:.3f} ± "
                                         f"{_zero_nan(stats.loc[(name, budget), 'std']):.3f}"
                                   for name in order} for budget in budgets})
    shown.index.name = "strategy \\ evaluations"
    print_now()
    print_now(f"Hypervolume gap 1 - HV/HV(true front), mean ± std over seeds {seeds[0]}-{seeds[-1]} (lower is better)")
    print_now(markdown(shown))
    found = frame.groupby(["strategy", "budget"])["found"].mean().unstack().loc[order]
    found.index.name = "strategy \\ evaluations"
    print_now()
    print_now(f"True-front architectures found (mean; the front has {len(table.front_keys)})")
    print_now(markdown(found.map(lambda v: f"{v:.1f}")))
    seconds = frame.groupby("strategy")["run_s"].mean().loc[order]
    print_now("Strategy time per run (s, all budgets): " + ", ".join(f"{n} {s:.1f}" for n, s in seconds.items()))


def cost_report(table: SpaceTable, frame: pd.DataFrame, targets: Sequence[float]) -> None:
    """Training seconds each strategy spends until its gap first reaches each target."""
    rows = {}
    for name, group in frame[frame.budget == frame.budget.max()].groupby("strategy", sort=False):
        rows[name] = {f"gap <= {t:g}": _median_seconds(table, group["sequence"], t) for t in targets}
    shown = pd.DataFrame(rows).T
    shown.index.name = "strategy"
    print_now()
    print_now(f"Training seconds until the gap first reaches each level (median over seeds; '-': not within the "
              f"budget), {table.name} ({table.train_seconds})")
    print_now(markdown(shown))


def _median_seconds(table: SpaceTable, sequences: pd.Series, target: float) -> str:
    values = sorted(seconds_to_gap(table, sequence, target) for sequence in sequences)
    median = values[len(values) // 2]
    return "-" if math.isinf(median) else f"{median:,.0f}"


def verdict(frame: pd.DataFrame) -> None:
    means = frame.groupby(["strategy", "budget"])["gap"].mean()
    lines, met = [], True
    for budget, limit in TARGETS.items():
        if ("NSGA2+surrogate", budget) not in means:
            continue
        value = means[("NSGA2+surrogate", budget)]
        beats = all(value < means[(other, budget)] for other in ("Random", "RegularizedEvolution")
                    if (other, budget) in means)
        ok = value <= limit and beats
        met &= ok
        lines.append(f"{budget}: {value:.3f} ({'<=' if value <= limit else '>'} {limit}; "
                     f"{'below' if beats else 'NOT below'} Random and RegularizedEvolution)")
    print_now()
    print_now("Targets on nascaps-124k (NSGA2+surrogate): " + "; ".join(lines))
    print_now(f"TARGET {'MET' if met and lines else 'MISSED'}")


def markdown(frame: pd.DataFrame) -> str:
    """A markdown table of ``frame`` (index as the first column; no extra dependency)."""
    header = [str(frame.index.name or ""), *map(str, frame.columns)]
    rows = [[str(index), *map(str, values)] for index, values in zip(frame.index, frame.to_numpy())]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def _zero_nan(value: float) -> float:
    return 0.0 if isinstance(value, float) and math.isnan(value) else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        help=f"any of {', '.join(STRATEGIES)}, NSGA2+surrogate/s (cost-aware)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200], help="evaluations")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (100: the tuning seeds)")
    parser.add_argument("--rebuild-tables", action="store_true", help="measure the tables again")
    parser.add_argument("--early-stopping", action="store_true", help="also run the early-stopping study")
    parser.add_argument("--surrogate-options", type=json.loads, default={},
                        help='NSGA2 keyword arguments over the surrogate defaults, e.g. \'{"optimism": 0.5}\' '
                             '(to tune on --seed-offset 100)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.budgets) or args.seeds < 1:
        parser.error("--budgets and --seeds must be positive")
    for name in args.strategies:
        if name not in STRATEGIES and name != "NSGA2+surrogate/s":
            parser.error(f"unknown strategy {name!r}")
    logging.getLogger("nni").setLevel(logging.ERROR)
    logging.getLogger("nni_capsnas").setLevel(logging.WARNING)
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    budgets = sorted(args.budgets)
    print_now(f"CPU threads: {torch.get_num_threads()}; budgets {budgets}; seeds {seeds[0]}-{seeds[-1]}")
    for space in args.spaces:
        table = load_cnn_table(args.rebuild_tables) if space == "cnn-864" else nascaps_table(args.rebuild_tables)
        frame = run_all(table, args.strategies, seeds, budgets, args.surrogate_options)
        report(table, frame, budgets, seeds)
        if any(name.endswith("/s") for name in args.strategies):
            cost_report(table, frame, [0.10, 0.05, 0.03])
        if space == "nascaps-124k":
            verdict(frame)
        if args.early_stopping and space == "cnn-864":
            early_stopping_study(table, frame, EPOCH_COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

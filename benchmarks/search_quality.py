"""Search quality of NSGA2 against NNI's Random and RegularizedEvolution on a space with a known front.

The space (``benchmarks/_search_quality_space.py``) is small enough to enumerate: every
architecture is trained once on digits (seeded, a few epochs) and costed once with the
``capsacc`` hardware estimator, and the table is cached as CSV under ``benchmarks/output/``
(keyed by a hash of the space and training definition). Each strategy then runs as a real
``NasExperiment`` on NNI's sequential (in-process) engine with an evaluator that looks the
architecture up in the table; the score of a run is the hypervolume of the non-dominated set
of everything it evaluated, as a fraction of the true Pareto front's hypervolume.

Run: ``.venv/bin/python benchmarks/search_quality.py [--budgets 50 100 200] [--seeds 5]
[--rebuild-table]``. Exits 0 whether or not the target is met; the last line says which.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nni_capsnas.app.commands import print_now  # noqa: E402
from nni_capsnas.quiet import silence_known_warnings  # noqa: E402

silence_known_warnings()  # before NNI's modules are imported (they warn at import time)

from _search_quality_space import (  # noqa: E402
    CANDIDATES, COST_FREE_LABELS, INPUT_SHAPE, TinyCNNSpace, all_samples, arch_key, cost_key, definition_hash,
    space_size,
)

OUTPUT_DIR = Path(__file__).resolve().parent / "output"
DATASET = "digits"
ACCELERATOR = "capsacc"
TRAINING = {"epochs": 3, "batch_size": 64, "learning_rate": 3e-3, "lr_decay": 0.96, "seed": 0}
#: Objectives of every strategy's front and of the hypervolume (NSGA2 gets all of them).
OBJECTIVES = {"accuracy": "max", "energy_mj": "min", "latency_ms": "min", "memory_kib": "min"}
HARDWARE = [name for name, direction in OBJECTIVES.items() if direction == "min"]
#: RegularizedEvolution maximises accuracy_n - sum(w * cost_n), every metric min-max normalised.
SCALARISATION_WEIGHTS = {name: 1.0 / len(HARDWARE) for name in HARDWARE}
REFERENCE = 1.1  # hypervolume reference point in normalised objective space (nadir = 1)
TARGET_FRACTION = 0.90
TARGET_BUDGET = 200

# Strategy settings (public knobs only), chosen on seeds 100-119 (``--seeds 20 --seed-offset 100``), not
# on the reported seeds 0-4. NSGA2 keeps its default operators (uniform crossover, ResampleMutation);
# population/offspring 6-20 and other mutation rates were all within noise of this choice.
NSGA2_SETTINGS = {"population_size": 12, "offspring_size": 12}
EVOLUTION_SETTINGS = {"population_size": 20, "sample_size": 5, "mutation_prob": 0.2}


# --------------------------------------------------------------------------------------------
# The table: every architecture trained and costed once
# --------------------------------------------------------------------------------------------

def table_paths() -> tuple[Path, Path, str]:
    """CSV and metadata paths of the table for the current definition, and its hash."""
    digest = definition_hash({"dataset": DATASET, "accelerator": ACCELERATOR, "training": TRAINING,
                              "table_version": 1})
    return (OUTPUT_DIR / f"search_quality_table_{digest}.csv",
            OUTPUT_DIR / f"search_quality_table_{digest}.json", digest)


def build_table(path: Path, meta_path: Path) -> float:
    """Train and cost every architecture; rows go to ``<path>.partial`` first (resumable).

    Returns the build time in seconds (of this call plus any earlier partial build).
    """
    from nni_capsnas.hardware_cost import network_cost
    from trials.datasets import load_dataset
    from trials.training import TrainConfig, train

    columns = [*CANDIDATES, "accuracy", "energy_mj", "latency_ms", "memory_kib", "macs", "params",
               "train_s", "estimate_s"]
    partial = path.with_suffix(".csv.partial")
    done: set[tuple] = set()
    earlier = 0.0
    if partial.exists():
        previous = pd.read_csv(partial)
        done = {arch_key(_typed(row)) for row in previous.to_dict("records")}
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
                    accuracy = train(model, data, config, progress=False).final_accuracy
                    writer.writerow([*(sample[label] for label in CANDIDATES), accuracy, cost["energy_mj"],
                                     cost["latency_ms"], cost["memory_kib"], cost["macs"], cost["params"],
                                     time.perf_counter() - tic, estimate_s])
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


def _typed(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row's label values as the space's own candidate values (int, float, str)."""
    sample = {}
    for label, values in CANDIDATES.items():
        matches = [v for v in values if str(v) == str(row[label]) or (
            not isinstance(v, str) and not isinstance(row[label], str) and float(v) == float(row[label]))]
        if not matches:
            raise ValueError(f"table value {row[label]!r} of {label!r} is not a candidate {values}")
        sample[label] = matches[0]
    return sample


@dataclass
class Table:
    """The enumerated space: objectives per architecture, normalisation and the true front."""

    frame: pd.DataFrame
    rows: dict[tuple, dict[str, float]] = field(init=False)
    ideal: np.ndarray = field(init=False)
    nadir: np.ndarray = field(init=False)
    front: np.ndarray = field(init=False)
    front_hv: float = field(init=False)

    def __post_init__(self) -> None:
        from nni_capsnas.strategy.pareto import non_dominated

        records = self.frame.to_dict("records")
        self.rows = {arch_key(_typed(r)): {name: float(r[name]) for name in (*OBJECTIVES, "macs", "params")}
                     for r in records}
        if len(self.rows) != space_size():
            raise ValueError(f"the table has {len(self.rows)} architectures, the space {space_size()}")
        points = self.minimisation(list(self.rows.values()))
        self.ideal, self.nadir = points.min(axis=0), points.max(axis=0)
        self.front = non_dominated(self.normalise(points))
        self.front_hv = self.hypervolume(list(self.rows.values()))

    @staticmethod
    def minimisation(metrics: list[Mapping[str, float]]) -> np.ndarray:
        return np.array([[-m[name] if d == "max" else m[name] for name, d in OBJECTIVES.items()] for m in metrics])

    def normalise(self, points: np.ndarray) -> np.ndarray:
        span = np.where(self.nadir > self.ideal, self.nadir - self.ideal, 1.0)
        return (points - self.ideal) / span

    def hypervolume(self, metrics: list[Mapping[str, float]]) -> float:
        """Hypervolume of the non-dominated part of ``metrics`` (normalised, reference 1.1)."""
        from nni_capsnas.strategy.pareto import hypervolume, non_dominated

        if not metrics:
            return 0.0
        points = self.normalise(self.minimisation(metrics))
        return hypervolume(points[non_dominated(points)], np.full(len(OBJECTIVES), REFERENCE))

    def scalarised(self, metrics: Mapping[str, float]) -> float:
        """accuracy_n - sum(w * cost_n), every metric min-max normalised over the table."""
        norm = self.normalise(self.minimisation([metrics]))[0]  # accuracy_n is negated (minimised) here
        named = dict(zip(OBJECTIVES, norm))
        return float(1.0 - named["accuracy"] - sum(w * named[n] for n, w in SCALARISATION_WEIGHTS.items()))


def load_table(rebuild: bool) -> tuple[Table, float, bool]:
    """The table (built if missing or asked), its build time in seconds, whether it was cached."""
    path, meta_path, digest = table_paths()
    cached = path.exists() and not rebuild
    if not cached:
        if rebuild:
            path.with_suffix(".csv.partial").unlink(missing_ok=True)
        print_now(f"Building the table ({space_size()} architectures, {DATASET}, {TRAINING['epochs']} epochs, "
                  f"{ACCELERATOR}) -> {path}")
        build_table(path, meta_path)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return Table(pd.read_csv(path)), float(meta.get("build_seconds", math.nan)), cached


# --------------------------------------------------------------------------------------------
# Runs: real NasExperiments on NNI's sequential engine, objectives looked up in the table
# --------------------------------------------------------------------------------------------

_TABLE: Optional[Table] = None
_EVALUATED: list[tuple] = []


def report_from_table(model: TinyCNNSpace, default: str) -> None:
    """FunctionalEvaluator body: report the architecture's metrics from the table."""
    import nni

    assert _TABLE is not None
    key = arch_key(model.arch)
    metrics = dict(_TABLE.rows[key])
    metrics["default"] = _TABLE.scalarised(metrics) if default == "scalarised" else metrics["accuracy"]
    _EVALUATED.append(key)
    nni.report_final_result(metrics)


def make_strategy(name: str, seed: int) -> Any:
    from nni.nas.strategy import Random, RegularizedEvolution

    from nni_capsnas.strategy import NSGA2

    if name == "NSGA2":
        return NSGA2(objectives=OBJECTIVES, seed=seed, **NSGA2_SETTINGS)
    if name == "Random":
        return Random(seed=seed)
    if name == "RegularizedEvolution":
        return RegularizedEvolution(seed=seed, **EVOLUTION_SETTINGS)
    raise ValueError(f"unknown strategy {name!r}")


STRATEGIES = ("NSGA2", "Random", "RegularizedEvolution")


def run_once(name: str, budget: int, seed: int) -> list[tuple]:
    """One NasExperiment; returns the architectures it evaluated, in order."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment
    from nni.nas.experiment.config import SequentialEngineConfig
    from nni.tools.nnictl.config_utils import Experiments

    _EVALUATED.clear()
    default = "scalarised" if name == "RegularizedEvolution" else "accuracy"
    evaluator = FunctionalEvaluator(report_from_table, default=default)
    experiment = NasExperiment(TinyCNNSpace(), evaluator, make_strategy(name, seed))
    experiment.config.execution_engine = SequentialEngineConfig()
    experiment.config.max_trial_number = budget
    experiment.config.trial_concurrency = 1
    with tempfile.TemporaryDirectory(prefix="search-quality-") as workdir:
        experiment.config.experiment_working_directory = workdir
        try:
            experiment.run()
        finally:
            experiment.stop()
            Experiments().remove_experiment(experiment.id)  # keep the user's experiment list clean
    return list(_EVALUATED)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200], help="evaluations per run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy and budget")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="first seed (e.g. 100 to check on seeds the settings were not chosen on)")
    parser.add_argument("--rebuild-table", action="store_true", help="measure the table again")
    args = parser.parse_args()
    if any(b < 1 for b in args.budgets) or args.seeds < 1:
        parser.error("--budgets and --seeds must be positive")

    # One experiment per run: keep stdout readable (NNI also warns on every run that the sequential
    # engine ignores the training service).
    logging.getLogger("nni").setLevel(logging.ERROR)
    logging.getLogger("nni_capsnas").setLevel(logging.WARNING)

    global _TABLE
    table_start = time.perf_counter()
    _TABLE, build_seconds, cached = load_table(args.rebuild_table)
    load_seconds = time.perf_counter() - table_start

    front = _front_keys(_TABLE)
    results = []
    run_seconds: dict[str, float] = {name: 0.0 for name in STRATEGIES}
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    runs = [(name, budget, seed) for budget in args.budgets for name in STRATEGIES for seed in seeds]
    for name, budget, seed in tqdm(runs, desc="search runs", unit="run"):
        tic = time.perf_counter()
        evaluated = run_once(name, budget, seed)
        run_seconds[name] += time.perf_counter() - tic
        fraction = _TABLE.hypervolume([_TABLE.rows[k] for k in evaluated]) / _TABLE.front_hv
        results.append({"strategy": name, "budget": budget, "seed": seed, "evaluated": len(evaluated),
                        "distinct": len(set(evaluated)), "hv_fraction": fraction,
                        "front_found": len(set(evaluated) & front)})
    frame = pd.DataFrame(results)
    report(frame, args, build_seconds, cached, load_seconds, run_seconds)
    return 0


def _front_keys(table: Table) -> set[tuple]:
    keys = list(table.rows)
    return {keys[i] for i in table.front}


def report(frame: pd.DataFrame, args: argparse.Namespace, build_seconds: float, cached: bool,
           load_seconds: float, run_seconds: Mapping[str, float]) -> None:
    assert _TABLE is not None
    path, _, digest = table_paths()
    distinct_graphs = len({cost_key(_typed(r)) for r in _TABLE.frame.to_dict("records")})
    print_now()
    print_now(f"Space: {space_size()} architectures ({distinct_graphs} distinct inference graphs; labels "
              + ", ".join(f"{k}={list(v)}" for k, v in CANDIDATES.items()) + ")")
    print_now(f"Objectives: {OBJECTIVES}; accuracy after {TRAINING['epochs']} epochs on {DATASET} (seed "
              f"{TRAINING['seed']}), hardware from the {ACCELERATOR} estimator")
    print_now(f"True Pareto front: {len(_TABLE.front)} architectures; hypervolume {_TABLE.front_hv:.4f} "
              f"(objectives normalised to [0, 1] by the table's ideal and nadir, reference point {REFERENCE})")
    print_now(f"Table {digest}: " + (f"loaded from cache in {load_seconds:.1f} s (built in {build_seconds:.0f} s)"
                                 if cached else f"built in {build_seconds:.0f} s") + f" -> {path}")
    print_now("Run time per strategy (all budgets and seeds): "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run_seconds.items()))
    print_now(f"Settings: NSGA2 {NSGA2_SETTINGS}; RegularizedEvolution {EVOLUTION_SETTINGS}, default = "
              f"accuracy_n - {' - '.join(f'{w:.3g}*{n}_n' for n, w in SCALARISATION_WEIGHTS.items())}; "
              "Random dedup=True")
    short = frame[frame.evaluated < frame.budget]
    if len(short):
        print_now(f"Note: {len(short)} runs evaluated fewer architectures than their budget:")
        print_now(short.to_string(index=False))

    summary = frame.groupby(["strategy", "budget"])["hv_fraction"].agg(["mean", "std"])
    table = pd.DataFrame({budget: {name: f"{summary.loc[(name, budget), 'mean']:.3f} ± "
                                         f"{_zero_nan(summary.loc[(name, budget), 'std']):.3f}"
                                   for name in STRATEGIES} for budget in args.budgets})
    table.index.name = "strategy \\ evaluations"
    print_now()
    print_now(f"Hypervolume as a fraction of the true front's (mean ± std over {args.seeds} seeds, "
              f"{args.seed_offset}-{args.seed_offset + args.seeds - 1})")
    print_now(markdown(table))
    best_baseline = summary["mean"].unstack().loc[list(STRATEGIES[1:])].max()
    lead = summary["mean"].unstack().loc["NSGA2"] - best_baseline
    print_now("NSGA2 minus the best baseline (mean): " + ", ".join(f"{b}: {lead[b]:+.3f}" for b in args.budgets))
    found = frame.groupby(["strategy", "budget"])["front_found"].mean().unstack().loc[list(STRATEGIES)]
    found.index.name = "strategy \\ evaluations"
    print_now()
    print_now(f"True-front architectures found (mean; the front has {len(_TABLE.front)})")
    print_now(markdown(found.map(lambda v: f"{v:.1f}")))

    means = summary["mean"]
    target_budget = TARGET_BUDGET if TARGET_BUDGET in args.budgets else max(args.budgets)
    reaches = means[("NSGA2", target_budget)] >= TARGET_FRACTION
    leads = {budget: all(means[("NSGA2", budget)] > means[(other, budget)] for other in STRATEGIES[1:])
             for budget in args.budgets}
    print_now()
    print_now(f"NSGA2 at {target_budget} evaluations: {means[('NSGA2', target_budget)]:.3f} "
              f"({'>=' if reaches else '<'} {TARGET_FRACTION:.2f})"
              + ("" if target_budget == TARGET_BUDGET else f" [target is defined at {TARGET_BUDGET}]"))
    print_now("NSGA2 leads both baselines at " + ", ".join(f"{b}: {'yes' if ok else 'no'}" for b, ok in leads.items()))
    met = bool(reaches and all(leads.values()) and target_budget == TARGET_BUDGET)
    print_now(f"TARGET {'MET' if met else 'MISSED'}")


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


if __name__ == "__main__":
    sys.exit(main())

"""Surrogate-assisted against plain NSGA-II in real NNI searches: trained networks, real front.

Each run is a complete ``nni-capsnas search`` (NNI's local training service, the CapsNet-style
half of NASCaps' space, the official MNIST test split as data) with the same budget of trials
and epochs; the score is the hypervolume of the front the trials measured (accuracy, energy,
latency; log10 of the costs), inside one reference box shared by every run (the worst values
of the union of all runs' fronts plus 10% of their range), and the wall-clock time. Both
variants get the pre-training hardware estimate (plain NSGA-II uses it only to check
constraints before training; the surrogate variant also ranks candidates with it).

Run: ``.venv/bin/python benchmarks/real_search.py --data-root DIR [--seeds 3] [--trials 24] [--epochs 1]``
(docs/benchmarks.md: ``--trials 14 --population 4``, about 1.5 hours on 2 cores)
(DIR holds ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``). One run takes about
``trials / concurrency x`` a few minutes on 2 cores; nothing is written outside ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nni_capsnas.app.commands import print_now  # noqa: E402
from nni_capsnas.quiet import silence_known_warnings  # noqa: E402

silence_known_warnings()

from nni_capsnas.app.config import parse_config  # noqa: E402
from nni_capsnas.app.search_runner import run_search  # noqa: E402
from nni_capsnas.nni_compat.experiment_db import locate_experiment, read_trials  # noqa: E402
from nni_capsnas.strategy.objective_scale import ObjectiveScale  # noqa: E402
from nni_capsnas.strategy.objectives import Objectives  # noqa: E402
from nni_capsnas.strategy.pareto import hypervolume, non_dominated  # noqa: E402
from search_quality import markdown  # noqa: E402

OBJECTIVES = {"accuracy": "max", "energy_mj": "min", "latency_ms": "min"}
#: The CapsNet-style half of NASCaps' space, sized for 28x28 inputs on 2 cores.
SPACE_OPTIONS = {"families": ["capsnet"], "conv_depths": [1, 2, 3], "conv_channels": [16, 32, 64],
                 "caps_layers": [2, 3], "decoder": False}
VARIANTS = {"surrogate": {"surrogate": "gaussian-process"}, "plain": {"surrogate": "none"}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(variant: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    config = parse_config({
        "experiment": {"name": f"real-search-{variant}-{seed}", "max_trials": args.trials,
                       "trial_concurrency": args.concurrency, "port": _free_port(), "workdir": str(workdir)},
        "dataset": {"name": "mnist-t10k", "root": args.data_root, "seed": 0},
        "space": {"name": "nascaps", "options": SPACE_OPTIONS},
        "training": {"epochs": args.epochs, "seed": seed},
        "hardware": {"measure_host": False},
        "strategy": {"name": "nsga2", "population_size": args.population, "offspring_size": args.concurrency * 2,
                     "seed": seed, "objectives": OBJECTIVES, "options": VARIANTS[variant]},
    })
    tic = time.perf_counter()
    outcome = run_search(config)
    seconds = time.perf_counter() - tic
    trials = read_trials(locate_experiment(outcome.experiment_id, workdir))
    done = trials[trials["status"] == "SUCCEEDED"]
    return {"variant": variant, "seed": seed, "experiment": outcome.experiment_id, "seconds": seconds,
            "trained": len(done), "epochs": len(done) * args.epochs, "rows": done[list(OBJECTIVES)].to_dict("records"),
            "train_seconds": float(done["train_seconds"].sum()) if "train_seconds" in done else float("nan")}


def score(results: list[dict[str, Any]]) -> pd.DataFrame:
    """Hypervolume of each run's measured front inside the box shared by all runs."""
    scale = ObjectiveScale(Objectives(OBJECTIVES))
    fronts = []
    for result in results:
        points = scale.points(result["rows"])
        fronts.append(points[non_dominated(points)] if len(points) else points)
    union = np.vstack([f for f in fronts if len(f)])
    best, worst = union.min(axis=0), union.max(axis=0)
    reference = worst + 0.1 * np.where(worst > best, worst - best, 1.0)
    box = float(np.prod(reference - best))
    rows = []
    for result, front in zip(results, fronts):
        rows.append({"variant": result["variant"], "seed": result["seed"],
                     "hypervolume": hypervolume(front, reference) / box if len(front) else 0.0,
                     "front": len(front), "trained": result["trained"], "epochs": result["epochs"],
                     "train s": result["train_seconds"], "wall s": result["seconds"]})
    return pd.DataFrame(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder with the MNIST test-split IDX files")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--workdir", type=Path, help="experiments folder (default: a temporary one, removed)")
    parser.add_argument("--results", type=Path, help="JSON-lines file each finished run is appended to")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="real-search-") as scratch:
        workdir = args.workdir or Path(scratch)
        results = []
        for seed in range(args.seeds):
            for variant in args.variants:
                results.append(run(variant, seed, args, workdir))
                done = results[-1]
                print_now(f"{variant} seed {seed}: {done['trained']} trials, {done['epochs']} epochs, "
                          f"{done['seconds']:.0f} s (experiment {done['experiment']})")
                if args.results:
                    with args.results.open("a") as sink:
                        sink.write(json.dumps(done) + "\n")
    frame = score(results)
    print_now()
    print_now(f"Real searches: NASCaps space, CapsNet half {SPACE_OPTIONS}, mnist-t10k, {args.trials} trials x "
              f"{args.epochs} epochs, {args.concurrency} at a time; hypervolume of the measured front "
              f"(accuracy, log10 energy, log10 latency) in the box shared by all runs")
    print_now(markdown(frame.round(4).set_index("variant")))
    means = frame.groupby("variant")[["hypervolume", "front", "epochs", "wall s"]].mean()
    print_now()
    print_now(means.round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())

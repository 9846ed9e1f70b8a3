"""Which surrogate ranks unseen architectures best: the measurement behind NSGA2's default.

On the two enumerable spaces of ``search_quality.py`` (cnn-864: measured accuracy; nascaps-124k:
synthetic accuracy), each model is fitted on ``n`` random architectures (inputs: gene indices,
plus the log10 of the hardware metrics known before training where marked) and scored by
Kendall's tau between its predicted and the true accuracy on 500 other random architectures
and on the 100 most accurate ones (where a search spends its trainings), mean over seeds; and
by the fit time.

Run: ``.venv/bin/python benchmarks/surrogate_choice.py [--sizes 25 50 100 200] [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nni_capsnas.app.commands import print_now  # noqa: E402
from nni_capsnas.quiet import silence_known_warnings  # noqa: E402

silence_known_warnings()

from _search_tables import SpaceTable, nascaps_table  # noqa: E402
from search_quality import load_cnn_table, markdown  # noqa: E402

MODELS: dict[str, Callable[[int], Any]] = {
    "extra trees": lambda seed: ExtraTreesRegressor(n_estimators=100, random_state=seed, n_jobs=1),
    "random forest": lambda seed: RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1),
    "gradient boosting": lambda seed: GradientBoostingRegressor(random_state=seed),
    "Gaussian process": lambda seed: GaussianProcessRegressor(
        ConstantKernel() * Matern(nu=2.5) + WhiteKernel(), normalize_y=True, random_state=seed),
}


def inputs(table: SpaceTable, keys: Sequence[tuple], with_hardware: bool) -> np.ndarray:
    """Gene indices (and log10 hardware metrics) of ``keys``."""
    genes = np.array([[list(values).index(value) for values, value in zip(table.candidates.values(), key)]
                      for key in keys], dtype=float)
    if not with_hardware:
        return genes
    hardware = np.array([[table.rows[key][name] for name in table.hardware] for key in keys], dtype=float)
    return np.hstack([genes, np.log10(np.maximum(hardware, 1e-12))])


def score(table: SpaceTable, name: str, with_hardware: bool, size: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    keys = list(table.rows)
    order = rng.permutation(len(keys))
    train = [keys[i] for i in order[:size]]
    test = [keys[i] for i in order[size:size + 500]]
    best = sorted(keys, key=lambda k: -table.rows[k]["accuracy"])[:100]
    model = MODELS[name](seed)
    tic = time.perf_counter()
    model.fit(inputs(table, train, with_hardware), [table.rows[k]["accuracy"] for k in train])
    fit_s = time.perf_counter() - tic
    taus = {}
    for label, group in (("random", test), ("top 100", best)):
        predicted = model.predict(inputs(table, group, with_hardware))
        taus[label] = kendalltau(predicted, [table.rows[k]["accuracy"] for k in group]).statistic
    return {**taus, "fit_ms": 1000 * fit_s}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--spaces", nargs="+", default=["cnn-864", "nascaps-124k"])
    args = parser.parse_args(argv)
    for space in args.spaces:
        table = load_cnn_table(False) if space == "cnn-864" else nascaps_table()
        rows = []
        for name in MODELS:
            for with_hardware in (False, True):
                for size in args.sizes:
                    results = [score(table, name, with_hardware, size, seed) for seed in range(args.seeds)]
                    rows.append({"model": name + (" + hardware" if with_hardware else ""), "n": size,
                                 **{key: float(np.mean([r[key] for r in results])) for key in results[0]}})
        frame = pd.DataFrame(rows)
        print_now()
        print_now(f"## {space}: Kendall tau of predicted vs true accuracy (mean over {args.seeds} seeds), "
                  "random held-out architectures / the 100 most accurate; fit time")
        shown = frame.pivot(index="model", columns="n", values="random").map(lambda v: f"{v:.3f}")
        top = frame.pivot(index="model", columns="n", values="top 100")
        fit = frame.groupby("model")["fit_ms"].mean()
        shown = shown.astype(str) + " / " + top.map(lambda v: f"{v:.3f}")
        shown["fit ms (mean)"] = fit.map(lambda v: f"{v:.0f}")
        shown.index.name = "model \\ training points"
        print_now(markdown(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

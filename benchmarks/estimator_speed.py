"""Time to export CapsNet and DeepCaps to ONNX and to estimate them (cold and cached).

Run: ``.venv/bin/python benchmarks/estimator_speed.py [--runs 10] [--export-runs 3]``.
Prints medians in ms (wall clock; ``estimate_cpu_ms`` is process CPU time, which a loaded machine
inflates less); the estimate alone targets < 20 ms. Nothing is written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import pandas as pd
import torch

from hw_estimators import clear_cache, estimate, estimate_chromosome
from nni_capsnas.app.commands import print_now
from nni_capsnas.export import export_onnx
from nni_capsnas.quiet import silence_known_warnings
from search_spaces.reference import capsnet, deepcaps

TARGET_MS = 20.0
CHROMOSOMES = {
    "CapsNet": [[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [1, 14, 32, 8, 9, 2, 7, 10, 16],
                [-1], [1]],
    "DeepCaps": [[0, 64, 3, 1, 3, 1, 64, 128, 1], [2, 64, 32, 4, 3, 2, 32, 32, 4], [2, 32, 32, 4, 3, 2, 16, 32, 8],
                 [2, 16, 32, 8, 3, 2, 8, 32, 8], [2, 8, 32, 8, 3, 2, 4, 32, 8], [2, 4, 32, 8, 4, 1, 1, 10, 16],
                 [4], [2]],
}


def median_ms(function: Callable[[], object], runs: int, before: Callable[[], None] = lambda: None,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``function`` over ``runs`` calls on ``clock``, ``before`` untimed before each."""
    timings = []
    for _ in range(runs):
        before()
        start = clock()
        function()
        timings.append((clock() - start) * 1e3)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per estimate timing")
    parser.add_argument("--export-runs", type=int, default=3, help="runs per export timing")
    args = parser.parse_args()
    silence_known_warnings()
    torch.manual_seed(0)
    rows = []
    for name, builder in (("CapsNet", capsnet), ("DeepCaps", deepcaps)):
        network = builder((1, 28, 28), 10).eval()
        example = torch.randn(1, 1, 28, 28)
        proto = export_onnx(network, example)  # warm-up
        export = median_ms(lambda: export_onnx(network, example), args.export_runs)
        cold = median_ms(lambda: estimate(proto), args.runs, before=clear_cache)
        cold_cpu = median_ms(lambda: estimate(proto), args.runs, before=clear_cache, clock=time.process_time)
        estimate(proto)
        cached = median_ms(lambda: estimate(proto), args.runs)
        gene = CHROMOSOMES[name]
        chromosome_cold = median_ms(lambda: estimate_chromosome(gene), args.runs, before=clear_cache)
        result = estimate(proto)
        rows.append({"network": name, "layers": len(result.layers), "export_ms": export, "estimate_ms": cold,
                     "estimate_cpu_ms": cold_cpu, "cached_estimate_ms": cached, "chromosome_estimate_ms": chromosome_cold,
                     f"estimate < {TARGET_MS:g} ms": cold < TARGET_MS})
    table = pd.DataFrame(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_now(f"medians over {args.runs} runs (exports: {args.export_runs}), torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs, load average {load:.1f}")
    print_now(table.to_string(index=False, float_format=lambda value: f"{value:.2f}"))


if __name__ == "__main__":
    main()

"""Speed of the hardware estimate: exports and estimates of CapsNet and DeepCaps, or the pre-training estimate.

By default: the time to export CapsNet and DeepCaps to ONNX and to estimate them (cold and cached). With
``--spaces``: the pre-training estimate of never-seen architectures of the search spaces, and its deviation
from the ONNX path.

Run: ``.venv/bin/python benchmarks/estimator_speed.py [--runs 10] [--export-runs 3]``.
Prints medians in ms (wall clock; ``estimate_cpu_ms`` is process CPU time, which a loaded machine
inflates less); the estimate alone targets < 20 ms. Nothing is written.

``--spaces [SPACE[@CxHxW] ...]`` (default: the four spaces at their default input, and NASCapsSpace at
1x28x28): per space, ``--warm-up`` random architectures are estimated first (the blocks a search has met
after a few hundred calls), then ``--architectures`` other random ones are timed, each composed afresh
(``SampleCostEstimator.estimate``: no sample or network seen before is looked up, known blocks are
reused); the pre-training target is a median under 5 ms. Each distinct network among them (up to
``--compare``) is then exported and estimated as a trial would (``network_cost``), and the largest
relative deviation of energy, latency and memory is printed, with the networks whose MACs or
parameters differ (target: deviations under 0.5%, none differing). Slow: an export takes 1-5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch

from hw_estimators import clear_cache, estimate, estimate_chromosome
from nni_capsnas.app.commands import print_now
from nni_capsnas.blocks import network_signature
from nni_capsnas.export import export_onnx
from nni_capsnas.hardware_cost import SampleCostEstimator, network_cost
from nni_capsnas.quiet import silence_known_warnings
from search_spaces import CapsNetSpace, CNNSpace, NASCapsSpace
from search_spaces.capsule_cell_space import CapsuleCellSpace
from search_spaces.reference import capsnet, deepcaps

TARGET_MS = 20.0
#: Median time of a never-seen architecture's pre-training estimate the spaces must stay under.
PRETRAINING_TARGET_MS = 5.0
#: Spaces of the ``--spaces`` mode, by name.
SPACES: dict[str, Callable[..., Any]] = {"NASCapsSpace": NASCapsSpace, "CNNSpace": CNNSpace,
                                        "CapsNetSpace": CapsNetSpace, "CapsuleCellSpace": CapsuleCellSpace}
DEFAULT_SPACES = ("NASCapsSpace", "CNNSpace", "CapsNetSpace", "CapsuleCellSpace", "NASCapsSpace@1x28x28")
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


def random_sample(space: Any, seed: int) -> dict[str, Any]:
    """A seeded random architecture of ``space``."""
    sample: dict[str, Any] = {}
    state = np.random.RandomState(seed)
    for mutable in space.simplify().values():
        mutable.random(sample, state)
    return sample


def build_space(spec: str) -> tuple[str, Any]:
    """``"NASCapsSpace"`` or ``"NASCapsSpace@1x28x28"`` -> (label, space)."""
    name, _, shape = spec.partition("@")
    if name not in SPACES:
        raise SystemExit(f"--spaces: unknown space {name!r}; expected one of {', '.join(SPACES)}")
    space = SPACES[name](**({"input_shape": tuple(int(size) for size in shape.split("x"))} if shape else {}))
    return f"{name} {'x'.join(map(str, space.input_shape))}", space


def space_row(spec: str, architectures: int, warm_up: int, compare: Optional[int]) -> dict[str, Any]:
    """Timing and deviation from the ONNX path of one space's pre-training estimates."""
    label, space = build_space(spec)
    estimator = SampleCostEstimator(space)
    start = time.perf_counter()
    for seed in range(warm_up):
        estimator.estimate(random_sample(space, 1_000_000 + seed))
    warm_seconds = time.perf_counter() - start
    walls, cpus, fresh, networks = [], [], 0, {}
    for seed in range(architectures):
        sample = random_sample(space, seed)
        known = estimator.blocks.known_fragments
        wall, cpu = time.perf_counter(), time.process_time()
        figures = estimator.estimate(sample)
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
        fresh += estimator.blocks.known_fragments != known
        networks.setdefault(network_signature(estimator.blocks_of(sample)), (sample, figures))
    deviations = {name: 0.0 for name in ("energy_mj", "latency_ms", "memory_kib")}
    counts_differ = 0
    compared = list(networks.values())[:compare]
    for sample, figures in compared:
        exported = network_cost(space.freeze(sample), space.input_shape)
        for name in deviations:
            deviations[name] = max(deviations[name], abs(figures[name] - exported[name]) / abs(exported[name]))
        counts_differ += (figures["macs"], figures["params"]) != (exported["macs"], exported["params"])
    print_now(f"{label}: done ({len(compared)} networks exported)")
    return {"space": label, "architectures": architectures, "networks": len(networks), "with_new_blocks": fresh,
            "warm_up_s": warm_seconds, "median_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus),
            "mean_ms": statistics.mean(walls), f"under_{PRETRAINING_TARGET_MS:g}ms": statistics.median(walls) <
            PRETRAINING_TARGET_MS, "compared": len(compared), "max_dev_energy": deviations["energy_mj"],
            "max_dev_latency": deviations["latency_ms"], "max_dev_memory": deviations["memory_kib"],
            "macs_params_differ": counts_differ}


def spaces_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    rows = [space_row(spec, args.architectures, args.warm_up, args.compare) for spec in args.spaces]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_now(f"pre-training estimate on capsacc: {args.warm_up} architectures of warm-up, then {args.architectures} "
              f"timed (wall clock, and process CPU time), torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
              f"load average {load:.1f}")
    print_now(pd.DataFrame(rows).to_string(index=False, float_format=lambda value: f"{value:.3g}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per estimate timing")
    parser.add_argument("--export-runs", type=int, default=3, help="runs per export timing")
    parser.add_argument("--spaces", nargs="*", metavar="SPACE[@CxHxW]",
                        help=f"time the pre-training estimate on these spaces instead (none given: {' '.join(DEFAULT_SPACES)})")
    parser.add_argument("--architectures", type=int, default=300, help="--spaces: architectures timed per space")
    parser.add_argument("--warm-up", type=int, default=300, help="--spaces: architectures estimated before timing")
    parser.add_argument("--compare", type=int, default=None,
                        help="--spaces: at most this many networks exported for the deviation (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="--spaces: torch threads")
    args = parser.parse_args()
    silence_known_warnings()
    if args.spaces is not None:
        args.spaces = args.spaces or list(DEFAULT_SPACES)
        spaces_main(args)
        return
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

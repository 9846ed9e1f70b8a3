"""Training and inference speed of Sabour et al.'s CapsNet on the CPU or a CUDA GPU.

``--device cpu`` (default) prints, for batch 64 on N threads (default 2): median training-step and inference time after
warm-up, images/s, FLOPs per step (``torch.utils.flop_counter.FlopCounterMode``), achieved
GFLOP/s and that as a fraction of the float32 GEMM throughput measured in the same process
(best of three square sizes), of the median over all processes, and of a GEMM (the best size) timed
right before and after every step (robust to the host's speed drifting during the run), and
peak resident memory. Each configuration runs in its own process (so the allocator setting
and peak memory are its own) and configurations are interleaved over ``--rounds``.

    python benchmarks/capsnet_speed.py                   # as trained, and three ablations
    python benchmarks/capsnet_speed.py --rounds 3 --steps 10

``--device cuda`` prints, for batch 128 on the first GPU: our CapsNet in float32 (TF32 products)
and bfloat16, with channels-last kernels and without, against a plain PyTorch CapsNet (einsum
votes, autograd routing; ``benchmarks/_plain_capsnet.py``) in both precisions, in the same run:
median training step, training and inference images/s, achieved TFLOP/s, peak GPU memory; the
GPU's dense matrix-product throughput (TF32, bfloat16); and the wall time of whole MNIST-sized
epochs (60,000 images) through ``trials.training.train``. Without a CUDA GPU it says so and exits.

    python benchmarks/capsnet_speed.py --device cuda

Benchmark on an idle machine: any other load halves the GEMM figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

from nni_capsnas.app.commands import print_now

# Configurations: what training uses (tuned malloc) and three ablations, each undoing one speed-up.
CONFIG_FLAGS = {
    "tuned malloc": ["--tuned-malloc"],
    "default malloc": [],
    "tuned, oneDNN conv": ["--tuned-malloc", "--onednn-conv"],
    "tuned, autograd routing": ["--tuned-malloc", "--autograd-routing"],
}


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(_seconds(fn) for _ in range(repeats))


def _gemm_gflops(sizes: tuple[int, ...] = (1024, 2048, 3072)) -> tuple[float, int]:
    """The float32 GEMM reference: the best size's median throughput (square, output preallocated),
    and that size."""
    import torch

    best, best_size = 0.0, sizes[0]
    for n in sizes:
        a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        gflops = 2 * n ** 3 / _median_seconds(lambda: torch.mm(a, b, out=out), repeats=8, warmup=2) / 1e9
        if gflops > best:
            best, best_size = gflops, n
    return best, best_size


def _paired_gemm_ratios(step: Callable[[], object], step_flops: float, repeats: int, size: int) -> list[float]:
    """Per step: achieved FLOP/s over the mean GEMM throughput measured right before and after it.

    The host's speed drifts by a third within minutes on shared machines; a GEMM reference taken
    next to every step cancels that drift, which a single reference per process does not.
    """
    import torch

    a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)

    def gemm_flops_per_s() -> float:
        return 2 * size ** 3 / _seconds(lambda: torch.mm(a, b, out=out))

    ratios = []
    for _ in range(repeats):
        before = gemm_flops_per_s()
        step_seconds = _seconds(step)
        ratios.append(step_flops / step_seconds / ((before + gemm_flops_per_s()) / 2))
    return ratios


def _use_onednn_convolution() -> None:
    """Ablation: primary capsules run PyTorch's own (oneDNN) convolution, forward and backward."""
    import torch.nn.functional as F

    import nni_capsnas.modules.primary_caps as primary_caps

    primary_caps.conv2d = lambda x, weight, bias, *, stride, padding: F.conv2d(
        x, weight, bias, stride=stride, padding=padding)


def _use_autograd_routing_backward() -> None:
    """Ablation: dynamic routing back-propagates through autograd instead of its fused backward."""
    import nni_capsnas.modules.routing as routing

    routing.runs_eagerly = lambda tensor: False


def measure(threads: int, batch: int, steps: int, tuned_malloc: bool, onednn_conv: bool = False,
            autograd_routing: bool = False) -> dict:
    """Run inside a worker process: every figure of one configuration."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nni_capsnas.quiet import silence_known_warnings
    from search_spaces.reference import capsnet
    from trials.losses import ClassificationLoss
    from trials.training import make_optimizer

    silence_known_warnings()
    if tuned_malloc:
        from trials.allocator import keep_large_buffers_in_heap

        keep_large_buffers_in_heap()  # what trials.training.train does
    if onednn_conv:
        _use_onednn_convolution()
    if autograd_routing:
        _use_autograd_routing_backward()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    gemm_gflops, gemm_size = _gemm_gflops()

    model = capsnet((1, 28, 28), 10)
    optimizer = make_optimizer(model.parameters(), learning_rate=1e-3)
    criterion = ClassificationLoss()
    images = torch.rand(batch, 1, 28, 28)
    labels = torch.randint(0, 10, (batch,))

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images), labels, images, model.decoder)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        loss = criterion(model(images), labels, images, model.decoder)
        loss.backward()
    step_flops = counter.get_total_flops()
    optimizer.zero_grad(set_to_none=True)
    step_s = _median_seconds(train_step, repeats=steps, warmup=3)
    paired_ratio = statistics.median(_paired_gemm_ratios(train_step, step_flops, steps, gemm_size))

    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(images)
        inference_flops = counter.get_total_flops()
        inference_s = _median_seconds(lambda: model(images), repeats=steps, warmup=2)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"threads": threads, "batch": batch, "gemm_gflops": gemm_gflops, "step_ms": step_s * 1e3,
            "step_gflop": step_flops / 1e9, "step_gflops": step_flops / step_s / 1e9,
            "paired_percent": 100 * paired_ratio,
            "inference_ms": inference_s * 1e3, "inference_gflops": inference_flops / inference_s / 1e9,
            "train_images_s": batch / step_s, "inference_images_s": batch / inference_s, "peak_rss_mib": peak_mib}


def _run_worker(config: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", "--threads", str(args.threads), "--batch", str(args.batch),
               "--steps", str(args.steps)] + CONFIG_FLAGS[config]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, help="batch size (default 64 on the CPU, 128 on CUDA)")
    parser.add_argument("--epochs", type=int, default=2, help="CUDA: MNIST-sized epochs through train() per precision")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every configuration")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIG_FLAGS), default=list(CONFIG_FLAGS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tuned-malloc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--onednn-conv", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--autograd-routing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda":
        cuda_main(args)
        return
    args.batch = args.batch or 64
    if args.worker:
        print_now(json.dumps(measure(args.threads, args.batch, args.steps, args.tuned_malloc, args.onednn_conv,
                                 args.autograd_routing)))
        return

    import pandas as pd

    results = {config: [] for config in args.configs}
    for _ in range(args.rounds):
        for config in args.configs:
            results[config].append(_run_worker(config, args))
    run_gemm = statistics.median(r["gemm_gflops"] for runs in results.values() for r in runs)
    rows = []
    for config, runs in results.items():
        best = min(runs, key=lambda r: r["step_ms"])
        rows.append({"configuration": config, "GEMM GFLOP/s": best["gemm_gflops"],
                     "train step ms": best["step_ms"], "train img/s": best["train_images_s"],
                     "step GFLOP": best["step_gflop"], "achieved GFLOP/s": best["step_gflops"],
                     "% of own GEMM": 100 * best["step_gflops"] / best["gemm_gflops"],
                     "% of run GEMM": 100 * best["step_gflops"] / run_gemm,
                     "% of paired GEMM": statistics.median(r["paired_percent"] for r in runs),
                     "inference ms": best["inference_ms"], "inference img/s": best["inference_images_s"],
                     "peak RSS MiB": best["peak_rss_mib"]})
    table = pd.DataFrame(rows).set_index("configuration").T
    print_now(f"Sabour CapsNet (8.2 M parameters, decoder included), batch {args.batch}, {args.threads} threads, "
              f"best of {args.rounds} interleaved rounds (each a median of {args.steps} steps after warm-up)")
    print_now(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    print_now(f"run GEMM: median {run_gemm:.1f} GFLOP/s over all {sum(map(len, results.values()))} worker processes "
              "(own GEMM: the same process as the step; paired GEMM: a GEMM right before and after every "
              "step, the median ratio of each process, median over the rounds)")
    print_now(f"load average: {os.getloadavg()[0]:.2f} (benchmark on an idle machine)")


def cuda_main(args: argparse.Namespace) -> None:
    """``--device cuda``: our CapsNet against the plain one, matrix-product reference, MNIST epochs."""
    import torch

    if not torch.cuda.is_available():
        print_now(f"no CUDA GPU here (torch {torch.__version__}, torch.cuda.is_available() is False): "
                  "nothing to measure")
        return
    from nni_capsnas.quiet import silence_known_warnings

    silence_known_warnings()  # before NNI's modules are imported (they warn at import time)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _capsnet_cuda import (CONFIGURATIONS, MNIST_TRAIN_IMAGES, comparison_table, matmul_tflops, measure,
                               mnist_epoch_seconds)

    batch = args.batch or 128
    name = torch.cuda.get_device_name(0)
    tf32, bf16 = matmul_tflops(torch.float32), matmul_tflops(torch.bfloat16)
    table = comparison_table([measure(configuration, batch, args.steps) for configuration in CONFIGURATIONS])
    print_now(f"Sabour CapsNet (8.2 M parameters, decoder included), batch {batch}, {name}, "
              f"torch {torch.__version__}; medians of {args.steps} steps after warm-up")
    print_now(f"dense matrix product: {tf32:,.0f} TFLOP/s TF32, {bf16:,.0f} TFLOP/s bfloat16 (best square size)")
    print_now(table.T.to_string(float_format=lambda v: f"{v:,.2f}"))
    for precision in ("fp32", "bf16"):
        seconds = mnist_epoch_seconds(batch, precision, epochs=args.epochs)
        verdict = "meets" if min(seconds) <= 10 else "misses"
        print_now(f"MNIST epoch ({MNIST_TRAIN_IMAGES:,} images, batch {batch}, {precision}) through "
                  f"trials.training.train: " + ", ".join(f"epoch {i + 1} {s:.1f} s" for i, s in enumerate(seconds))
                  + f" (target <= 10 s: {verdict}; epoch 1 includes cuDNN autotuning and the copy to the GPU)")
    best = table.loc[["ours fp32/TF32", "ours bf16"], "train x plain (same precision)"]
    print_now(f"training throughput over the plain CapsNet at the same precision: fp32/TF32 "
              f"{best['ours fp32/TF32']:.2f}x, bf16 {best['ours bf16']:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()

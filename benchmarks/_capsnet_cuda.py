"""The GPU half of ``capsnet_speed.py``: our CapsNet against a plain one on one CUDA device.

Every configuration trains Sabour's CapsNet (decoder included) on random MNIST-shaped batches
in the same process: median step time over ``steps`` steps after warm-up (cuDNN's autotuner
included), timed with CUDA events; inference likewise under ``no_grad``. The dense matrix
product reference is the best of three square sizes, TF32 and bfloat16. A whole MNIST epoch
(60,000 images) runs through ``trials.training.train`` itself (resident data, shuffling, the
held-out pass on 1,000 images).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from _plain_capsnet import PlainCapsNet
from search_spaces.reference import capsnet
from trials.datasets import DatasetSplits
from trials.devices import autocast, fast_cuda_kernels, place_model
from trials.losses import ClassificationLoss
from trials.training import TrainConfig, make_optimizer, train

MNIST_TRAIN_IMAGES = 60_000


@dataclass(frozen=True)
class Configuration:
    """One row of the table: which network, in which precision, with which layout."""

    name: str
    network: str            # "ours" or "plain"
    precision: str          # "fp32" (TF32 products) or "bf16"
    channels_last: bool = True


CONFIGURATIONS = (
    Configuration("ours fp32/TF32", "ours", "fp32"),
    Configuration("ours bf16", "ours", "bf16"),
    Configuration("ours bf16, NCHW kernels", "ours", "bf16", channels_last=False),
    Configuration("plain fp32/TF32", "plain", "fp32", channels_last=False),
    Configuration("plain bf16", "plain", "bf16", channels_last=False),
)


def cuda_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median seconds of ``fn`` on the GPU (CUDA events around each call)."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():  # a smoke run of this script's code on the CPU
        return statistics.median(_host_seconds(fn) for _ in range(repeats))
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _host_seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_tflops(dtype: torch.dtype, sizes: tuple[int, ...] = (4096, 8192, 12288)) -> float:
    """Best dense ``mm`` throughput (TFLOP/s) over square sizes, TF32 allowed for float32."""
    best = 0.0
    with fast_cuda_kernels(torch.device("cuda")):
        for n in sizes:
            a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
            out = torch.empty(n, n, device="cuda", dtype=dtype)
            seconds = cuda_seconds(lambda: torch.mm(a, b, out=out), repeats=10, warmup=3)
            best = max(best, 2 * n ** 3 / seconds / 1e12)
            del a, b, out
    return best


def _network(kind: str, channels_last: bool, device: torch.device) -> nn.Module:
    model = capsnet((1, 28, 28), 10) if kind == "ours" else PlainCapsNet()
    if kind == "ours" and channels_last:
        return place_model(model, device)
    model.to(device)
    if kind == "ours":  # undo every channels-last kernel (the ablation)
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if parameter.dim() == 4:
                    parameter.data = parameter.data.contiguous()
    return model


def measure(configuration: Configuration, batch: int, steps: int, *, warmup: int = 5,
            device: torch.device = torch.device("cuda", 0)) -> dict:
    """Training and inference figures of one configuration on ``device`` (a GPU; the CPU for a smoke run)."""
    torch.manual_seed(0)
    model = _network(configuration.network, configuration.channels_last, device)
    optimizer = (make_optimizer(model.parameters(), learning_rate=1e-3) if configuration.network == "ours"
                 else torch.optim.Adam(model.parameters(), lr=1e-3))
    criterion = ClassificationLoss()
    images = torch.rand(batch, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    precision = configuration.precision

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = criterion(model(images), labels, images, model.decoder)
        loss.backward()
        optimizer.step()

    def inference() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(images)

    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    with fast_cuda_kernels(device):
        with FlopCounterMode(display=False) as counter:
            train_step()
        step_flops = counter.get_total_flops()
        step_s = cuda_seconds(train_step, repeats=steps, warmup=warmup)
        model.eval()
        inference_s = cuda_seconds(inference, repeats=steps, warmup=min(warmup, 3))
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if on_gpu else float("nan")
    return {"configuration": configuration.name, "step_ms": step_s * 1e3, "train_images_s": batch / step_s,
            "train_tflops": step_flops / step_s / 1e12, "inference_images_s": batch / inference_s,
            "peak_gib": peak}


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """The rows of :func:`measure` as a table, with each configuration's training speed-up over the
    plain CapsNet at the same precision and over the plain one in float32/TF32."""
    table = pd.DataFrame(rows).set_index("configuration")
    plain = {"fp32": table.loc["plain fp32/TF32", "train_images_s"], "bf16": table.loc["plain bf16", "train_images_s"]}
    table["train x plain (same precision)"] = [
        row.train_images_s / plain["bf16" if "bf16" in str(index) else "fp32"] for index, row in table.iterrows()]
    table["train x plain fp32/TF32"] = table["train_images_s"] / plain["fp32"]
    return table.rename(columns={"step_ms": "train step ms", "train_images_s": "train img/s",
                                 "train_tflops": "train TFLOP/s", "inference_images_s": "inference img/s",
                                 "peak_gib": "peak GiB"})


def mnist_epoch_seconds(batch: int, precision: str, epochs: int = 2) -> list[float]:
    """Wall seconds of each epoch of 60,000 MNIST-sized images through ``trials.training.train`` on CUDA.

    The first epoch includes cuDNN's autotuning and the one-time copy of the data to the GPU.
    Each epoch's time ends with the held-out pass and a read of the loss, so the GPU is done.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(MNIST_TRAIN_IMAGES, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (MNIST_TRAIN_IMAGES,), generator=generator)
    data = DatasetSplits("mnist-shaped", TensorDataset(images, labels), TensorDataset(images[:1000], labels[:1000]),
                         (1, 28, 28), 10)
    torch.manual_seed(0)
    result = train(capsnet((1, 28, 28), 10), data,
                   TrainConfig(epochs=epochs, batch_size=batch, device="cuda", precision=precision), progress=False)
    return [record.seconds for record in result.history]

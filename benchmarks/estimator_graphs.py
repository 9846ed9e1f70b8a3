"""The hardware estimator on networks nobody here wrote, exported by both PyTorch exporters.

Each torchvision network (``weights=None``) is exported with a static input by the TorchScript
exporter (opset 17) and by the dynamo exporter (opset 18, ``nni_capsnas.export.export_onnx``);
ResNet-18's TorchScript export is also quantized to int8 QDQ with onnxruntime's
``quantize_static`` (random calibration images). The first table gives, per graph, its MACs
against ``FlopCounterMode``, its energy and latency on ``systolic`` and ``capsacc``, the difference
from the other export of the same network, and the uncached estimate time (median over
``--runs``, wall clock and process CPU time; target < 50 ms). The second gives the int8 graph
against its float original. Exports go to a temporary folder; nothing is written.

Run: ``.venv/bin/python benchmarks/estimator_graphs.py [--size 224] [--runs 10] [--networks resnet18 ...]``
(about two minutes at 224x224 on two cores, most of it exporting).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import onnx
import pandas as pd
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from hw_estimators import clear_cache, estimate
from nni_capsnas.app.commands import print_now
from nni_capsnas.export import export_onnx
from nni_capsnas.quiet import logger_levels, silence_known_warnings

NETWORKS = ("resnet18", "mobilenet_v2", "squeezenet1_0", "shufflenet_v2_x1_0", "efficientnet_b0", "regnet_x_400mf")
ACCELERATORS = ("systolic", "capsacc")
TARGET_MS = 50.0


def median_ms(function: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``function`` over ``runs`` uncached calls on ``clock``."""
    timings = []
    for _ in range(runs):
        clear_cache()
        start = clock()
        function()
        timings.append((clock() - start) * 1e3)
    return statistics.median(timings)


def torchscript_export(network: torch.nn.Module, example: torch.Tensor, path: Path) -> onnx.ModelProto:
    """The legacy TorchScript exporter at opset 17."""
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=17)
    return onnx.load(str(path))


def quantize_qdq(float_path: Path, target: Path, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    """onnxruntime's static int8 QDQ quantization of ``float_path``, calibrated on 4 random images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class RandomImages(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            generator = np.random.default_rng(0)
            self.batches = iter([{name: generator.standard_normal(input_shape).astype(np.float32)} for _ in range(4)])

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self.batches, None)

    name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    with logger_levels({"": logging.ERROR}):  # the quantizer's advice on pre-processing, through the root logger
        quantize_static(str(float_path), str(target), RandomImages(name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(target))


def graph_row(network: str, exporter: str, graph: onnx.ModelProto, flop_macs: float, runs: int) -> dict:
    """Figures of one graph; ``*_vs_other`` columns are filled in once both exports are known."""
    row: dict = {"network": network, "exporter": exporter, "nodes": len(graph.graph.node)}
    for accelerator in ACCELERATORS:
        result = estimate(graph, accelerator)
        row[f"{accelerator}_mj"] = result.energy_mj
        row[f"{accelerator}_ms"] = result.latency_ms
        row["layers"], row["macs"], row["unknown_ops"] = len(result.layers), result.macs, len(result.unknown_ops)
    row["macs/flop_counter"] = row["macs"] / flop_macs
    row["estimate_ms"] = median_ms(lambda: estimate(graph, "systolic"), runs)
    row["estimate_cpu_ms"] = median_ms(lambda: estimate(graph, "systolic"), runs, clock=time.process_time)
    row[f"under_{TARGET_MS:g}ms"] = row["estimate_ms"] < TARGET_MS
    return row


def export_differences(rows: list[dict]) -> None:
    """Adds each export's relative difference from the other export of the same network."""
    by_network: dict[str, list[dict]] = {}
    for row in rows:
        by_network.setdefault(row["network"], []).append(row)
    for pair in by_network.values():
        if len(pair) != 2:
            continue
        for row, other in (pair, pair[::-1]):
            for accelerator in ACCELERATORS:
                for unit in ("mj", "ms"):
                    key = f"{accelerator}_{unit}"
                    row[f"d{key}"] = row[key] / other[key] - 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    parser.add_argument("--runs", type=int, default=10, help="uncached estimates timed per graph (median)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS, metavar="NAME",
                        help=f"torchvision networks (default: all of {', '.join(NETWORKS)})")
    parser.add_argument("--no-quantized", action="store_true", help="skip the int8 QDQ ResNet-18")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for exporting (default: 2)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    silence_known_warnings()
    torch.set_num_threads(args.threads)
    input_shape = (1, 3, args.size, args.size)
    rows: list[dict] = []
    quantized: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.networks:
            torch.manual_seed(0)
            network = getattr(torchvision.models, name)(weights=None).eval()
            example = torch.randn(*input_shape)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                network(example)
            flop_macs = counter.get_total_flops() / 2
            float_path = Path(folder) / f"{name}.onnx"
            graphs = {"torchscript": torchscript_export(network, example, float_path),
                      "dynamo": export_onnx(network, example)}
            for exporter, graph in graphs.items():
                rows.append(graph_row(name, exporter, graph, flop_macs, args.runs))
            if name == "resnet18" and not args.no_quantized:
                int8 = quantize_qdq(float_path, Path(folder) / "resnet18_int8.onnx", input_shape)
                row = graph_row(name, "int8_qdq", int8, flop_macs, args.runs)
                reference = rows[-2]
                for accelerator in ACCELERATORS:
                    row[f"{accelerator}_int8/float"] = row[f"{accelerator}_mj"] / reference[f"{accelerator}_mj"]
                quantized.append(row)
    export_differences(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_now(f"input {'x'.join(map(str, input_shape))}, uncached estimate medians over {args.runs} runs, "
              f"{os.cpu_count()} CPUs, load average {load:.1f}")
    columns = ["network", "exporter", "nodes", "layers", "macs/flop_counter", "unknown_ops", "systolic_mj",
               "dsystolic_mj", "dsystolic_ms", "capsacc_mj", "dcapsacc_mj", "dcapsacc_ms", "estimate_ms",
               "estimate_cpu_ms", f"under_{TARGET_MS:g}ms"]
    table = pd.DataFrame(rows)
    differences = [f"d{accelerator}_{unit}" for accelerator in ACCELERATORS for unit in ("mj", "ms")]
    shown = table.copy()
    for column in differences:
        if column in shown:
            shown[column] = shown[column].map(lambda value: f"{value:+.3%}")
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print_now(shown[[column for column in columns if column in shown]].to_string(
            index=False, float_format=lambda value: f"{value:.4f}"))
        if set(differences) <= set(table):
            worst = table[differences].abs().max().max()
            print_now(f"largest energy or latency difference between the two exports of a network: {worst:.3%}")
        if quantized:
            columns = ["network", "exporter", "macs/flop_counter", "unknown_ops", "systolic_mj", "systolic_int8/float",
                       "capsacc_mj", "capsacc_int8/float", "estimate_ms", f"under_{TARGET_MS:g}ms"]
            print_now(pd.DataFrame(quantized)[columns].to_string(index=False,
                                                                   float_format=lambda value: f"{value:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

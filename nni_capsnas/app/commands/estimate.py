"""``nni-capsnas estimate``: energy, latency and memory of an ONNX model or a NASCaps chromosome."""

from __future__ import annotations

import argparse
import logging

from nni_capsnas.app.commands import print_now


_logger = logging.getLogger(__name__)

#: Per-layer table columns printed by ``--per-layer`` (those present).
TABLE_COLUMNS = ("name", "kind", "bits", "module", "shape", "macs", "weights", "cycles", "latency_ms", "energy_mj")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate", help="estimate energy, latency and memory on an accelerator model",
        description="Estimate the energy, latency and memory of an ONNX model (or of a NASCaps chromosome) on "
                    "an accelerator model. Figures are modelled; --measure-host adds a measured CPU latency.")
    parser.add_argument("model", nargs="?", metavar="MODEL.onnx", help="ONNX model file")
    parser.add_argument("--chromosome", metavar="FILE.chr", help="NASCaps chromosome file instead of a model")
    parser.add_argument("--accelerator", default="capsacc", metavar="NAME|FILE",
                        help="built-in accelerator (capsacc, systolic) or a TOML file (default: capsacc)")
    parser.add_argument("--per-layer", action="store_true", help="also print one row per layer")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--strict", action="store_true", help="fail on ONNX operators the estimator does not know")
    parser.add_argument("--measure-host", action="store_true",
                        help="also measure the latency on this CPU with onnxruntime (ONNX models only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from hw_estimators import estimate, estimate_chromosome, format_unknown_ops, read_chromosome

    if (args.model is None) == (args.chromosome is None):
        raise ValueError("give either MODEL.onnx or --chromosome FILE.chr (exactly one)")
    if args.chromosome is not None:
        if args.measure_host or args.strict:
            raise ValueError("--measure-host and --strict apply to ONNX models, not to --chromosome")
        result = estimate_chromosome(read_chromosome(args.chromosome), args.accelerator)
        subject = args.chromosome
    else:
        result = estimate(args.model, args.accelerator, strict=args.strict, measure_host=args.measure_host)
        subject = args.model
    if args.json:
        print_now(result.to_json(per_layer=args.per_layer))
        return 0
    lines = [
        f"{subject} on {result.accelerator} (modelled, {result.source} front end)",
        f"  energy        {result.energy_mj:12.4f} mJ",
        f"  latency       {result.latency_ms:12.4f} ms",
        f"  memory        {result.memory_kib:12.1f} KiB  (weights {result.weight_memory_kib:.1f} KiB "
        f"+ peak activations {result.activation_memory_kib:.1f} KiB)",
        f"  MACs          {result.macs:12,d}",
        f"  params        {result.params:12,d}",
    ]
    if result.host_latency_ms is not None:
        lines.append(f"  host latency  {result.host_latency_ms:12.4f} ms  (measured on this CPU with onnxruntime, "
                     f"median of {result.host_latency_runs} runs)")
    if result.unknown_ops:
        lines.append(f"  costed as element-wise (no parser): {format_unknown_ops(result.unknown_ops)}")
    print_now("\n".join(lines))
    if args.per_layer:
        columns = [column for column in TABLE_COLUMNS if column in result.layers.columns]
        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
            print_now(result.layers[columns].to_string(index=False))
    return 0

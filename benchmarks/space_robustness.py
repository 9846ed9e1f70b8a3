"""PGD robustness of fixed architectures of the E2RNAS benchmark's space, retrained identically.

Answers "how robust can an architecture of this space get?" independently of any search: each
architecture is retrained exactly as ``benchmarks/e2rnas_vs_darts.py`` retrains the exported ones
(same space, data, epochs, learning rate; ``--seeds`` retraining seeds from ``--first-seed``) and
evaluated on the same held-out images with the same attacks. The table is sorted by mean PGD
accuracy; with ``--reference`` every row also shows its gain over that architecture and the
standard error of the gain (independent retrainings).

Architectures are given as JSON objects on the command line, or as a preset:

- ``exports`` (default): DARTS' and E2RNAS' exports of the E2RNAS benchmark (reference: DARTS');
- ``routing1``: max_pool3x3 and skip feature operations at every capsule size, one routing
  iteration, no capsule operation;
- ``routing3``: conv5x5 and conv3x3 with every capsule operation, 4x4 and 8x8, three routings;
- ``pooling``: every parameter-free feature operation (max pooling over 3x3, 5x5 and 7x7
  windows, average pooling, skip) at 4x4 and 8x4 capsules, one routing iteration, no capsule
  operation.

Run: ``.venv/bin/python benchmarks/space_robustness.py [--preset routing1] [--seeds 5]
[--architecture '{"feature_op": "skip", "primary_caps": 4, "primary_dim": 4, "capsule_op": "skip",
"routing_iterations": 1}'] [--output result.json] [--plot pgd.png]`` (about 10 s per retraining on two cores,
conv_caps3d three times that).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from e2rnas_vs_darts import (  # noqa: E402  (benchmark helpers: the identical retraining)
    REPO_ROOT, evaluate_retrained, evaluation_subset, retrain_architecture, standard_error_of_difference,
)
from nni_capsnas.app.commands import print_now  # noqa: E402
from trials.datasets import load_dataset  # noqa: E402

_logger = logging.getLogger("space_robustness")

DARTS_EXPORT = {"feature_op": "conv5x5", "primary_caps": 8, "primary_dim": 8, "capsule_op": "skip",
                "routing_iterations": 3}
E2RNAS_EXPORT = {"feature_op": "max_pool5x5", "primary_caps": 4, "primary_dim": 4, "capsule_op": "skip",
                 "routing_iterations": 1}


def _grid(feature_ops: list[str], capsule_ops: list[str], sizes: list[tuple[int, int]],
          routing: int) -> list[dict[str, Any]]:
    return [{"feature_op": feature, "primary_caps": caps, "primary_dim": dim, "capsule_op": capsule,
             "routing_iterations": routing}
            for feature, capsule, (caps, dim) in itertools.product(feature_ops, capsule_ops, sizes)]


PRESETS: dict[str, list[dict[str, Any]]] = {
    "exports": [DARTS_EXPORT, E2RNAS_EXPORT],
    "routing1": _grid(["max_pool3x3", "skip"], ["skip"], [(4, 4), (8, 4), (4, 8), (8, 8)], routing=1),
    "routing3": _grid(["conv5x5", "conv3x3"], ["skip", "conv_caps", "conv_caps3d"], [(4, 4), (8, 8)], routing=3),
    "pooling": _grid(["max_pool3x3", "max_pool5x5", "max_pool7x7", "avg_pool3x3", "skip"], ["skip"],
                     [(4, 4), (8, 4)], routing=1),
}


def _architecture(text: str) -> dict[str, Any]:
    """argparse type: one architecture as a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--architecture must be a JSON object, got {text!r} ({error})") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--architecture must be a JSON object, got {text!r}")
    return value


def _label(architecture: dict[str, Any]) -> str:
    return (f"{architecture['feature_op']}, {architecture['primary_caps']}x{architecture['primary_dim']}, "
            f"{architecture['capsule_op']}, {architecture['routing_iterations']}")


def measure(architecture: dict[str, Any], data: Any, evaluation: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Retrain ``architecture`` once per seed; per-seed clean / FGSM / PGD accuracies and the parameters."""
    seeds, runs, start = list(range(args.first_seed, args.first_seed + args.seeds)), [], time.perf_counter()
    for seed in seeds:
        model = retrain_architecture(architecture, data, args, seed)
        runs.append(evaluate_retrained(model, evaluation, args, seed))
    record = {"architecture": architecture, "seeds": seeds,
              "clean": [r[0] for r in runs], "fgsm": [r[1] for r in runs], "pgd": [r[2] for r in runs],
              "params": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - start}
    _logger.info("%s: PGD %s (%.0f s)", _label(architecture), [round(100 * p, 1) for p in record["pgd"]],
                 record["seconds"])
    return record


def _gain(record: dict[str, Any], reference: Optional[dict[str, Any]]) -> str:
    if reference is None:
        return ""
    gain = 100 * (statistics.mean(record["pgd"]) - statistics.mean(reference["pgd"]))
    return f" {gain:>+7.2f} {standard_error_of_difference(record['pgd'], reference['pgd']):>6.2f}"


def table(records: list[dict[str, Any]], reference: Optional[dict[str, Any]], args: argparse.Namespace) -> str:
    """Rows sorted by mean PGD accuracy (percent), with the gain over ``reference`` if given."""
    images = args.retrain_train or "all training"  # 0 means every training image (retrain_architecture)
    lines = [f"mnist-t10k, retrained as in e2rnas_vs_darts ({args.retrain_epochs} epochs on {images} "
             f"images, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}); accuracies (%) on "
             f"{args.eval_samples} held-out images, epsilon {args.epsilon} (L-inf, pixel units), "
             f"PGD-{args.pgd_steps} with random start; means over the seeds"
             + (f"; gain and its standard error against {_label(reference['architecture'])}" if reference else ""),
             f"{'architecture (feature op, caps x dim, capsule op, routing)':<58} {'clean':>6} {'FGSM':>6} "
             f"{'PGD':>6} {'PGD sd':>6} {'params':>8}" + (f" {'gain':>7} {'se':>6}" if reference else "")]
    for record in sorted(records, key=lambda r: statistics.mean(r["pgd"]), reverse=True):
        spread = 100 * statistics.stdev(record["pgd"]) if len(record["pgd"]) > 1 else float("nan")
        lines.append(f"{_label(record['architecture']):<58} {100 * statistics.mean(record['clean']):>6.1f} "
                     f"{100 * statistics.mean(record['fgsm']):>6.1f} {100 * statistics.mean(record['pgd']):>6.1f} "
                     f"{spread:>6.1f} {record['params']:>8d}" + _gain(record, reference))
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Every retraining's PGD accuracy per architecture (dots) and their mean (bar), most robust first.

    The spread between retraining seeds is the point of the picture: it is often larger than the
    differences between architectures.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(records, key=lambda r: statistics.mean(r["pgd"]))
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(ordered) + 1.5))
    for row, record in enumerate(ordered):
        values = [100 * p for p in record["pgd"]]
        axes.scatter(values, [row] * len(values), s=14, alpha=0.6, color="tab:blue")
        axes.plot([statistics.mean(values)] * 2, [row - 0.3, row + 0.3], color="black", linewidth=2)
    axes.set_yticks(range(len(ordered)), [_label(r["architecture"]) for r in ordered], fontsize=8)
    axes.set_xlabel("PGD accuracy (%), one dot per retraining seed; bar: mean")
    axes.set_title("Robustness of fixed architectures, retrained identically")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data" / "mnist-t10k"))
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="architectures to retrain (default: 'exports' unless --architecture is given)")
    parser.add_argument("--architecture", type=_architecture, action="append", default=[],
                        help="an architecture as a JSON object (repeatable; added to --preset)")
    parser.add_argument("--reference", type=_architecture, default=None,
                        help="architecture the gains are measured against (default: DARTS' export if retrained)")
    parser.add_argument("--seeds", type=int, default=5, help="retraining seeds per architecture")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--retrain-train", type=int, default=4000, help="training images (0: all 8000)")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--epsilon", type=float, default=0.1, help="evaluation epsilon (pixel units)")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="write every retraining as JSON here")
    parser.add_argument("--plot", default=None, help="write a PNG of every retraining's PGD accuracy here")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    # what retrain_architecture reads besides the retraining options
    args.space, args.retrain_adversarial = "capsule", 0.0
    preset = args.preset or ("exports" if not args.architecture else None)
    architectures = (list(PRESETS[preset]) if preset else []) + args.architecture
    reference = args.reference or (DARTS_EXPORT if DARTS_EXPORT in architectures else None)
    if reference is not None and reference not in architectures:
        architectures.append(reference)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    _logger.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist-t10k", root=args.data_root)
    evaluation = evaluation_subset(data, args)
    records = []
    for architecture in architectures:
        try:
            records.append(measure(architecture, data, evaluation, args))
        except (ValueError, KeyError) as error:  # an unknown label or value: name the architecture
            parser.error(f"cannot build architecture {architecture}: {error}")
    reference_record = next((r for r in records if r["architecture"] == reference), None)
    print_now(table(records, reference_record, args))
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "records": records}, indent=2, default=str))
    if args.plot:
        plot(records, Path(args.plot))
        _logger.info("plot written to %s", args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a trained one-shot supernet knows about robustness: its discrete sub-networks, attacked.

Runs one search of the E2RNAS benchmark (``benchmarks/e2rnas_vs_darts.py``: same space, data,
budget and options; DARTS by default), then evaluates discrete sub-networks *with the
supernet's own weights*, without retraining: around the exported architecture, one label at a
time (``--labels``) is forced to each of its values (its architecture parameter set to a
one-hot, every other label kept at its exported value), and the forced sub-network's clean and
PGD accuracy on held-out images is measured. The architecture parameters are restored after
every evaluation.

Why: E2RNAS' adversarial objective is the loss of the *mixture* of all candidates on
adversarial images, and its gradient w.r.t. the architecture followed the clean loss's in every
search we ran. This table shows whether the supernet ranks the discrete candidates differently
by robustness than by accuracy, i.e. whether a robustness signal is there to be used.
Options this script does not know (``--arc-learning-rate``, ``--search-attack``,
``--params-mode``, ...) go to the search, with ``e2rnas_vs_darts.py``'s meaning and defaults.

Run: ``.venv/bin/python benchmarks/supernet_robustness.py [--strategy darts|e2rnas]
[--labels feature_op primary_caps] [--search-epochs 2] [--eval-samples 500] [--seed 0]
[--output result.json]`` (about 5 minutes on two cores for the nine feature operations).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

from e2rnas_vs_darts import REPO_ROOT, search_strategy  # noqa: E402  (the benchmark's own search)
from nni_capsnas.app.commands import print_now  # noqa: E402
from nni_capsnas.nni_compat.supernet import architecture_parameters  # noqa: E402
from trials.attacks import robust_accuracy  # noqa: E402
from trials.datasets import load_dataset  # noqa: E402
from trials.training import evaluate  # noqa: E402

_logger = logging.getLogger("supernet_robustness")

#: An architecture parameter this large (the others zero) makes its softmax exactly one-hot (exp(-1000) is 0).
ONE_HOT_LOGIT = 1000.0


@contextlib.contextmanager
def forced(parameters: dict[str, nn.Parameter], choice: dict[str, int]) -> Iterator[None]:
    """Make the supernet run the sub-network ``{label: value index}``; restore the parameters after."""
    saved = {label: parameters[label].detach().clone() for label in choice}
    try:
        with torch.no_grad():
            for label, index in choice.items():
                parameters[label].zero_()
                parameters[label][index] = ONE_HOT_LOGIT
        yield
    finally:
        with torch.no_grad():
            for label, value in saved.items():
                parameters[label].copy_(value)


def evaluate_sub_networks(supernet: nn.Module, probabilities: dict[str, dict[Any, float]],
                          architecture: dict[str, Any], labels: list[str], evaluation: Subset,
                          args: argparse.Namespace) -> list[dict[str, Any]]:
    """Clean and PGD accuracy of every one-label change of the exported sub-network ``architecture``."""
    parameters = architecture_parameters(supernet)
    unknown = [label for label in labels if label not in parameters]
    if unknown:
        raise ValueError(f"--labels {unknown} are not labels of the space; it has {sorted(parameters)}")
    exported = {label: list(values).index(architecture[label]) for label, values in probabilities.items()}
    rows = []
    supernet.eval()
    for label in labels:
        values = list(probabilities[label])
        for index, value in enumerate(values):
            start = time.perf_counter()
            with forced(parameters, {**exported, label: index}):
                clean = evaluate(supernet, evaluation)
                pgd = robust_accuracy(supernet, evaluation, attack="pgd", epsilon=args.epsilon,
                                      steps=args.pgd_steps, seed=args.seed)
            rows.append({"label": label, "value": value, "probability": probabilities[label][value],
                         "clean": clean, "pgd": pgd})
            _logger.info("%s = %s: clean %.3f, PGD %.3f (%.0f s)", label, value, clean, pgd,
                         time.perf_counter() - start)
    return rows


def table(rows: list[dict[str, Any]], exported: dict[str, Any], args: argparse.Namespace) -> str:
    """Per label, the candidates sorted by PGD accuracy, with their clean-accuracy rank."""
    lines = [f"{args.strategy} supernet after {args.search_epochs} search epochs; sub-networks with the supernet's "
             f"weights, one label changed from the export {exported}; accuracies (%) on {args.eval_samples} held-out "
             f"images, PGD-{args.pgd_steps} at epsilon {args.epsilon} (L-inf, pixel units)",
             f"{'label':<20} {'value':<14} {'prob':>6} {'clean':>6} {'rank':>5} {'PGD':>6} {'rank':>5}"]
    for label in dict.fromkeys(row["label"] for row in rows):
        group = [row for row in rows if row["label"] == label]
        clean_rank = {id(r): i + 1 for i, r in enumerate(sorted(group, key=lambda r: r["clean"], reverse=True))}
        for pgd_rank, row in enumerate(sorted(group, key=lambda r: r["pgd"], reverse=True), start=1):
            lines.append(f"{label:<20} {str(row['value']):<14} {row['probability']:>6.3f} {100 * row['clean']:>6.1f} "
                         f"{clean_rank[id(row)]:>5d} {100 * row['pgd']:>6.1f} {pgd_rank:>5d}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data" / "mnist-t10k"))
    parser.add_argument("--strategy", choices=("darts", "e2rnas"), default="darts")
    parser.add_argument("--labels", nargs="+", default=["feature_op"], help="labels whose values are evaluated")
    parser.add_argument("--search-train", type=int, default=3000)
    parser.add_argument("--search-val", type=int, default=3000)
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--epsilon", type=float, default=0.1, help="evaluation epsilon (pixel units)")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="write the rows as JSON here")
    args, search_options = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("supernet_robustness").setLevel(logging.INFO)
    for noisy in ("nni", "pytorch_lightning", "lightning", "lightning.pytorch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist-t10k", root=args.data_root)
    search_arguments = ["--data-root", args.data_root, "--search-train", str(args.search_train), "--search-val",
                        str(args.search_val), "--search-epochs", str(args.search_epochs), "--seed", str(args.seed),
                        *search_options]
    result, strategy = search_strategy(args.strategy, data, search_arguments)
    probabilities = strategy.oneshot_module.export_probs()
    evaluation = Subset(data.val, range(min(args.eval_samples, len(data.val))))  # type: ignore[arg-type]
    try:
        rows = evaluate_sub_networks(strategy.oneshot_module.model, probabilities, result.architecture,
                                     args.labels, evaluation, args)
    except ValueError as error:
        parser.error(str(error))
    print_now(table(rows, result.architecture, args))
    if args.output:
        Path(args.output).write_text(json.dumps({"architecture": result.architecture, "rows": rows}, indent=2,
                                                default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

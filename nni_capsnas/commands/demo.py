"""``nni-capsnas demo``: the most complete flow the project offers, end to end on digits."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

_logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the end-to-end demo on scikit-learn's digits",
        description="One-shot DARTS search over a CapsNet space on digits (capsule layers searched "
                    "with shared weights), then training of the architecture it found.")
    parser.add_argument("--workdir", type=Path, default=Path("runs"),
                        help="where NNI writes the experiment (default: ./runs)")
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--train-epochs", type=int, default=5)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import DARTS

    from search_spaces import CapsNetSpace
    from trials.datasets import load_dataset
    from trials.lightning import capsule_evaluator
    from trials.training import TrainConfig, train

    torch.manual_seed(0)
    data = load_dataset("digits")
    space = CapsNetSpace(input_shape=data.input_shape, num_classes=data.num_classes)
    print(f"1/2  DARTS one-shot search over {len(space.simplify())} capsule choices "
          f"({', '.join(space.simplify())}) on digits, {args.search_epochs} epoch(s)")
    experiment = NasExperiment(space, capsule_evaluator("digits", epochs=args.search_epochs), DARTS())
    args.workdir.mkdir(parents=True, exist_ok=True)
    experiment.config.experiment_working_directory = str(args.workdir.resolve())
    experiment.run()
    architecture = experiment.export_top_models(formatter="dict")[0]
    print(f"     architecture found: {architecture}")

    print(f"2/2  training it from scratch for {args.train_epochs} epoch(s)")
    model = space.freeze(architecture)
    result = train(model, data, TrainConfig(epochs=args.train_epochs), progress=True)
    for record in result.history:
        print(f"     epoch {record.epoch}: held-out accuracy {record.val_accuracy:.3f} ({record.seconds:.1f} s)")
    params = sum(p.numel() for p in model.parameters())
    print(f"done: {params:,} parameters, held-out accuracy {result.final_accuracy:.3f}; "
          f"NNI experiment {experiment.id} in {args.workdir}")
    return 0

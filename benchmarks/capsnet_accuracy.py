"""Held-out accuracy of Sabour et al.'s CapsNet on the real MNIST test split.

Trains ``capsnet((1, 28, 28), 10)`` (margin + reconstruction loss, Adam with exponential decay,
random shifts of up to 2 pixels) on 8,000 images of the official MNIST test split and reports
the accuracy on the other 2,000 after every epoch, stopping early once ``--target`` is reached.

    python benchmarks/capsnet_accuracy.py --data-root ../shared/data/mnist-t10k
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from nni_capsnas.app.commands import print_now

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "mnist-t10k")
    parser.add_argument("--epochs", type=int, default=15, help="at most this many epochs")
    parser.add_argument("--target", type=float, default=0.98, help="stop once held-out accuracy reaches it")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from nni_capsnas.quiet import silence_known_warnings
    from search_spaces.reference import capsnet
    from trials.datasets import load_dataset
    from trials.training import EpochRecord, TrainConfig, train

    silence_known_warnings()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_dataset("mnist-t10k", root=str(args.data_root), train_size=8000, seed=args.seed)
    model = capsnet(data.input_shape, data.num_classes)
    print_now(f"CapsNet ({sum(p.numel() for p in model.parameters()):,} parameters) on mnist-t10k: "
              f"{len(data.train)} training / {len(data.val)} held-out images, batch {args.batch_size}, "
              f"{args.threads} threads, shift 2 px, target {args.target:.1%}")
    print_now("| epoch | held-out accuracy | epoch time | elapsed |")
    print_now("|---|---|---|---|")
    start = time.perf_counter()

    class TargetReached(Exception):
        pass

    def report(record: EpochRecord) -> None:
        print_now(f"| {record.epoch} | {record.val_accuracy:.2%} | {record.seconds:.0f} s | "
                  f"{time.perf_counter() - start:.0f} s |")
        if record.val_accuracy >= args.target:
            raise TargetReached

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=1e-3, lr_decay=0.96,
                         shift_pixels=2, seed=args.seed)
    try:
        result = train(model, data, config, progress=False, on_epoch_end=report)
        best = max(r.val_accuracy for r in result.history)
        print_now(f"target {args.target:.1%} NOT reached in {args.epochs} epochs (best {best:.2%})")
    except TargetReached:
        print_now(f"target {args.target:.1%} reached in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

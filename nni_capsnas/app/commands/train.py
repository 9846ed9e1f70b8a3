"""``nni-capsnas train``: train a reference network on a dataset."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from nni_capsnas.app.commands import print_now


_logger = logging.getLogger(__name__)

NETWORKS = ("capsnet", "deepcaps")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a reference capsule network",
                                   description="Train CapsNet or DeepCaps and print per-epoch held-out accuracy.")
    parser.add_argument("--network", choices=NETWORKS, default="capsnet")
    parser.add_argument("--dataset", default="digits",
                        help="digits (default), mnist-t10k, mnist, fashion-mnist, cifar10, svhn")
    parser.add_argument("--data-root", help="dataset directory (mnist-t10k: the folder with the IDX files)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--lr-decay", type=float, default=0.96, help="learning rate factor per epoch")
    parser.add_argument("--shift", type=int, default=0, help="random shift augmentation in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adversarial-epsilon", type=float, default=0.0, metavar="EPS",
                        help="adversarial training: mix in the loss on FGSM images with random start at this "
                             "L-inf radius in pixel units (0: off)")
    parser.add_argument("--adversarial-weight", type=float, default=0.5,
                        help="share of the adversarial loss in each batch (default 0.5)")
    parser.add_argument("--device", default="auto",
                        help="auto (default: a CUDA GPU if there is one, else the CPU), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="fp32", help="fp32 (default), bf16 or fp16 (mixed precision)")
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads")
    parser.add_argument("--save", type=Path, help="write the trained weights here (refuses to overwrite)")
    parser.add_argument("--json", action="store_true",
                        help='print {"device": ..., "history": [...]} as JSON (the device trained on, each epoch)')
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from search_spaces.reference import capsnet, deepcaps
    from trials.attacks import AttackConfig
    from trials.datasets import load_dataset
    from trials.devices import check_precision, resolve_device
    from trials.training import TrainConfig, train

    if args.save is not None and args.save.exists():
        raise ValueError(f"--save {args.save} already exists; choose another path")
    for flag, check in (("--device", resolve_device), ("--precision", check_precision)):
        try:  # before anything is loaded or written
            check(getattr(args, flag[2:]))
        except ValueError as error:
            raise ValueError(f"{flag}: {error}") from error
    adversarial = None
    if args.adversarial_epsilon:
        try:
            adversarial = AttackConfig(attack="fgsm", epsilon=args.adversarial_epsilon, random_start=True,
                                       seed=args.seed)
        except ValueError as error:
            raise ValueError(f"--adversarial-epsilon: {error}") from error
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                         lr_decay=args.lr_decay, shift_pixels=args.shift, seed=args.seed,
                         adversarial=adversarial, adversarial_weight=args.adversarial_weight, device=args.device,
                         precision=args.precision)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    options = {"root": args.data_root} if args.data_root else {}
    data = load_dataset(args.dataset, **options)
    builder = {"capsnet": capsnet, "deepcaps": deepcaps}[args.network]
    kwargs = {}
    if args.network == "capsnet" and min(data.input_shape[1:]) < 20:
        # Sabour's 9x9 kernels do not fit 8x8 digits: same layout, 3x3 kernels.
        kwargs = dict(conv_kernel=3, primary_kernel=3, primary_stride=1, conv_channels=64, primary_caps=16)
        _logger.info("input %s is smaller than 20x20: using 3x3 kernels", data.input_shape)
    model = builder(data.input_shape, data.num_classes, **kwargs)
    _logger.info("%s on %s: %d parameters, %d training / %d held-out images", args.network, data.name,
                 sum(p.numel() for p in model.parameters()), len(data.train), len(data.val))
    result = train(model, data, config, progress=not args.no_progress)
    for record in result.history:
        print_now(f"epoch {record.epoch:3d}  loss {record.train_loss:.4f}  held-out accuracy "
                  f"{record.val_accuracy:.4f}  ({record.seconds:.1f} s)")
    if args.json:
        print_now(json.dumps({"device": result.device, "history": [vars(r) for r in result.history]}))
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, args.save)
        _logger.info("weights saved to %s", args.save)
    return 0

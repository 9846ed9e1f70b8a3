"""Datasets by name, as tensors in [0, 1] split into training and held-out parts.

``digits`` (scikit-learn, embedded) and ``mnist-t10k`` (a directory holding the official
MNIST test-split IDX files) work offline; ``mnist``, ``fashion-mnist``, ``cifar10`` and
``svhn`` go through torchvision (``pip install nni-capsnas[vision]``), downloading into
``root`` unless the files are already there.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

_logger = logging.getLogger(__name__)

MNIST_T10K_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass
class DatasetSplits:
    """Training and held-out parts of a dataset, with what a model needs to know."""

    name: str
    train: Dataset
    val: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int


def _split(images: torch.Tensor, labels: torch.Tensor, train_size: int, seed: int,
           name: str) -> DatasetSplits:
    if not 0 < train_size < len(labels):
        raise ValueError(f"train_size must be between 1 and {len(labels) - 1} for {name}, got {train_size}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = order[:train_size], order[train_size:]
    return DatasetSplits(name, TensorDataset(images[train_idx], labels[train_idx]),
                         TensorDataset(images[val_idx], labels[val_idx]),
                         tuple(images.shape[1:]), int(labels.max()) + 1)


def load_digits(*, train_size: int = 1437, seed: int = 0, root: Optional[str] = None) -> DatasetSplits:
    """scikit-learn's 1,797 8x8 digits (pixels scaled to [0, 1]); 80/20 split by default."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    return _split(images, labels, train_size, seed, "digits")


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzip-compressed) IDX file of unsigned bytes, checking its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path} is not a complete gzip-compressed IDX file: {error}") from error
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file: only {len(data)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header needs {4 + 4 * ndim} bytes, found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {payload.size} values")
    return payload.reshape(dims)


def load_mnist_t10k(*, root: Optional[str] = None, train_size: int = 8000, seed: int = 0) -> DatasetSplits:
    """The official MNIST test split (10,000 images) from ``root``, split 8,000 / 2,000."""
    if root is None:
        raise ValueError("dataset 'mnist-t10k' needs root: a directory holding "
                         f"{MNIST_T10K_FILES[0]} and {MNIST_T10K_FILES[1]}")
    folder = Path(root)
    missing = [f for f in MNIST_T10K_FILES if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"dataset 'mnist-t10k': {folder} lacks {', '.join(missing)}")
    images = torch.tensor(read_idx(folder / MNIST_T10K_FILES[0]), dtype=torch.float32).div_(255).unsqueeze(1)
    labels = torch.tensor(read_idx(folder / MNIST_T10K_FILES[1]), dtype=torch.long)
    if len(images) != len(labels):
        raise ValueError(f"dataset 'mnist-t10k': {len(images)} images but {len(labels)} labels")
    return _split(images, labels, train_size, seed, "mnist-t10k")


def _torchvision_loader(name: str) -> Callable[..., DatasetSplits]:
    def load(*, root: Optional[str] = None, train_size: Optional[int] = None, seed: int = 0,
             download: bool = True) -> DatasetSplits:
        try:
            import torchvision
            from torchvision import transforms
        except ImportError as error:
            raise ValueError(f"dataset {name!r} needs torchvision: pip install 'nni-capsnas[vision]'") from error
        root_dir = root or str(Path.home() / ".cache" / "nni-capsnas" / "data")
        to_tensor = transforms.ToTensor()
        if name == "svhn":
            train = torchvision.datasets.SVHN(root_dir, split="train", transform=to_tensor, download=download)
            val = torchvision.datasets.SVHN(root_dir, split="test", transform=to_tensor, download=download)
            num_classes = 10
        else:
            cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
                   "cifar10": torchvision.datasets.CIFAR10}[name]
            train = cls(root_dir, train=True, transform=to_tensor, download=download)
            val = cls(root_dir, train=False, transform=to_tensor, download=download)
            num_classes = len(train.classes)
        input_shape = tuple(train[0][0].shape)
        _logger.info("loaded %s from %s: %d training, %d test images", name, root_dir, len(train), len(val))
        return DatasetSplits(name, train, val, input_shape, num_classes)  # type: ignore[arg-type]

    return load


DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "digits": load_digits,
    "mnist-t10k": load_mnist_t10k,
    **{name: _torchvision_loader(name) for name in ("mnist", "fashion-mnist", "cifar10", "svhn")},
}


def load_dataset(name: str = "digits", **kwargs) -> DatasetSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`) with loader-specific keyword arguments."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**kwargs)

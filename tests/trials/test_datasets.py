"""Datasets by name: the embedded digits, the MNIST test split from IDX files, and bad input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from trials.datasets import DATASETS, MNIST_T10K_FILES, load_dataset, read_idx


def _tensors(dataset: torch.utils.data.TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = dataset.tensors
    return images, labels


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


# --- digits ------------------------------------------------------------------------------


def test_digits_default_split_sizes_shapes_and_range() -> None:
    data = load_dataset("digits")
    train_images, train_labels = _tensors(data.train)
    val_images, val_labels = _tensors(data.val)
    assert (len(data.train), len(data.val)) == (1437, 360)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert train_images.shape == (1437, 1, 8, 8) and train_images.dtype == torch.float32
    for images in (train_images, val_images):
        assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert set(train_labels.tolist()) == set(range(10)) and set(val_labels.tolist()) == set(range(10))


def test_digits_split_is_a_seeded_partition() -> None:
    first, again, other = (load_dataset("digits", seed=s) for s in (3, 3, 4))
    torch.testing.assert_close(_tensors(first.train)[0], _tensors(again.train)[0], rtol=0, atol=0)
    assert not torch.equal(_tensors(first.train)[0], _tensors(other.train)[0])
    # train and held-out parts together hold every digit exactly once
    from sklearn.datasets import load_digits

    every = torch.cat([_tensors(first.train)[0], _tensors(first.val)[0]]).flatten(1).mul(16).round().int()
    labels = torch.cat([_tensors(first.train)[1], _tensors(first.val)[1]])
    bunch = load_digits()
    ours = sorted(zip(map(tuple, every.tolist()), labels.tolist()))
    theirs = sorted(zip(map(tuple, bunch.data.astype(int).tolist()), bunch.target.tolist()))
    assert ours == theirs


def test_digits_custom_train_size() -> None:
    data = load_dataset("digits", train_size=100)
    assert (len(data.train), len(data.val)) == (100, 1697)


@pytest.mark.parametrize("train_size", [0, -5, 1797, 5000])
def test_digits_rejects_bad_train_size(train_size: int) -> None:
    with pytest.raises(ValueError, match=rf"train_size must be between 1 and 1796 for digits, got {train_size}"):
        load_dataset("digits", train_size=train_size)


def test_unknown_dataset_name_is_rejected_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; expected one of .*digits.*mnist-t10k"):
        load_dataset("imagenet")


def test_dataset_registry_names() -> None:
    assert set(DATASETS) == {"digits", "mnist-t10k", "mnist", "fashion-mnist", "cifar10", "svhn"}


# --- mnist-t10k --------------------------------------------------------------------------


def test_mnist_t10k_splits_the_official_test_set(mnist_t10k_dir: Path) -> None:
    data = load_dataset("mnist-t10k", root=str(mnist_t10k_dir))
    train_images, train_labels = _tensors(data.train)
    val_images, val_labels = _tensors(data.val)
    assert (len(data.train), len(data.val)) == (8000, 2000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert train_images.shape[1:] == (1, 28, 28) and val_images.shape[1:] == (1, 28, 28)
    assert float(train_images.min()) == 0.0 and float(train_images.max()) == 1.0
    assert set(train_labels.tolist()) == set(range(10)) and set(val_labels.tolist()) == set(range(10))
    # the official split has 1,135 ones among its 10,000 labels
    assert int((train_labels == 1).sum() + (val_labels == 1).sum()) == 1135


def test_mnist_t10k_needs_root() -> None:
    with pytest.raises(ValueError, match=r"'mnist-t10k' needs root"):
        load_dataset("mnist-t10k")


def test_mnist_t10k_rejects_a_directory_without_the_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"lacks {MNIST_T10K_FILES[0]}, {MNIST_T10K_FILES[1]}"):
        load_dataset("mnist-t10k", root=str(tmp_path))


def test_mnist_t10k_rejects_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    (tmp_path / MNIST_T10K_FILES[0]).write_bytes(gzip.compress(_idx_bytes(np.zeros((5, 28, 28)))))
    (tmp_path / MNIST_T10K_FILES[1]).write_bytes(gzip.compress(_idx_bytes(np.zeros((4,)))))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        load_dataset("mnist-t10k", root=str(tmp_path), train_size=2)


def test_mnist_t10k_rejects_truncated_files(tmp_path: Path) -> None:
    (tmp_path / MNIST_T10K_FILES[0]).write_bytes(gzip.compress(_idx_bytes(np.zeros((5, 28, 28))))[:-20])
    (tmp_path / MNIST_T10K_FILES[1]).write_bytes(gzip.compress(_idx_bytes(np.zeros((5,)))))
    with pytest.raises(ValueError, match=MNIST_T10K_FILES[0]):
        load_dataset("mnist-t10k", root=str(tmp_path), train_size=2)


# --- read_idx ----------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_round_trips(tmp_path: Path, compressed: bool) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compressed else "a.idx")
    path.write_bytes(gzip.compress(_idx_bytes(array)) if compressed else _idx_bytes(array))
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("content, pattern", [
    (b"\x00\x00", r"is not an IDX file: only 2 bytes"),
    (b"this is not an idx file", r"is not an unsigned-byte IDX file \(magic 74686973\)"),
    (struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 2) + b"\x00" * 8, r"is not an unsigned-byte IDX file"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"is truncated: its header needs 16 bytes, found 8"),
    (_idx_bytes(np.zeros((3, 4)))[:-5], r"is truncated: header says \(3, 4\), found 7 values"),
])
def test_read_idx_rejects_garbage_and_truncated_files(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"bad\.idx {pattern}"):
        read_idx(path)


@pytest.mark.parametrize("content", [
    b"definitely not gzip",
    gzip.compress(_idx_bytes(np.zeros((10, 10))))[:-12],
])
def test_read_idx_rejects_broken_gzip_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.idx\.gz is not a complete gzip-compressed IDX file"):
        read_idx(path)


def test_read_idx_reads_the_official_labels(mnist_t10k_dir: Path) -> None:
    labels = read_idx(mnist_t10k_dir / MNIST_T10K_FILES[1])
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    # the first test labels of MNIST are 7, 2, 1, 0, 4
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]

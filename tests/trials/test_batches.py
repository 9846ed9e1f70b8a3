"""Batches on the training device: the same batches, in the same order, as a DataLoader."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from tests.conftest import DEVICES
from trials.batches import DeviceBatches, default_resident_bytes, resident_tensors


class _ItemDataset(Dataset):
    """Items built one at a time (like torchvision's datasets): not a tensor dataset."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index] * 1.0, self.labels[index]


def _data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 4, 4), torch.arange(n) % 10


def _loader_batches(dataset: Dataset, batch_size: int, seed: int, epochs: int) -> tuple[list, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    # tqdm.auto iterates once at construction: that pass draws a seed too
    batches = [batch for _ in range(epochs) for batch in tqdm(loader, disable=True)]
    return batches, generator.get_state()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dataset_type, resident_bytes", [("tensors", None), ("items", 10 ** 9), ("items", 0)])
def test_shuffled_batches_equal_a_dataloaders_and_leave_the_generator_alike(
        device: str, dataset_type: str, resident_bytes: int | None) -> None:
    images, labels = _data()
    dataset = TensorDataset(images, labels) if dataset_type == "tensors" else _ItemDataset(images, labels)
    expected, expected_state = _loader_batches(dataset, 16, seed=7, epochs=2)
    generator = torch.Generator().manual_seed(7)
    batches = DeviceBatches(dataset, batch_size=16, device=torch.device(device), shuffle=True, generator=generator,
                            max_resident_bytes=resident_bytes)
    assert (batches.resident is not None) == (dataset_type == "tensors" or bool(resident_bytes))
    got = [batch for _ in range(2) for batch in tqdm(batches, disable=True)]
    assert len(got) == len(expected) == 2 * len(batches) == 14
    for (image, label), (want_image, want_label) in zip(got, expected):
        assert image.device.type == label.device.type == device
        torch.testing.assert_close(image.cpu(), want_image, rtol=0, atol=0)
        assert torch.equal(label.cpu(), want_label)
    assert torch.equal(generator.get_state(), expected_state)


@pytest.mark.parametrize("device", DEVICES)
def test_sequential_batches_cover_the_dataset_in_order(device: str) -> None:
    images, labels = _data(50)
    batches = list(DeviceBatches(TensorDataset(images, labels), batch_size=16, device=torch.device(device)))
    assert [len(label) for _, label in batches] == [16, 16, 16, 2]
    assert torch.equal(torch.cat([label for _, label in batches]).cpu(), labels)
    assert torch.equal(torch.cat([image for image, _ in batches]).cpu(), images)


@pytest.mark.parametrize("device", DEVICES)
def test_what_stays_resident_by_default(device: str) -> None:
    images, labels = _data(20)
    target = torch.device(device)
    tensors = resident_tensors(TensorDataset(images, labels), target)
    assert tensors is not None and tensors[0].device.type == device
    if device == "cpu":
        assert tensors[0] is images  # no copy
    items = resident_tensors(_ItemDataset(images, labels), target)
    # a GPU reads a small dataset once; the CPU keeps its DataLoader
    assert (items is not None) == (device == "cuda") == (default_resident_bytes(target) > 0)
    assert resident_tensors(_ItemDataset(images, labels), target, max_bytes=20 * 16 * 4 - 1) is None

"""Mini-batches of a dataset on the training device.

A small dataset is kept *resident*: its images and labels are two tensors on the device, and a
batch is one gather (or slice) there, instead of a ``DataLoader`` collating single items and
copying each batch from host memory. That covers the tensor datasets (``digits``,
``mnist-t10k``) on every device and, on a GPU, any dataset up to :data:`RESIDENT_MAX_BYTES`
(MNIST and Fashion-MNIST are read once through their transforms, CIFAR-10 and SVHN are not). Larger datasets go through a
``DataLoader`` with pinned host memory and asynchronous copies.

Shuffled batches draw their order from the given generator exactly as a
``DataLoader(dataset, batch_size, shuffle=True, generator=generator)`` does (each ``iter()``
draws a seed, then each pass a permutation), so a resident dataset yields the same batches, and
leaves the generator in the same state, as that loader.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

_logger = logging.getLogger(__name__)

#: Largest dataset (float32 images) a GPU keeps resident; MNIST's 60,000 images take 188 MB.
RESIDENT_MAX_BYTES = 256 * 2 ** 20
#: Items per step when a dataset is read once into resident tensors.
_READ_BATCH = 1024

Batch = tuple[torch.Tensor, torch.Tensor]


def _estimated_bytes(dataset: Dataset) -> int:
    images, _ = dataset[0]
    return len(dataset) * images.numel() * 4  # type: ignore[arg-type]


def _read_all(dataset: Dataset) -> Batch:
    images, labels = [], []
    # its own generator: reading the dataset leaves the global random state alone
    for batch_images, batch_labels in DataLoader(dataset, batch_size=_READ_BATCH, generator=torch.Generator()):
        images.append(batch_images)
        labels.append(batch_labels)
    return torch.cat(images), torch.cat(labels)


def default_resident_bytes(device: torch.device) -> int:
    """How large a dataset that is not a tensor dataset ``device`` keeps resident by default.

    :data:`RESIDENT_MAX_BYTES` on a GPU; 0 on the CPU, where a ``DataLoader`` costs little
    next to a training step and the first pass would read the whole dataset up front.
    """
    return RESIDENT_MAX_BYTES if device.type == "cuda" else 0


def resident_tensors(dataset: Dataset, device: torch.device,
                     max_bytes: Optional[int] = None) -> Optional[Batch]:
    """``(images, labels)`` of the whole dataset on ``device``, or ``None`` if it stays on the host.

    Parameters
    ----------
    dataset
        ``(image, label)`` items. A ``TensorDataset`` of images and labels is always resident.
    device
        The training device.
    max_bytes
        Other datasets up to this size (as float32 images) are read once and kept on ``device``;
        default :func:`default_resident_bytes`.
    """
    limit = default_resident_bytes(device) if max_bytes is None else max_bytes
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        images, labels = dataset.tensors
    elif limit > 0 and len(dataset) and _estimated_bytes(dataset) <= limit:  # type: ignore[arg-type]
        images, labels = _read_all(dataset)
        _logger.info("dataset of %d images kept on %s (%.0f MB)", len(images), device,
                     images.numel() * images.element_size() / 1e6)
    else:
        return None
    return images.to(device), labels.to(device)


class DeviceBatches:
    """Iterable over ``(images, labels)`` batches of ``dataset`` on ``device``.

    Parameters
    ----------
    dataset
        ``(image, label)`` items.
    batch_size
        Items per batch (the last one may be smaller).
    device
        Where the batches are returned.
    shuffle
        Reshuffle every pass, drawing from ``generator`` (as ``DataLoader`` does).
    generator
        Random source of the order.
    max_resident_bytes
        See :func:`resident_tensors`.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, device: torch.device, shuffle: bool = False,
                 generator: Optional[torch.Generator] = None, max_resident_bytes: Optional[int] = None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.generator = generator
        self.resident = resident_tensors(dataset, device, max_resident_bytes)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        # Like a DataLoader, every iter() starts a pass at once (drawing the pass's seed from the
        # generator), even if the pass is never consumed (as tqdm.auto's iter() at construction).
        if self.resident is None:
            pinned = self.device.type == "cuda"
            loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                                generator=self.generator, pin_memory=pinned)
            return self._streamed(iter(loader), pinned)
        if not self.shuffle:
            return self._sliced()
        # indices only: the same sampler, hence the same order and generator draws, as a DataLoader
        order = DataLoader(range(len(self.resident[1])), batch_size=self.batch_size, shuffle=True,
                           generator=self.generator)
        return self._gathered(iter(order))

    def _sliced(self) -> Iterator[Batch]:
        images, labels = self.resident  # type: ignore[misc]
        for start in range(0, len(labels), self.batch_size):
            yield images[start:start + self.batch_size], labels[start:start + self.batch_size]

    def _gathered(self, order: Iterator[torch.Tensor]) -> Iterator[Batch]:
        images, labels = self.resident  # type: ignore[misc]
        for indices in order:
            indices = indices.to(self.device, non_blocking=True)
            yield images[indices], labels[indices]

    def _streamed(self, loader: Iterator[Batch], pinned: bool) -> Iterator[Batch]:
        for images, labels in loader:
            yield images.to(self.device, non_blocking=pinned), labels.to(self.device, non_blocking=pinned)

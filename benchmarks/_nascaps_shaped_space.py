"""A large, enumerable NASCaps-shaped space for ``benchmarks/search_quality.py``.

124,416 CapsNet- and DeepCaps-style networks for 28x28 images, described by eleven genes
(family, input resize, convolution depth/width/kernel/stride, capsule layers or cells, capsule
types, capsule length, capsule kernel and stride, class-capsule length). Each architecture is a
NASCaps chromosome, so its **energy and latency are NASCaps' own** (the ``capsacc`` model of
``hw_estimators.estimate_chromosome``, the figures NASCaps' search optimised).

Its **accuracy is synthetic**: 124,416 networks cannot be trained here. It is a fixed,
documented function of the genes with the shape measured on real networks (more capacity helps
with diminishing returns, DeepCaps cells and a larger input help a little, shrinking the map to
1x1 or using 9x9 kernels on small maps hurts, a wide primary-capsule layer needs width before
it) plus a deterministic per-architecture perturbation (hash-seeded, sd 0.15 points, the seed-to-seed
spread of a fixed network's MNIST test accuracy): enough
structure for a surrogate to learn, enough noise that it cannot be read off one gene. The space
answers what this benchmark asks: how many evaluations a strategy needs to find a front whose
objectives it must partly learn, on a space of NASCaps' size and shape.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any, Iterator, Mapping

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import model_context

from search_spaces.nascaps_space import register_labels

IMAGE_SIZE = 28
NUM_CLASSES = 10
#: Standard deviation of the per-architecture perturbation of the accuracy (fraction, not points).
NOISE_SD = 0.0015

#: Label -> candidate values, in gene order.
CANDIDATES: dict[str, tuple[Any, ...]] = {
    "family": ("capsnet", "deepcaps"),
    "input_resize": (1, 2),
    "conv_layers": (1, 2, 3),
    "conv_channels": (32, 64, 128, 256),
    "conv_kernel": (3, 5, 9),
    "conv_stride": (1, 2),
    "caps_layers": (1, 2, 3),          # primary-capsule layers (CapsNet) or capsule cells (DeepCaps)
    "caps_types": (4, 8, 16, 32),
    "caps_dim": (4, 8, 16),
    "caps_kernel": (3, 5, 9),
    "caps_stride": (1, 2),
    "class_dim": (8, 16),
}


def space_size() -> int:
    return math.prod(len(values) for values in CANDIDATES.values())


def all_samples() -> Iterator[dict[str, Any]]:
    """Every architecture, in a fixed order."""
    for values in itertools.product(*CANDIDATES.values()):
        yield dict(zip(CANDIDATES, values))


def arch_key(sample: Mapping[str, Any]) -> tuple:
    return tuple(sample[label] for label in CANDIDATES)


def _shrink(size: int, stride: int) -> int:
    return -(-size // stride)  # "same" padding


def chromosome(sample: Mapping[str, Any]) -> list[list[int]]:
    """The NASCaps chromosome of ``sample`` (rows, ``[extra_skip]``, ``[input_resize]``)."""
    size = IMAGE_SIZE * sample["input_resize"]
    rows: list[list[int]] = []
    channels = 1
    for index in range(sample["conv_layers"]):
        stride = sample["conv_stride"] if index == 0 else 1
        out = _shrink(size, stride)
        rows.append([0, size, channels, 1, sample["conv_kernel"], stride, out, sample["conv_channels"], 1])
        size, channels = out, sample["conv_channels"]
    types, dim, kernel, stride = sample["caps_types"], sample["caps_dim"], sample["caps_kernel"], sample["caps_stride"]
    if sample["family"] == "capsnet":
        in_types, in_dim = channels, 1
        for _ in range(sample["caps_layers"]):
            out = _shrink(size, stride)
            rows.append([1, size, in_types, in_dim, kernel, stride, out, types, dim])
            size, in_types, in_dim = out, types, dim
        rows.append([1, size, types, dim, kernel, stride, _shrink(size, stride), NUM_CLASSES, sample["class_dim"]])
    else:
        in_types, in_dim = max(channels // 4, 1), 4  # the convolution's channels as 4-dimensional capsules
        for _ in range(sample["caps_layers"]):
            out = _shrink(size, stride)
            rows.append([2, size, in_types, in_dim, min(kernel, size), stride, out, types, dim])
            size, in_types, in_dim = out, types, dim
        rows.append([2, size, types, dim, size, 1, 1, NUM_CLASSES, sample["class_dim"]])
    return rows + [[-1], [sample["input_resize"]]]


def final_map_size(sample: Mapping[str, Any]) -> int:
    """Side of the last capsule map before the class capsules."""
    size = _shrink(IMAGE_SIZE * sample["input_resize"], sample["conv_stride"])
    for _ in range(sample["caps_layers"]):
        size = _shrink(size, sample["caps_stride"])
    return size


def synthetic_accuracy(sample: Mapping[str, Any]) -> float:
    """The space's accuracy (see the module docstring): deterministic, in [0.80, 0.996]."""
    capacity = (math.log2(sample["conv_channels"]) * (1 + 0.25 * (sample["conv_layers"] - 1))
                + 0.8 * math.log2(sample["caps_types"] * sample["caps_dim"])
                + 0.5 * sample["caps_layers"] + 0.3 * math.log2(sample["class_dim"]))
    accuracy = 0.80 + 0.19 * (1 - math.exp(-(capacity - 6.0) / 5.0)) if capacity > 6 else 0.80
    accuracy += 0.006 if sample["family"] == "deepcaps" else 0.0
    accuracy += 0.004 * (sample["input_resize"] - 1)
    side = final_map_size(sample)
    if side <= 1:
        accuracy -= 0.03
    elif side <= 3:
        accuracy -= 0.008
    if sample["caps_kernel"] == 9 and side < 6:
        accuracy -= 0.01
    if sample["conv_kernel"] == 3 and sample["conv_layers"] == 1:
        accuracy -= 0.006  # a small receptive field before the capsules
    if sample["caps_types"] * sample["caps_dim"] > 2 * sample["conv_channels"]:
        accuracy -= 0.005  # primary capsules wider than the features they read
    return float(min(max(accuracy + perturbation(sample), 0.80), 0.996))


def perturbation(sample: Mapping[str, Any]) -> float:
    """The architecture's deterministic perturbation: uniform, mean 0, sd :data:`NOISE_SD`."""
    digest = hashlib.sha256(json.dumps(arch_key(sample)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") / 2 ** 64 - 0.5) * NOISE_SD * math.sqrt(12)


class NASCapsShapedSpace(ModelSpace):
    """The labels of :data:`CANDIDATES` as an NNI model space (no network: the table answers).

    Attributes
    ----------
    arch : dict
        The value of every label this instance was built with (the evaluator's lookup key).
    """

    def __init__(self) -> None:
        super().__init__()
        self.arch = register_labels(self, {label: nni.choice(label, list(values))
                                           for label, values in CANDIDATES.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def freeze(self, sample: Mapping[str, Any]) -> "NASCapsShapedSpace":
        self.validate(dict(sample))
        with model_context(dict(sample)):
            return self.__class__()

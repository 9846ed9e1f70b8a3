"""The small, enumerable NNI model space of ``benchmarks/search_quality.py``.

A two-convolution CNN for 8x8 digits with seven categorical choices: 864 architectures, 288
distinct inference graphs. Every sample builds a different network; samples that differ only in
``dropout`` share their inference graph (dropout vanishes in evaluation mode), hence their
hardware cost.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Iterator, Mapping, Sequence

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import model_context
from torch import nn

from search_spaces.nascaps_space import register_labels

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10

#: Label -> candidate values, in gene order.
CANDIDATES: dict[str, tuple[Any, ...]] = {
    "conv1_channels": (4, 8, 16, 32),
    "conv1_kernel": (3, 5),
    "conv2_channels": (8, 16, 32),
    "conv2_kernel": (3, 5),
    "pooling": ("none", "after_conv1", "after_conv2"),  # one 2x2 max pooling, or none
    "fc_width": (0, 64),  # hidden fully connected layer (0 = none)
    "dropout": (0.0, 0.25, 0.5),  # before the output layer; no inference cost
}

#: Labels that do not change the inference graph (so not the hardware cost).
COST_FREE_LABELS = ("dropout",)


class TinyCNNSpace(ModelSpace):
    """conv(c1, k1) + BN + ReLU [+ pool] -> conv(c2, k2) + BN + ReLU [+ pool] -> [FC + ReLU]
    -> dropout -> linear; "same" padding, 2x2 max pooling at the chosen place.

    Attributes
    ----------
    arch : dict
        The value of every label this instance was built with (the evaluator's lookup key).
    """

    def __init__(self) -> None:
        super().__init__()
        values = register_labels(self, {label: nni.choice(label, list(options))
                                        for label, options in CANDIDATES.items()})
        self.arch = dict(values)
        c1, c2, pooling = values["conv1_channels"], values["conv2_channels"], values["pooling"]
        layers: list[nn.Module] = [nn.Conv2d(INPUT_SHAPE[0], c1, values["conv1_kernel"],
                                             padding=values["conv1_kernel"] // 2, bias=False),
                                   nn.BatchNorm2d(c1), nn.ReLU(inplace=True)]
        if pooling == "after_conv1":
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(c1, c2, values["conv2_kernel"], padding=values["conv2_kernel"] // 2, bias=False),
                   nn.BatchNorm2d(c2), nn.ReLU(inplace=True)]
        if pooling == "after_conv2":
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = INPUT_SHAPE[1] // (2 if pooling != "none" else 1)
        features = c2 * side * side
        head: list[nn.Module] = [nn.Flatten()]
        if values["fc_width"]:
            head += [nn.Linear(features, values["fc_width"]), nn.ReLU(inplace=True)]
            features = values["fc_width"]
        head += [nn.Dropout(values["dropout"]), nn.Linear(features, NUM_CLASSES)]
        self.head = nn.Sequential(*head)
        self.input_shape = INPUT_SHAPE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def freeze(self, sample: Mapping[str, Any]) -> "TinyCNNSpace":
        """The network of ``sample`` (a value for every label)."""
        self.validate(dict(sample))
        with model_context(dict(sample)):
            return self.__class__()


def all_samples() -> Iterator[dict[str, Any]]:
    """Every architecture of the space, in a fixed order."""
    for values in itertools.product(*CANDIDATES.values()):
        yield dict(zip(CANDIDATES, values))


def space_size() -> int:
    size = 1
    for options in CANDIDATES.values():
        size *= len(options)
    return size


def arch_key(sample: Mapping[str, Any]) -> tuple:
    """Hashable key of an architecture (label order of :data:`CANDIDATES`)."""
    return tuple(sample[label] for label in CANDIDATES)


def cost_key(sample: Mapping[str, Any]) -> tuple:
    """Key of the inference graph (labels in :data:`COST_FREE_LABELS` left out)."""
    return tuple(sample[label] for label in CANDIDATES if label not in COST_FREE_LABELS)


def definition_hash(extra: Mapping[str, Any] | Sequence[Any] = ()) -> str:
    """Short hash of the space definition plus ``extra`` (training and estimator settings)."""
    text = json.dumps({"candidates": CANDIDATES, "input_shape": INPUT_SHAPE, "classes": NUM_CLASSES,
                       "network": "conv-bn-relu x2, maxpool, fc, dropout, linear (v1)", "extra": extra},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

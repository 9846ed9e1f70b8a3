"""Networks exported once per test session for the hardware-estimator tests."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

CAPSNET_GENE = [[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [1, 14, 32, 8, 9, 2, 7, 10, 16],
                [-1], [1]]
DEEPCAPS_GENE = [[0, 64, 3, 1, 3, 1, 64, 128, 1], [2, 64, 32, 4, 3, 2, 32, 32, 4], [2, 32, 32, 4, 3, 2, 16, 32, 8],
                 [2, 16, 32, 8, 3, 2, 8, 32, 8], [2, 8, 32, 8, 3, 2, 4, 32, 8], [2, 4, 32, 8, 4, 1, 1, 10, 16],
                 [4], [2]]


def small_conv_model() -> onnx.ModelProto:
    """Conv 2 -> 4 channels, 3x3, padding 1, on a 5x5 image, with bias."""
    weight = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], [weight, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


class PlainCNN(nn.Module):
    """Conv, ReLU, max-pool, grouped conv, batch norm, ReLU, linear: a network without capsules."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, groups=2), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class Exported:
    """A torch network, an example input and its ONNX export."""

    def __init__(self, build: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> None:
        from nni_capsnas.export import export_onnx

        torch.manual_seed(0)
        self.network = build().eval()
        self.example = torch.randn(*input_shape)
        self.proto: onnx.ModelProto = export_onnx(self.network, self.example)


@pytest.fixture(scope="session")
def capsnet_export() -> Exported:
    from search_spaces.reference import capsnet

    return Exported(lambda: capsnet((1, 28, 28), 10), (1, 1, 28, 28))


@pytest.fixture(scope="session")
def deepcaps_export() -> Exported:
    from search_spaces.reference import deepcaps

    return Exported(lambda: deepcaps((1, 28, 28), 10), (1, 1, 28, 28))


@pytest.fixture(scope="session")
def cnn_export() -> Exported:
    return Exported(PlainCNN, (1, 1, 12, 12))


@pytest.fixture(scope="session")
def capsnet_chromosome_export() -> Exported:
    from search_spaces.nascaps import from_chromosome

    return Exported(lambda: from_chromosome(CAPSNET_GENE, decoder=False), (1, 1, 28, 28))


@pytest.fixture(scope="session")
def deepcaps_chromosome_export() -> Exported:
    from search_spaces.nascaps import from_chromosome

    return Exported(lambda: from_chromosome(DEEPCAPS_GENE, decoder=False), (1, 3, 32, 32))

"""Networks exported once per test session for the hardware-estimator tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader
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


#: The torchvision networks the estimator is checked on (none written here), built with ``weights=None``.
TORCHVISION_NETWORKS = ("resnet18", "mobilenet_v2", "squeezenet1_0", "shufflenet_v2_x1_0", "efficientnet_b0",
                        "regnet_x_400mf")
#: A small static input keeps every network's graph structure (and each export takes a fraction of
#: the time at 224x224; benchmarks/estimator_graphs.py runs the full size).
TORCHVISION_INPUT = (1, 3, 64, 64)


def flop_counter_macs(network: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates as ``FlopCounterMode`` counts them (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(example)
    return counter.get_total_flops() / 2


def torchscript_export(network: nn.Module, example: torch.Tensor, path: Path) -> onnx.ModelProto:
    """The legacy TorchScript exporter at opset 17 (no module metadata, BatchNorm folded, Identity nodes)."""
    import contextlib
    import io
    import warnings

    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=17)
    return onnx.load(str(path))


class TorchvisionExports:
    """Each torchvision network exported once per session with both exporters, with its MACs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._done: dict[str, tuple[onnx.ModelProto, onnx.ModelProto, float]] = {}

    def __call__(self, name: str) -> tuple[onnx.ModelProto, onnx.ModelProto, float]:
        """``(TorchScript export, dynamo export, FlopCounterMode MACs)`` of network ``name``."""
        if name not in self._done:
            import torchvision
            from nni_capsnas.export import export_onnx

            torch.manual_seed(0)
            network = getattr(torchvision.models, name)(weights=None).eval()
            example = torch.randn(*TORCHVISION_INPUT)
            self._done[name] = (torchscript_export(network, example, self.folder / f"{name}.onnx"),
                                export_onnx(network, example), flop_counter_macs(network, example))
        return self._done[name]


@pytest.fixture(scope="session")
def torchvision_exports(tmp_path_factory: pytest.TempPathFactory) -> TorchvisionExports:
    return TorchvisionExports(tmp_path_factory.mktemp("torchvision"))


class RandomImages(CalibrationDataReader):
    """onnxruntime calibration data: a few seeded random images for one input."""

    def __init__(self, input_name: str, shape: tuple[int, ...], count: int = 4) -> None:
        super().__init__()
        generator = np.random.default_rng(0)
        self._batches = iter([{input_name: generator.standard_normal(shape).astype(np.float32)}
                              for _ in range(count)])

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self._batches, None)


@pytest.fixture(scope="session")
def quantized_resnet18(torchvision_exports: TorchvisionExports,
                       tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """``(float graph, int8 QDQ graph)``: ResNet-18's TorchScript export and onnxruntime's ``quantize_static`` of it."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    float_graph = torchvision_exports("resnet18")[0]
    folder = tmp_path_factory.mktemp("quantized")
    source, target = folder / "float.onnx", folder / "int8.onnx"
    onnx.save(float_graph, str(source))
    reader = RandomImages(float_graph.graph.input[0].name, TORCHVISION_INPUT)
    quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return float_graph, onnx.load(str(target))

"""Every capsule module exports with the dynamo ONNX exporter and onnxruntime agrees with torch."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from nni_capsnas.modules import (
    CapsCell, ClassCaps, ConvCaps2d, ConvCaps3d, FlattenCaps, PrimaryCaps, ReconstructionDecoder,
)
from search_spaces import CapsNetSpace, capsnet, deepcaps

CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"


def _export(module: nn.Module, x: torch.Tensor, path: Path) -> onnx.ModelProto:
    module.eval()
    torch.onnx.export(module, (x,), str(path), dynamo=True)
    assert path.is_file()
    return onnx.load(str(path))


def _assert_onnxruntime_matches_torch(module: nn.Module, x: torch.Tensor, path: Path) -> onnx.ModelProto:
    model = _export(module, x, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch_out = module(x).numpy()
    assert onnx_out.shape == torch_out.shape
    np.testing.assert_allclose(onnx_out, torch_out, rtol=0, atol=1e-4)
    return model


def _small_capsnet() -> nn.Module:
    return capsnet((1, 12, 12), 10, conv_channels=8, conv_kernel=3, primary_caps=4, primary_dim=4,
                   primary_kernel=3, primary_stride=2, class_dim=8)


def _small_deepcaps() -> nn.Module:
    return deepcaps((1, 8, 8), 10, stem_channels=8, cell_caps=((4, 2), (4, 4), (4, 4), (4, 4)), class_dim=4)


MODULES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "primary_caps": (lambda: PrimaryCaps(in_channels=3, out_caps=4, caps_dim=4, kernel_size=3, stride=2, padding=1),
                     (2, 3, 9, 9)),
    "class_caps": (lambda: ClassCaps(in_caps=12, in_dim=4, out_caps=3, out_dim=5, iterations=3), (2, 12, 4)),
    "conv_caps2d": (lambda: ConvCaps2d(in_caps=3, in_dim=2, out_caps=2, out_dim=4, stride=2), (2, 3, 2, 6, 6)),
    "conv_caps3d": (lambda: ConvCaps3d(in_caps=3, in_dim=2, out_caps=2, out_dim=4, iterations=3), (2, 3, 2, 5, 5)),
    "flatten_caps": (FlattenCaps, (2, 3, 4, 5, 5)),
    "caps_cell_conv_skip": (lambda: CapsCell(in_caps=3, in_dim=2, out_caps=2, out_dim=4), (2, 3, 2, 6, 6)),
    "caps_cell_routing_skip": (lambda: CapsCell(in_caps=3, in_dim=2, out_caps=2, out_dim=4, routing_skip=True),
                               (2, 3, 2, 6, 6)),
    "decoder": (lambda: ReconstructionDecoder(num_caps=10, caps_dim=4, output_shape=(1, 6, 6), hidden=(16, 32)),
                (2, 10, 4)),
    "small_capsnet": (_small_capsnet, (1, 1, 12, 12)),
    "small_deepcaps": (_small_deepcaps, (1, 1, 8, 8)),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_module_exports_and_onnxruntime_matches_torch(name: str, tmp_path: Path) -> None:
    factory, shape = MODULES[name]
    _assert_onnxruntime_matches_torch(factory(), torch.rand(*shape), tmp_path / f"{name}.onnx")


def test_sabour_capsnet_exports_and_onnxruntime_matches_torch(tmp_path: Path) -> None:
    _assert_onnxruntime_matches_torch(capsnet(), torch.rand(1, 1, 28, 28), tmp_path / "capsnet.onnx")


def test_frozen_capsnet_space_sample_exports(tmp_path: Path) -> None:
    space = CapsNetSpace()
    sample = {"stem_channels": 16, "primary_caps": 8, "primary_dim": 4, "primary_kernel": 5, "iterations": 3}
    _assert_onnxruntime_matches_torch(space.freeze(sample), torch.rand(1, 1, 8, 8), tmp_path / "space.onnx")


def test_exported_nodes_name_their_capsule_module_class(tmp_path: Path) -> None:
    model = _export(_small_capsnet(), torch.rand(1, 1, 12, 12), tmp_path / "capsnet.onnx")
    hierarchies = " ".join(prop.value for node in model.graph.node for prop in node.metadata_props
                           if prop.key == CLASS_HIERARCHY)
    for cls in ("PrimaryCaps", "FlattenCaps", "ClassCaps"):
        assert f".{cls}'" in hierarchies, f"no node attributed to {cls}"

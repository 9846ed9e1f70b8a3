"""export_onnx: dynamo export with shapes and module provenance."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from nni_capsnas.export import export_onnx, on_cpu
from search_spaces.reference import capsnet
from tests.conftest import DEVICES

CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"


@pytest.fixture(scope="module")
def capsnet_model() -> tuple[nn.Module, torch.Tensor, onnx.ModelProto]:
    torch.manual_seed(0)
    network = capsnet((1, 28, 28), 10)
    network.train()
    example = torch.randn(1, 1, 28, 28)
    return network, example, export_onnx(network, example)


def test_metadata_and_opset(capsnet_model) -> None:
    network, _, proto = capsnet_model
    assert network.training  # the mode is restored after the export
    assert max(opset.version for opset in proto.opset_import if opset.domain in ("", "ai.onnx")) >= 18
    hierarchies = [{prop.key: prop.value for prop in node.metadata_props}.get(CLASS_HIERARCHY, "")
                   for node in proto.graph.node]
    assert all(hierarchies)
    assert any("nni_capsnas.modules.class_caps.ClassCaps" in text for text in hierarchies)
    assert any("nni_capsnas.modules.primary_caps.PrimaryCaps" in text for text in hierarchies)


def test_every_tensor_has_a_static_shape(capsnet_model) -> None:
    _, _, proto = capsnet_model
    graph = proto.graph
    known = {value.name: value for value in [*graph.input, *graph.value_info, *graph.output]}
    for node in graph.node:
        for name in node.output:
            dims = known[name].type.tensor_type.shape.dim
            assert all(dim.HasField("dim_value") for dim in dims), name


def test_onnxruntime_agrees_with_torch(capsnet_model) -> None:
    network, example, proto = capsnet_model
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    network.eval()
    try:
        with torch.no_grad():
            expected = network(example).numpy()
    finally:
        network.train()
    np.testing.assert_allclose(result, expected, atol=1e-4)


def test_tuple_input() -> None:
    class Add(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    proto = export_onnx(Add(), (torch.zeros(2, 3), torch.zeros(2, 3)), opset=20)
    assert len(proto.graph.input) == 2


@pytest.mark.parametrize("model, example, opset, message", [
    ("not a module", torch.zeros(1), 18, "model must be a torch.nn.Module, got str"),
    (nn.Identity(), [1, 2], 18, "example_input must be a torch.Tensor"),
    (nn.Identity(), (), 18, "example_input must be a torch.Tensor"),
    (nn.Identity(), torch.zeros(1), 17, "opset must be an integer >= 18, got 17"),
])
def test_bad_arguments(model, example, opset: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export_onnx(model, example, opset=opset)


def test_input_that_does_not_fit_the_model() -> None:
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"cannot export Sequential to ONNX with example_input of shape\(s\) "
                                         r"\[\(1, 1, 8, 8\)\]") as error:
        export_onnx(network, torch.zeros(1, 1, 8, 8))
    assert "\n" not in str(error.value)
    assert network.training


@pytest.mark.parametrize("device", DEVICES)
def test_a_model_on_any_device_exports_the_graph_of_its_cpu_copy(device: str) -> None:
    """A network trained on a GPU is estimated like the same network on the CPU; it stays on its device."""
    torch.manual_seed(0)
    network = capsnet((1, 8, 8), 10, conv_channels=16, conv_kernel=3, primary_caps=4, primary_dim=4,
                      primary_kernel=3, primary_stride=1).to(device)
    assert (on_cpu(network) is network) == (device == "cpu")
    reference = export_onnx(on_cpu(network), torch.zeros(1, 1, 8, 8))
    exported = export_onnx(network, torch.zeros(1, 1, 8, 8, device=device))
    assert [node.op_type for node in exported.graph.node] == [node.op_type for node in reference.graph.node]
    weights = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in exported.graph.initializer}
    for tensor in reference.graph.initializer:
        np.testing.assert_array_equal(weights[tensor.name], onnx.numpy_helper.to_array(tensor))
    assert all(p.device.type == device for p in network.parameters())

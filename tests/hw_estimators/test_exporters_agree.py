"""Networks nobody here wrote, exported by both PyTorch exporters: one network, one cost.

Each torchvision network is exported with the TorchScript exporter (opset 17: batch norm folded,
``Identity`` nodes, shape arithmetic left in the graph, no module metadata) and with the dynamo
exporter (opset 18: ``ReduceMean`` for global pooling, ``Reshape`` for ``Flatten``, all-zero biases
dropped). The estimate reads both as the same canonical graph.
"""

from __future__ import annotations

import logging
import random

import onnx
import pytest

from hw_estimators import estimate, onnx_workload
from .conftest import TORCHVISION_NETWORKS, TorchvisionExports

EXPORTERS = ("torchscript", "dynamo")


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", TORCHVISION_NETWORKS)
def test_macs_match_flop_counter_and_every_operator_is_known(name: str, exporter: str,
                                                             torchvision_exports: TorchvisionExports,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    torchscript, dynamo, expected = torchvision_exports(name)
    with caplog.at_level(logging.WARNING, logger="hw_estimators"):
        workload = onnx_workload(torchscript if exporter == "torchscript" else dynamo)
    assert workload.macs == pytest.approx(expected, rel=0.01)
    assert workload.unknown_ops == {}
    assert "dynamic dimensions" not in caplog.text  # every shape resolved, ShuffleNetV2's reshapes included


@pytest.mark.parametrize("accelerator", ["systolic", "capsacc"])
@pytest.mark.parametrize("name", TORCHVISION_NETWORKS)
def test_both_exports_cost_the_same(name: str, accelerator: str, torchvision_exports: TorchvisionExports) -> None:
    torchscript, dynamo, _ = torchvision_exports(name)
    first, second = estimate(torchscript, accelerator), estimate(dynamo, accelerator)
    assert first.energy_mj == pytest.approx(second.energy_mj, rel=0.02)
    assert first.latency_ms == pytest.approx(second.latency_ms, rel=0.02)
    assert (first.macs, first.params) == (second.macs, second.params)  # biases: one per output, whatever was exported
    # the same canonical layers: kinds and widths agree layer for layer, whatever the op spelling
    assert sorted(zip(first.layers.kind, first.layers.bits)) == sorted(zip(second.layers.kind, second.layers.bits))


def _shuffled_topological_order(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """The same graph with its nodes in another valid order (Kahn's algorithm, random ties)."""
    nodes = list(model.graph.node)
    available = {value.name for value in model.graph.input} | {tensor.name for tensor in model.graph.initializer}
    generator = random.Random(seed)
    ordered = []
    while nodes:
        ready = [node for node in nodes if all(not name or name in available for name in node.input)]
        node = generator.choice(ready)
        nodes.remove(node)
        ordered.append(node)
        available.update(node.output)
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(ordered)
    return shuffled


@pytest.mark.parametrize("name", ["squeezenet1_0", "efficientnet_b0"])
def test_node_order_does_not_change_the_cost(name: str, torchvision_exports: TorchvisionExports) -> None:
    """Fire modules' parallel branches and the squeeze-excitation chains, written in other orders."""
    graph = torchvision_exports(name)[1]
    reference = estimate(graph, "systolic")
    for seed in (0, 1):
        shuffled = estimate(_shuffled_topological_order(graph, seed), "systolic")
        assert shuffled.energy_mj == pytest.approx(reference.energy_mj, rel=1e-9)
        assert shuffled.latency_ms == pytest.approx(reference.latency_ms, rel=1e-9)
        assert sorted(shuffled.layers.ops) == sorted(reference.layers.ops)

"""A meta-device trace writes the graph the dynamo exporter writes, as far as the estimate can see."""

from __future__ import annotations

import logging
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hw_estimators.fragments import FragmentReading, read_fragment
from hw_estimators.layer_pricing import cost_key
from nni_capsnas.export import export_onnx
from nni_capsnas.modules import CapsCell, ClassCaps, ConvCaps3d, FlattenCaps, PrimaryCaps
from nni_capsnas.onnx_tracing import EMITTERS, UNKNOWN_DOMAIN, trace_onnx
from search_spaces.capsule_cell_space import FEATURE_OPS
from search_spaces.cnn_space import BlockSpec, cnn_block, mlp_head
from search_spaces.nascaps_space import CapsuleGather, ConvSpec, conv_block, input_resize


def reading_summary(reading: FragmentReading) -> dict:
    """Everything a composition uses of a reading."""
    return {"layers": sorted(map(cost_key, reading.layers)), "params": reading.params,
            "peaks": {kept: reading.peak(kept) for kept in ((), *((slot,) for slot in range(len(reading.inputs))))},
            "inputs": [(item.shape, item.elements, item.bits, item.readers_fusable, item.affine_reader, item.passes_to)
                       for item in reading.inputs],
            "outputs": [(item.shape, item.elements, item.bits, item.fusable_producer, item.fold_host, item.alias_of)
                        for item in reading.outputs],
            "unknown": dict(reading.workload.unknown_ops)}


def traced_reading(build: Callable[[], nn.Module], shapes: list[tuple[int, ...]]) -> FragmentReading:
    with torch.device("meta"):
        module = build()
    traced = trace_onnx(module, shapes)
    assert not traced.unknown_functions
    return read_fragment(traced.model, tensors=traced.tensors)


def exported_reading(build: Callable[[], nn.Module], shapes: list[tuple[int, ...]]) -> FragmentReading:
    examples = [torch.rand(*shape) for shape in shapes]
    return read_fragment(export_onnx(build(), examples if len(examples) > 1 else examples[0]))


class HalfInside(nn.Module):
    """Conversions to the same type (no node) and to another (``Cast``), as mixed-precision code writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x).to(x.dtype).float()
        return (y.to(torch.float16) * 2.0).to(torch.float32) + x.type_as(y)


#: Modules the spaces' blocks are made of, each with the input shapes it is traced at.
MODULES: dict[str, tuple[Callable[[], nn.Module], list[tuple[int, ...]]]] = {
    "class caps, 3 routings": (lambda: ClassCaps(in_caps=32, in_dim=8, out_caps=10, out_dim=16), [(1, 32, 8)]),
    "DeepCaps cell, 3D routing skip": (lambda: CapsCell(in_caps=4, in_dim=8, out_caps=4, out_dim=8, routing_skip=True,
                                                        iterations=2), [(1, 4, 8, 6, 6)]),
    "primary caps, row-GEMM sized": (lambda: PrimaryCaps(in_channels=128, out_caps=4, caps_dim=8, kernel_size=9,
                                                         stride=2, padding=4), [(1, 128, 10, 10)]),
    "3D capsules then flatten": (lambda: nn.Sequential(ConvCaps3d(in_caps=4, in_dim=4, out_caps=4, out_dim=4),
                                                       FlattenCaps()), [(1, 4, 4, 5, 5)]),
    "conv block": (lambda: conv_block(3, ConvSpec(8, 3, 2, (4, 4))), [(1, 3, 8, 8)]),
    "CNN block, max pooling": (lambda: cnn_block(3, BlockSpec(8, 5, 1, "max", (4, 4))), [(1, 3, 8, 8)]),
    "MLP head": (lambda: mlp_head(32, (16, 8), 10), [(1, 8, 2, 2)]),
    "bilinear resize": (lambda: input_resize(2), [(1, 3, 8, 8)]),
    "gather with a skip": (CapsuleGather, [(1, 4, 8, 2, 2), (1, 4, 8, 4, 4)]),
    "separable conv": (lambda: FEATURE_OPS["sep_conv3x3"](8), [(1, 8, 6, 6)]),
    "average pooling": (lambda: FEATURE_OPS["avg_pool3x3"](8), [(1, 8, 6, 6)]),
    "type conversions": (HalfInside, [(2, 3)]),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_a_traced_module_reads_as_its_export(name: str) -> None:
    build, shapes = MODULES[name]
    assert reading_summary(traced_reading(build, shapes)) == reading_summary(exported_reading(build, shapes))


def _ops(build: Callable[[], nn.Module], shapes: list[tuple[int, ...]]) -> list[str]:
    with torch.device("meta"):
        module = build()
    return [node.op_type for node in trace_onnx(module, shapes).model.graph.node]


def test_the_exporter_s_rewrites_are_applied() -> None:
    # ClassCaps transposes its votes twice in a row: the exporter merges them away, leaving the input's transpose
    # and the votes' permutation
    assert _ops(MODULES["class caps, 3 routings"][0], [(1, 32, 8)]).count("Transpose") == 2

    class AddEpsilon(nn.Module):
        def __init__(self, eps: float) -> None:
            super().__init__()
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sqrt(x + self.eps) * 1.0

    assert _ops(lambda: AddEpsilon(1e-8), [(2, 3)]) == ["Sqrt"]  # within onnxscript's tolerance of 0 (and * 1)
    assert _ops(lambda: AddEpsilon(1e-6), [(2, 3)]) == ["Add", "Sqrt"]


def test_the_trace_records_module_classes_for_capsule_recognition() -> None:
    reading = traced_reading(*MODULES["class caps, 3 routings"])
    kinds = [layer.kind for layer in reading.layers if layer.is_contraction]
    assert kinds == ["capsule_votes"] + ["routing"] * 5
    assert {layer.module for layer in reading.layers} == {"ClassCaps"}


class Stacked(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x, x]).sum(dim=0)


class Split(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, 2, dim=1)
        return first * second


def test_functions_without_an_emitter_become_unknown_operators() -> None:
    traced = trace_onnx(Stacked(), [(2, 3)])
    assert list(traced.unknown_functions.values()) == [1] and "stack" in next(iter(traced.unknown_functions))
    assert [node.domain for node in traced.model.graph.node] == [UNKNOWN_DOMAIN, ""]
    assert traced.output_shapes == ((2, 3),)
    split = trace_onnx(Split(), [(1, 4)])  # a tuple of results: one unknown node writing both
    assert [(node.domain, len(node.output)) for node in split.model.graph.node] == [(UNKNOWN_DOMAIN, 2), ("", 1)]
    assert split.unknown_functions


def test_tracing_leaves_the_module_as_it_was_and_refuses_training_behaviour() -> None:
    module = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    trace_onnx(module, [(2, 4)])
    assert module.training and not module._forward_pre_hooks and not module[0]._forward_hooks

    class Training(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(x, 0.5, training=True)

    with pytest.raises(ValueError, match="eval mode"):
        trace_onnx(Training(), [(2, 4)])
    with pytest.raises(ValueError, match=r"cannot trace Linear with inputs of shape\(s\) \[\(2, 5\)\]"):
        trace_onnx(nn.Linear(4, 4), [(2, 5)])


#: Emitters that compute output shapes themselves, with arguments to check them against the meta kernels.
SHAPE_CASES: list[tuple[Callable, tuple, dict]] = [
    (torch.conv2d, ((2, 3, 11, 9), (8, 3, 3, 5)), {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)}),
    (torch.conv2d, ((1, 4, 7, 7), (4, 1, 3, 3)), {"padding": "same", "groups": 4}),
    (torch.conv3d, ((3, 1, 8, 5, 5), (6, 1, 8, 3, 3)), {"stride": (8, 1, 1), "padding": (0, 1, 1)}),
    (F.max_pool2d, ((1, 2, 9, 7),), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (F.avg_pool2d, ((1, 2, 8, 8),), {"kernel_size": 2}),
    (torch.matmul, ((5, 1, 3, 4), (2, 4, 6)), {}),
    (torch.matmul, ((4,), (3, 4, 2)), {}),
    (torch.bmm, ((3, 2, 4), (3, 4, 5)), {}),
    (torch.Tensor.mul, ((3, 1, 5), (4, 1)), {}),
    (torch.Tensor.sum, ((2, 3, 4),), {"dim": (0, -1), "keepdim": False}),
    (F.interpolate, ((1, 2, 5, 7),), {"scale_factor": 2, "mode": "bilinear", "align_corners": False}),
    (F.linear, ((2, 3, 4), (5, 4), (5,)), {}),
    (torch.cat, (), {}),
]


@pytest.mark.parametrize("function, shapes, kwargs", SHAPE_CASES, ids=lambda item: getattr(item, "__name__", ""))
def test_emitted_shapes_are_the_meta_kernels_shapes(function: Callable, shapes: tuple, kwargs: dict) -> None:
    assert function in EMITTERS
    if function is torch.cat:
        tensors, kwargs = ([torch.empty(2, 3, 4, device="meta"), torch.empty(2, 5, 4, device="meta")],), {"dim": 1}
    else:
        tensors = tuple(torch.empty(shape, device="meta") for shape in shapes)
    expected = function(*tensors, **kwargs).shape

    class Call(nn.Module):
        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return function(*inputs, **kwargs)

    if function is torch.cat:
        class Call(nn.Module):  # noqa: F811 - torch.cat takes a list
            def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return torch.cat([a, b], dim=1)
        shapes = ((2, 3, 4), (2, 5, 4))
    assert trace_onnx(Call(), list(shapes)).output_shapes == (tuple(expected),)


def test_unknown_functions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="nni_capsnas.onnx_tracing"):
        trace_onnx(Stacked(), [(2, 3)])
    assert "no ONNX emitter" in caplog.text

"""The pre-training estimate gives the ONNX path's figures, for never-seen architectures of every space."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch import nn

from nni_capsnas.block_cost import BlockCostEstimator
from nni_capsnas.blocks import Block, BlockNetwork, check_blocks
from nni_capsnas.hardware_cost import SampleCostEstimator, network_cost
from nni_capsnas.metrics import ESTIMATOR_METRICS
from nni_capsnas.modules import CapsCell
from search_spaces import CapsNetSpace, CNNSpace, NASCapsSpace
from search_spaces.capsule_cell_space import FEATURE_OPS, CapsuleCellSpace, stem_and_feature, stem_block
from search_spaces.nascaps_space import CellSpec, cell_blocks
from tests.search_spaces._helpers import random_sample

#: Every space, at its default input, and NASCaps at MNIST's size.
SPACES = {
    "NASCapsSpace": lambda: NASCapsSpace(),
    "CNNSpace": lambda: CNNSpace(),
    "CapsNetSpace": lambda: CapsNetSpace(),
    "CapsuleCellSpace": lambda: CapsuleCellSpace(),
    "NASCapsSpace 28x28": lambda: NASCapsSpace(input_shape=(1, 28, 28)),
}
#: Random architectures compared per space (each needs an ONNX export, 1-5 s).
ARCHITECTURES = {"NASCapsSpace 28x28": 4}


def assert_same_figures(fast: dict[str, float], exported: dict[str, float]) -> None:
    """Equal MACs and parameters; energy, latency and memory equal up to the order of summation."""
    assert set(fast) == set(exported)
    assert (fast["macs"], fast["params"]) == (exported["macs"], exported["params"])
    for name in set(fast) - {"macs", "params"}:
        assert fast[name] == pytest.approx(exported[name], rel=1e-9), name


@pytest.mark.parametrize("space_name", list(SPACES))
def test_never_seen_architectures_cost_what_their_export_costs(space_name: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    space = SPACES[space_name]()
    accelerator = "systolic" if "28x28" in space_name else "capsacc"
    estimator = SampleCostEstimator(space, accelerator=accelerator)
    samples = [random_sample(space, seed) for seed in range(ARCHITECTURES.get(space_name, 8))]
    with caplog.at_level(logging.WARNING, logger="nni_capsnas"):
        fast = [estimator(sample) for sample in samples]
    assert not caplog.records  # no network fell back to an export
    assert estimator.blocks.whole_network_reads == 0  # every block boundary composed
    for sample, figures in zip(samples, fast):
        assert set(figures) == set(ESTIMATOR_METRICS)
        assert_same_figures(figures, network_cost(space.freeze(sample), space.input_shape, accelerator=accelerator))


def test_a_network_of_known_blocks_is_composed_without_tracing() -> None:
    space = CNNSpace()
    estimator = SampleCostEstimator(space)
    first = random_sample(space, 3, fc_layers=1)
    estimator(first)
    known = estimator.blocks.known_fragments
    other_head = {**first, "fc1_width": next(width for width in (32, 64, 128) if width != first["fc1_width"])}
    figures = estimator(other_head)
    assert estimator.blocks.known_fragments == known + 1  # the head only: the convolution blocks are reused
    assert_same_figures(figures, network_cost(space.freeze(other_head), space.input_shape))
    again = {**random_sample(space, 4), **{label: value for label, value in first.items() if label != "fc1_width"},
             "fc1_width": first["fc1_width"]}
    estimator.estimate(again)
    assert estimator.blocks.known_fragments == known + 1


def test_samples_of_one_network_are_estimated_once() -> None:
    space = NASCapsSpace()
    estimator = SampleCostEstimator(space)
    sample = random_sample(space, 0, family="capsnet")
    ignored = {**sample, "deepcaps_caps": next(value for value in (4, 8, 16) if value != sample["deepcaps_caps"])}
    assert space.plan_for(ignored) == space.plan_for(sample)
    assert estimator(sample) == estimator(ignored)
    assert estimator.networks_estimated == 1
    assert estimator.estimate(sample) == estimator(sample)  # composed afresh, same figures


def test_a_deepcaps_cell_read_as_three_blocks_is_the_cell() -> None:
    spec = CellSpec(caps=4, dim=8, kernel=3, stride=2, routing=True, size=(4, 4))
    whole = [Block.of(CapsCell, in_caps=8, in_dim=4, out_caps=4, out_dim=8, kernel_size=3, stride=2,
                      routing_skip=True, iterations=2)]
    estimator = BlockCostEstimator("systolic")
    assert_same_figures(estimator.figures(cell_blocks(0, 8, 4, spec, 2), (1, 8, 4, 7, 7)),
                        estimator.figures(whole, (1, 8, 4, 7, 7)))
    assert estimator.whole_network_reads == 0


def test_blocks_whose_boundary_is_not_clean_are_read_as_one() -> None:
    # a max pooling reads the stem's ReLU: the two element-wise layers merge, so the boundary is not clean
    split = [Block.of(stem_block, in_channels=1, channels=8, stride=1),
             Block.of(lambda: FEATURE_OPS["max_pool3x3"](8))]
    joined = [Block.of(stem_and_feature, in_channels=1, channels=8, stride=1, feature_op="max_pool3x3")]
    estimator = BlockCostEstimator()
    assert_same_figures(estimator.figures(split, (1, 1, 8, 8)), estimator.figures(joined, (1, 1, 8, 8)))
    assert estimator.whole_network_reads == 1


class _Space:
    """A model space in the only sense the estimator needs: ``freeze(sample)`` and ``input_shape``."""

    input_shape = (4,)

    def __init__(self, network: type[nn.Module]) -> None:
        self.network = network

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        return self.network(sample["width"])


class _Traceable(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Untraceable(_Traceable):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.layers(x), self.layers(x)]).sum(dim=0)


def test_spaces_without_blocks_are_traced_as_one_network(caplog: pytest.LogCaptureFixture) -> None:
    space = _Space(_Traceable)
    estimator = SampleCostEstimator(space)
    with caplog.at_level(logging.WARNING, logger="nni_capsnas"):
        figures = estimator({"width": 6})
    assert not caplog.records
    assert estimator.blocks.known_fragments == 1
    assert_same_figures(figures, network_cost(space.freeze({"width": 6}), space.input_shape))


def test_networks_the_trace_cannot_write_are_exported(caplog: pytest.LogCaptureFixture) -> None:
    space = _Space(_Untraceable)
    estimator = SampleCostEstimator(space)
    with caplog.at_level(logging.WARNING, logger="nni_capsnas"):
        figures = [estimator({"width": width}) for width in (3, 5)]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stack" in warnings[0].getMessage()  # once per cause
    for width, result in zip((3, 5), figures):
        assert_same_figures(result, network_cost(space.freeze({"width": width}), space.input_shape))


def test_block_descriptions_are_checked() -> None:
    with pytest.raises(ValueError, match="hashable"):
        Block.of(nn.Linear, in_features=[4], out_features=2)
    with pytest.raises(ValueError, match="at least one block"):
        check_blocks([])
    with pytest.raises(ValueError, match="block 1 .* must read earlier blocks"):
        check_blocks([Block.of(nn.ReLU), Block.of(nn.ReLU, inputs=(1,))])
    with pytest.raises(ValueError, match="one tensor"):
        BlockCostEstimator().figures([Block.of(_Pair)], (1, 4))


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.relu(), x.sigmoid()


def test_the_blocks_network_runs_as_the_space_s_network() -> None:
    space = NASCapsSpace()
    sample = random_sample(space, 5, family="deepcaps", deepcaps_skip=1)
    torch.manual_seed(0)
    network = space.freeze(sample).eval()
    described = BlockNetwork(space.cost_blocks(sample)).eval()
    assert sum(p.numel() for p in described.parameters()) == sum(p.numel() for p in network.parameters()
                                                                  if not _in_decoder(network, p))
    x = torch.rand(2, *space.input_shape)
    assert described(x).shape == network(x).shape


def _in_decoder(network: nn.Module, parameter: torch.Tensor) -> bool:
    decoder = getattr(network, "decoder", None)
    return decoder is not None and any(parameter is own for own in decoder.parameters())

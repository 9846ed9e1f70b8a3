"""CapsuleCellSpace: searched conv/capsule operations and capsule sizes; DartsCellSpace input adapter."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer
from nni.nas.strategy import DARTS, RandomOneShot

from nni_capsnas.modules import ClassCaps, ConvCaps2d, ConvCaps3d, MixedCapsOperation, PrimaryCaps
from search_spaces.capsule_cell_space import CAPSULE_OPS, FEATURE_OPS, CapsuleCellSpace
from search_spaces.darts_cell_space import DartsCellSpace

SMALL = dict(primary_caps=(2, 4), primary_dim=(4, 8), feature_ops=("conv3x3", "max_pool3x3", "skip"),
             class_dim=4)


def _every_sample(space: ModelSpace) -> list[dict[str, Any]]:
    mutables = space.simplify()
    return [dict(zip(mutables, values)) for values in itertools.product(*(m.values for m in mutables.values()))]


def test_labels_and_candidates() -> None:
    space = CapsuleCellSpace()
    assert {label: list(m.values) for label, m in space.simplify().items()} == {
        "feature_op": list(FEATURE_OPS), "primary_caps": [4, 8], "primary_dim": [4, 8],
        "capsule_op": list(CAPSULE_OPS), "routing_iterations": [1, 3]}
    assert space.input_shape == (1, 8, 8)


def test_every_sample_freezes_to_a_capsule_network_of_that_sample() -> None:
    space = CapsuleCellSpace(**SMALL)
    images = torch.rand(2, 1, 8, 8)
    samples = _every_sample(space)
    assert len(samples) == 3 * 2 * 2 * 3 * 2
    for sample in samples:
        model = space.freeze(sample)
        assert model(images).shape == (2, 10, 4)
        primary = model.primary
        assert isinstance(primary, PrimaryCaps)
        assert (primary.out_caps, primary.caps_dim) == (sample["primary_caps"], sample["primary_dim"])
        assert isinstance(model.class_caps, ClassCaps)
        assert model.class_caps.iterations == sample["routing_iterations"]
        assert model.class_caps.in_caps == sample["primary_caps"] * 4 * 4  # 8x8 -> stride 2 -> 4x4 grid
        capsule = {"conv_caps": ConvCaps2d, "conv_caps3d": ConvCaps3d, "skip": torch.nn.Identity}
        assert type(model.capsule) is capsule[sample["capsule_op"]]
        if sample["capsule_op"] != "skip":
            assert (model.capsule.in_caps, model.capsule.in_dim) == (sample["primary_caps"], sample["primary_dim"])


def test_mnist_sized_inputs_and_strides() -> None:
    space = CapsuleCellSpace(input_shape=(1, 28, 28), stem_stride=2, **SMALL)
    model = space.freeze({label: m.values[-1] for label, m in space.simplify().items()})
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10, 4)
    assert model.class_caps.in_caps == 4 * 7 * 7


def test_darts_turns_choices_into_weight_sharing_mixed_operations() -> None:
    strategy = DARTS()
    supernet = strategy.mutate_model(CapsuleCellSpace(**SMALL))
    assert isinstance(supernet.feature, DifferentiableMixedLayer)
    assert isinstance(supernet.capsule, DifferentiableMixedLayer)
    assert isinstance(supernet.primary, MixedCapsOperation) and isinstance(supernet.class_caps, MixedCapsOperation)
    assert isinstance(supernet.capsule["conv_caps"], MixedCapsOperation)
    output = supernet(torch.rand(3, 1, 8, 8))
    assert output.shape == (3, 10, 4)
    output.norm().backward()
    alphas = {name: p for name, p in supernet.named_parameters() if "_arch_alpha" in name}
    assert {name.rpartition(".")[2] for name in alphas} >= {"primary_caps", "primary_dim", "routing_iterations"}
    for name, alpha in alphas.items():
        assert alpha.grad is not None and bool(alpha.grad.abs().sum() > 0), name


def test_path_sampling_supernet_runs_sampled_architectures() -> None:
    supernet = RandomOneShot().mutate_model(CapsuleCellSpace(**SMALL))
    for seed in range(4):
        torch.manual_seed(seed)
        memo: dict[str, Any] = {}
        for module in supernet.modules():
            if isinstance(module, BaseSuperNetModule):
                memo.update(module.resample(memo=memo))
        assert set(memo) == set(CapsuleCellSpace(**SMALL).simplify())
        assert supernet(torch.rand(2, 1, 8, 8)).shape[:2] == (2, 10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(feature_ops=("conv7x7",)), "feature_ops must be distinct names"),
    (dict(capsule_ops=()), "capsule_ops must be distinct names"),
    (dict(primary_caps=(4, 4)), "primary_caps needs distinct candidate values"),
    (dict(primary_dim=(0, 4)), "primary_dim"),
    (dict(input_shape=(1, 8)), "input_shape must be"),
    (dict(stem_stride=0), "stem_stride"),
])
def test_invalid_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CapsuleCellSpace(**kwargs)


# --- NNI's DARTS cell space with an input adapter --------------------------------------------


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (2, 8, 8)])
def test_darts_cell_space_adapts_the_input(shape: tuple[int, int, int]) -> None:
    space = DartsCellSpace(input_shape=shape, width=2, num_cells=3)
    assert len(space.simplify()) == 32
    sample: dict[str, Any] = {}
    space.random(memo=sample, random_state=np.random.RandomState(0))
    model = space.freeze(sample)
    assert model(torch.rand(2, *shape)).shape == (2, 10)


def test_darts_cell_space_refuses_what_the_hub_space_cannot_do() -> None:
    with pytest.raises(ValueError, match="num_classes must be 10"):
        DartsCellSpace(num_classes=5)
    with pytest.raises(ValueError, match="at least 4x4"):
        DartsCellSpace(input_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="num_cells must be at least 3"):
        DartsCellSpace(num_cells=2)


@pytest.mark.parametrize("name", list(FEATURE_OPS))
def test_every_feature_op_keeps_the_feature_map_shape(name: str) -> None:
    operation = FEATURE_OPS[name](6)
    features = torch.rand(2, 6, 7, 7)
    assert operation(features).shape == features.shape


def test_pooling_ops_are_parameter_free_windows_of_their_size() -> None:
    features = torch.zeros(1, 1, 9, 9)
    features[0, 0, 4, 4] = 1.0  # one bright pixel in the middle
    for name, window in [("max_pool3x3", 3), ("max_pool5x5", 5), ("max_pool7x7", 7)]:
        operation = FEATURE_OPS[name](1)
        assert sum(p.numel() for p in operation.parameters()) == 0
        # max pooling spreads the pixel over exactly a window-sized square around it
        assert operation(features).sum().item() == window * window, name
    # average pooling ignores the padding: a constant map stays constant, borders included
    constant = torch.full((1, 1, 5, 5), 0.5)
    assert torch.equal(FEATURE_OPS["avg_pool3x3"](1)(constant), constant)

"""NASCapsSpace: every sample is a valid network, labels are categorical, sampling is seeded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nni.mutable import Categorical, SampleValidationError
from nni.nas.space import ModelStatus
from nni.nas.strategy import TPE, RegularizedEvolution, Random

from nni_capsnas.modules import CapsCell, ConvCaps3d
from search_spaces.nascaps_space import NASCapsPlan, NASCapsSpace
from trials.losses import ClassificationLoss

from ._helpers import (
    assert_onnx_matches_torch, assert_round_trips_through_serialization, assert_sampling_is_seeded, random_sample,
    run_nni_strategy,
)

# The NASCaps ranges of depths, kernels and strides, with narrow layers to stay fast on CPU.
SMALL: dict[str, Any] = dict(conv_channels=(4, 8), caps_counts=(2, 4), caps_dims=(2, 4), caps_kernels=(3, 5),
                             deepcaps_caps=(2, 4), deepcaps_dims=(2, 4), class_dim=4, decoder_hidden=(16,))
SHAPES = [((1, 8, 8), 10), ((1, 28, 28), 7)]


def _space(input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 10, **kwargs: Any) -> NASCapsSpace:
    return NASCapsSpace(input_shape=input_shape, num_classes=num_classes, **{**SMALL, **kwargs})


def _assert_geometry(plan: NASCapsPlan, input_shape: tuple[int, ...], min_size: int) -> None:
    """Kernels never exceed their input map; strides never shrink a map below ``min_size``."""
    height, width = input_shape[1] * plan.input_resize, input_shape[2] * plan.input_resize
    for layer in (*plan.convs, *plan.caps, *plan.cells):
        assert layer.kernel % 2 == 1 and layer.kernel <= min(height, width)
        expected = ((height - 1) // layer.stride + 1, (width - 1) // layer.stride + 1)
        assert layer.size == expected
        if layer.stride > 1:
            assert min(expected) >= min_size
        height, width = layer.size


@pytest.mark.parametrize("input_shape, num_classes", SHAPES)
def test_random_samples_run_forward_with_class_capsules(input_shape: tuple[int, ...], num_classes: int) -> None:
    space = _space(input_shape, num_classes)
    state = np.random.RandomState(0)
    families = set()
    for _ in range(30):
        sample: dict[str, Any] = {}
        model = space.random(memo=sample, random_state=state)
        assert set(sample) == set(space.simplify())
        assert model.plan == space.plan_for(sample)
        _assert_geometry(model.plan, input_shape, space.options.min_map_size)
        with torch.no_grad():
            out = model.eval()(torch.rand(2, *input_shape))
        assert out.shape == (2, num_classes, 4)
        assert torch.isfinite(out).all()
        families.add(model.plan.family)
    assert families == {"capsnet", "deepcaps"}


def test_every_label_is_categorical_and_documented() -> None:
    space = _space(conv_depths=(3, 4), caps_layers=(2, 3), deepcaps_cells=(4, 5))
    labels = space.simplify()
    assert all(isinstance(mutable, Categorical) for mutable in labels.values())
    expected = {"family", "input_resize", "conv_depth", "caps_layers", "deepcaps_cells", "deepcaps_caps",
                "deepcaps_dim", "deepcaps_skip", "routing_iterations"}
    expected |= {f"conv{i}_{gene}" for i in range(1, 5) for gene in ("channels", "kernel", "stride")}
    expected |= {f"caps{j}_{gene}" for j in range(1, 3) for gene in ("count", "dim", "kernel", "stride")}
    expected |= {f"cell{k}_stride" for k in range(1, 6)}
    assert set(labels) == expected
    assert labels["deepcaps_skip"].values == [0, 1, 2, 3]
    assert labels["routing_iterations"].values == [1, 2, 3]


def test_default_space_keeps_labels_modest_and_has_input_shape() -> None:
    space = NASCapsSpace()
    assert space.input_shape == (1, 8, 8)
    assert len(space.simplify()) == 55
    assert all(isinstance(mutable, Categorical) for mutable in space.simplify().values())


def test_single_family_space_has_only_its_labels() -> None:
    capsnet = _space(families=("capsnet",)).simplify()
    deepcaps = _space(families=("deepcaps",)).simplify()
    assert not any(label.startswith(("deepcaps", "cell")) for label in capsnet)
    assert not any(label.startswith("caps") for label in deepcaps)
    assert capsnet["family"].values == ["capsnet"]


def test_sampling_is_seeded() -> None:
    assert_sampling_is_seeded(_space())


def test_deepcaps_sample_routes_in_its_last_cell_only() -> None:
    space = _space()
    model = space.freeze(random_sample(space, 1, family="deepcaps", deepcaps_cells=5, deepcaps_skip=2))
    cells = [m for m in model.modules() if isinstance(m, CapsCell)]
    assert len(cells) == 5
    assert isinstance(cells[-1].skip, ConvCaps3d)
    assert not any(isinstance(cell.skip, ConvCaps3d) for cell in cells[:-1])
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10, 4)


def test_capsnet_sample_has_no_caps_cell() -> None:
    space = _space()
    model = space.freeze(random_sample(space, 1, family="capsnet", caps_layers=4))
    assert not any(isinstance(m, (CapsCell, ConvCaps3d)) for m in model.modules())
    assert len(model.plan.caps) == 3  # primary + 2 convolutional capsule layers (+ class capsules)


@pytest.mark.parametrize("family", ["capsnet", "deepcaps"])
def test_gradients_reach_every_parameter(family: str) -> None:
    space = _space()
    model = space.freeze(random_sample(space, 2, family=family, input_resize=2, deepcaps_skip=1)).train()
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = ClassificationLoss(reconstruction_weight=0.5)(model(images), labels, images, model.decoder)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_genes_of_unused_layers_do_not_change_the_network() -> None:
    space = _space()
    sample = random_sample(space, 3, family="capsnet", conv_depth=3, caps_layers=2)
    other = {**sample, "conv6_channels": 4 if sample["conv6_channels"] == 8 else 8, "deepcaps_cells": 8}
    assert space.plan_for(sample) == space.plan_for(other)


def test_strides_are_clamped_on_small_maps() -> None:
    space = _space(input_shape=(1, 4, 4))
    sample = random_sample(space, 4, family="capsnet", input_resize=1, conv_depth=3, conv1_stride=2, conv2_stride=2,
                     conv1_kernel=9)
    plan = space.plan_for(sample)
    assert [conv.stride for conv in plan.convs[:2]] == [1, 1]
    assert plan.convs[0].kernel == 3
    assert space.freeze(sample)(torch.rand(1, 1, 4, 4)).shape == (1, 10, 4)


def test_freeze_rejects_incompleterandom_sample() -> None:
    space = _space()
    sample = random_sample(space, 0)
    del sample["conv_depth"]
    with pytest.raises(SampleValidationError):
        space.freeze(sample)


def test_nni_simplified_format_round_trips_through_serialization() -> None:
    assert_round_trips_through_serialization(_space(), (2, 10, 4))


@pytest.mark.parametrize("kwargs, argument", [
    (dict(input_shape=(8, 8)), "input_shape"),
    (dict(input_shape=(1, 0, 8)), "input_shape"),
    (dict(input_shape=(1, 8.5, 8)), "input_shape"),
    (dict(input_shape=None), "input_shape"),
    (dict(num_classes=0), "num_classes"),
    (dict(class_dim=0), "class_dim"),
    (dict(families=()), "families"),
    (dict(families=("resnet",)), "families"),
    (dict(input_resizes=(3,)), "input_resizes"),
    (dict(conv_depths=()), "conv_depths"),
    (dict(conv_depths=(0, 3)), "conv_depths"),
    (dict(conv_depths=(3, 3)), "conv_depths"),
    (dict(conv_kernels=(4,)), "conv_kernels"),
    (dict(conv_strides=(3,)), "conv_strides"),
    (dict(conv_channels=("8",)), "conv_channels"),
    (dict(conv_channels={4, 8}), "conv_channels"),
    (dict(caps_layers=(1, 2)), "caps_layers"),
    (dict(caps_counts=()), "caps_counts"),
    (dict(caps_kernels=(0,)), "caps_kernels"),
    (dict(deepcaps_cells=(9,)), "deepcaps_cells"),
    (dict(deepcaps_dims=(0,)), "deepcaps_dims"),
    (dict(deepcaps_strides=()), "deepcaps_strides"),
    (dict(routing_iterations=(0, 1)), "routing_iterations"),
    (dict(decoder_hidden=()), "decoder_hidden"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        _space(**kwargs)


@pytest.mark.parametrize("overrides", [
    dict(family="capsnet", input_resize=2, caps_layers=3),
    dict(family="deepcaps", input_resize=1, deepcaps_cells=4, deepcaps_skip=1),
])
def test_frozen_network_exports_to_onnx_and_matches_onnxruntime(overrides: dict[str, Any], tmp_path: Path) -> None:
    space = _space()
    model = space.freeze(random_sample(space, 6, **overrides)).eval()
    assert_onnx_matches_torch(model, space.input_shape, tmp_path)


@pytest.mark.parametrize("strategy", [Random(seed=0), RegularizedEvolution(population_size=2, sample_size=2, seed=0),
                                      TPE()], ids=["random", "evolution", "tpe"])
def test_nni_strategies_sample_and_evaluate_the_space(strategy: Any) -> None:
    models = run_nni_strategy(_space(), strategy, models=3)
    assert len(models) == 3
    assert all(model.status == ModelStatus.Trained for model in models)

"""CNNSpace: every sample is a valid network returning logits, labels are categorical, seeded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nni.mutable import Categorical
from nni.nas.space import ModelStatus
from nni.nas.strategy import RegularizedEvolution, Random
from torch import nn

from search_spaces.cnn_space import CNNPlan, CNNSpace

from ._helpers import (
    assert_onnx_matches_torch, assert_round_trips_through_serialization, assert_sampling_is_seeded, random_sample,
    run_nni_strategy,
)

SMALL: dict[str, Any] = dict(channels=(4, 8), fc_widths=(8, 16))
SHAPES = [((1, 8, 8), 10), ((1, 28, 28), 7)]


def _space(input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 10, **kwargs: Any) -> CNNSpace:
    return CNNSpace(input_shape=input_shape, num_classes=num_classes, **{**SMALL, **kwargs})


def _assert_geometry(plan: CNNPlan, input_shape: tuple[int, ...], min_size: int) -> None:
    """Kernels never exceed their input map; strides and pools never shrink it below ``min_size``."""
    height, width = input_shape[1:]
    for block in plan.blocks:
        assert block.kernel % 2 == 1 and block.kernel <= min(height, width)
        height, width = (height - 1) // block.stride + 1, (width - 1) // block.stride + 1
        if block.pool != "none":
            height, width = height // 2, width // 2
        assert block.size == (height, width)
        if block.stride > 1 or block.pool != "none":
            assert min(height, width) >= min_size
    assert plan.features == plan.blocks[-1].channels * height * width


@pytest.mark.parametrize("input_shape, num_classes", SHAPES)
def test_random_samples_run_forward_with_logits(input_shape: tuple[int, ...], num_classes: int) -> None:
    space = _space(input_shape, num_classes)
    state = np.random.RandomState(0)
    pools = set()
    for _ in range(30):
        sample: dict[str, Any] = {}
        model = space.random(memo=sample, random_state=state)
        assert set(sample) == set(space.simplify())
        assert model.plan == space.plan_for(sample)
        assert model.decoder is None
        _assert_geometry(model.plan, input_shape, min(space.options.kernels))
        with torch.no_grad():
            out = model.eval()(torch.rand(2, *input_shape))
        assert out.shape == (2, num_classes)
        pools |= {block.pool for block in model.plan.blocks}
    assert pools == {"none", "max", "avg"}


def test_every_label_is_categorical_and_documented() -> None:
    space = _space(depths=(2, 3), fc_layers=(0, 1, 2))
    labels = space.simplify()
    assert all(isinstance(mutable, Categorical) for mutable in labels.values())
    expected = {"cnn_depth", "fc_layers", "fc1_width", "fc2_width"}
    expected |= {f"cnn{i}_{gene}" for i in range(1, 4) for gene in ("channels", "kernel", "stride", "pool")}
    assert set(labels) == expected
    assert labels["cnn1_pool"].values == ["none", "max", "avg"]


def test_default_space_keeps_labels_modest_and_has_input_shape() -> None:
    space = CNNSpace()
    assert space.input_shape == (1, 8, 8)
    assert space.decoder is None
    assert len(space.simplify()) == 24


def test_sampling_is_seeded() -> None:
    assert_sampling_is_seeded(_space())


def test_gradients_reach_every_parameter() -> None:
    space = _space()
    model = space.freeze(random_sample(space, 1, cnn_depth=3, cnn1_pool="max", cnn2_pool="avg", fc_layers=2)).train()
    loss = nn.functional.cross_entropy(model(torch.rand(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_head_has_the_sampled_hidden_layers() -> None:
    space = _space()
    for fc_layers in (0, 1, 2):
        model = space.freeze(random_sample(space, 2, fc_layers=fc_layers, fc1_width=8, fc2_width=16))
        widths = [layer.out_features for layer in model.head if isinstance(layer, nn.Linear)]
        assert widths == [8, 16][:fc_layers] + [10]


def test_strides_and_pools_are_dropped_on_small_maps() -> None:
    space = _space(input_shape=(1, 4, 4))
    sample = random_sample(space, 3, cnn_depth=2, cnn1_stride=2, cnn1_pool="max", cnn1_kernel=5)
    block = space.plan_for(sample).blocks[0]
    assert (block.kernel, block.stride, block.pool, block.size) == (3, 1, "none", (4, 4))
    assert space.freeze(sample)(torch.rand(1, 1, 4, 4)).shape == (1, 10)


def test_genes_of_unused_layers_do_not_change_the_network() -> None:
    space = _space()
    sample = random_sample(space, 4, cnn_depth=2, fc_layers=0)
    other = {**sample, "cnn5_channels": 4 if sample["cnn5_channels"] == 8 else 8, "fc2_width": 8}
    assert space.plan_for(sample) == space.plan_for(other)


def test_nni_simplified_format_round_trips_through_serialization() -> None:
    assert_round_trips_through_serialization(_space(), (2, 10))


@pytest.mark.parametrize("kwargs, argument", [
    (dict(input_shape=(1, 8)), "input_shape"),
    (dict(input_shape=(0, 8, 8)), "input_shape"),
    (dict(input_shape="1x8x8"), "input_shape"),
    (dict(num_classes=0), "num_classes"),
    (dict(depths=()), "depths"),
    (dict(depths=(0, 2)), "depths"),
    (dict(depths=(9,)), "depths"),
    (dict(channels=(0,)), "channels"),
    (dict(kernels=(2,)), "kernels"),
    (dict(strides=(1, 4)), "strides"),
    (dict(poolings=()), "poolings"),
    (dict(poolings=("max", "lp")), "poolings"),
    (dict(fc_layers=(-1,)), "fc_layers"),
    (dict(fc_widths=()), "fc_widths"),
    (dict(fc_widths=(16, 16)), "fc_widths"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        _space(**kwargs)


def test_frozen_network_exports_to_onnx_and_matches_onnxruntime(tmp_path: Path) -> None:
    space = _space()
    model = space.freeze(random_sample(space, 6, cnn_depth=3, cnn1_pool="max", cnn2_pool="avg", fc_layers=1)).eval()
    assert_onnx_matches_torch(model, space.input_shape, tmp_path)


@pytest.mark.parametrize("strategy", [Random(seed=0), RegularizedEvolution(population_size=2, sample_size=2, seed=0)],
                         ids=["random", "evolution"])
def test_nni_strategies_sample_and_evaluate_the_space(strategy: Any) -> None:
    models = run_nni_strategy(_space(), strategy, models=3)
    assert len(models) == 3
    assert all(model.status == ModelStatus.Trained for model in models)

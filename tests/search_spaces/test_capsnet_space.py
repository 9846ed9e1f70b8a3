"""CapsNetSpace: an NNI model space whose capsule layers have mutable arguments."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from nni.nas.nn.pytorch import ModelSpace

from nni_capsnas.modules import ClassCaps, PrimaryCaps
from search_spaces import CapsNetSpace
from trials.losses import ClassificationLoss

LABELS = {
    "stem_channels": [16, 32],
    "primary_caps": [4, 8],
    "primary_dim": [4, 8],
    "primary_kernel": [3, 5],
    "iterations": [1, 3],
}


def _every_sample(space: ModelSpace) -> list[dict[str, Any]]:
    mutables = space.simplify()
    return [dict(zip(mutables, values)) for values in itertools.product(*(m.values for m in mutables.values()))]


def test_space_labels_and_candidates() -> None:
    space = CapsNetSpace()
    assert {label: list(m.values) for label, m in space.simplify().items()} == LABELS


def test_every_sample_freezes_to_a_working_capsnet() -> None:
    space = CapsNetSpace()
    samples = _every_sample(space)
    assert len(samples) == 32
    images = torch.rand(2, 1, 8, 8)
    for sample in samples:
        model = space.freeze(sample)
        assert model.stem.out_channels == sample["stem_channels"]
        assert isinstance(model.primary, PrimaryCaps) and isinstance(model.class_caps, ClassCaps)
        assert (model.primary.in_channels, model.primary.out_caps, model.primary.caps_dim) == (
            sample["stem_channels"], sample["primary_caps"], sample["primary_dim"])
        assert model.primary.conv.kernel_size == (sample["primary_kernel"],) * 2
        assert model.primary.conv.padding == (sample["primary_kernel"] // 2,) * 2
        caps = model.class_caps
        assert (caps.in_caps, caps.in_dim, caps.iterations) == (
            sample["primary_caps"] * 64, sample["primary_dim"], sample["iterations"])
        assert model(images).shape == (2, 10, 16)


def test_primary_stride_shrinks_the_capsule_grid() -> None:
    space = CapsNetSpace(input_shape=(1, 9, 7), primary_stride=2, num_classes=4, class_dim=6)
    model = space.freeze({"stem_channels": 16, "primary_caps": 8, "primary_dim": 4, "primary_kernel": 5,
                          "iterations": 1})
    assert model.class_caps.in_caps == 8 * 5 * 4
    assert model(torch.rand(3, 1, 9, 7)).shape == (3, 4, 6)


def test_space_without_decoder() -> None:
    assert CapsNetSpace(decoder=False).decoder is None


def test_space_every_parameter_gets_gradient() -> None:
    space = CapsNetSpace()
    model = space.freeze({"stem_channels": 32, "primary_caps": 8, "primary_dim": 8, "primary_kernel": 5,
                          "iterations": 3})
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    ClassificationLoss()(model(images), labels, images, model.decoder).backward()
    names = [name for name, _ in model.named_parameters()]
    assert any(name.startswith("decoder.") for name in names)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert bool(parameter.grad.abs().sum() > 0), f"{name} got an all-zero gradient"


def test_unfrozen_space_runs_with_its_default_sample() -> None:
    space = CapsNetSpace()
    images, labels = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    output = space(images)
    assert output.shape == (2, 10, 16)
    ClassificationLoss()(output, labels, images, space.decoder).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in space.parameters())


@pytest.mark.parametrize("input_shape", [(8, 8), (1, 8, 8, 1), (1, 0, 8), (-1, 8, 8)])
def test_space_rejects_bad_input_shape(input_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"input_shape must be \(channels, height, width\) of positive sizes"):
        CapsNetSpace(input_shape=input_shape)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(num_classes=0), r"num_classes must be a positive integer, got 0"),
    (dict(class_dim=0), r"class_dim must be a positive integer, got 0"),
    (dict(primary_stride=0), r"primary_stride must be a positive integer, got 0"),
    (dict(stem_channels=()), r"stem_channels needs at least one candidate value, got \(\)"),
    (dict(primary_caps=[4, 0]), r"primary_caps must be a positive integer, got 0"),
    (dict(primary_dim=[-2]), r"primary_dim must be a positive integer, got -2"),
    (dict(iterations=[0, 3]), r"iterations must be a positive integer, got 0"),
    (dict(primary_kernel=[3, 4]), r"primary_kernel candidates must be odd .* got \(3, 4\)"),
    (dict(primary_kernel=[2]), r"primary_kernel candidates must be odd"),
])
def test_space_rejects_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        CapsNetSpace(**kwargs)


def test_space_provides_oneshot_hooks_for_its_capsule_layers() -> None:
    hooks = CapsNetSpace.extra_oneshot_hooks(None)
    owners = {getattr(hook, "__self__", None).__name__ for hook in hooks}
    assert {"MixedPrimaryCaps", "MixedClassCaps"} <= owners

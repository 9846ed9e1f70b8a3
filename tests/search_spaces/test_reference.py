"""The reference networks: Sabour et al.'s CapsNet and DeepCaps, built from the capsule modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nni_capsnas.modules import CapsCell, ClassCaps, ConvCaps3d, PrimaryCaps
from search_spaces import CapsNet, DeepCaps, capsnet, deepcaps
from trials.losses import ClassificationLoss


def _assert_every_parameter_gets_gradient(model: nn.Module, images: torch.Tensor) -> None:
    labels = torch.arange(len(images)) % 10
    loss = ClassificationLoss(reconstruction_weight=0.0005)(model(images), labels, images, model.decoder)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert bool(parameter.grad.abs().sum() > 0), f"{name} got an all-zero gradient"


def test_capsnet_has_sabours_architecture() -> None:
    model = capsnet()
    assert isinstance(model, CapsNet)
    assert (model.conv1.out_channels, model.conv1.kernel_size) == (256, (9, 9))
    assert isinstance(model.primary, PrimaryCaps)
    assert (model.primary.out_caps, model.primary.caps_dim) == (32, 8)
    assert (model.primary.conv.kernel_size, model.primary.conv.stride) == ((9, 9), (2, 2))
    caps = model.class_caps
    assert isinstance(caps, ClassCaps)
    assert (caps.in_caps, caps.in_dim, caps.out_caps, caps.out_dim, caps.iterations) == (32 * 6 * 6, 8, 10, 16, 3)
    widths = [layer.out_features for layer in model.decoder.net if isinstance(layer, nn.Linear)]
    assert widths == [512, 1024, 784]
    # 8.2 M parameters, as published: conv 20,992 + primary 5,308,672 + class 1,474,560 + decoder 1,411,344
    assert sum(p.numel() for p in model.parameters()) == 8_215_568


def test_capsnet_outputs_class_capsules_and_reconstructs_the_input() -> None:
    model = capsnet()
    images = torch.rand(2, 1, 28, 28)
    caps = model(images)
    assert caps.shape == (2, 10, 16)
    assert bool((caps.norm(dim=-1) < 1).all())
    assert model.decoder(caps).shape == (2, 1, 28, 28)


def test_capsnet_every_parameter_gets_gradient() -> None:
    _assert_every_parameter_gets_gradient(capsnet(), torch.rand(2, 1, 28, 28))


def test_capsnet_for_other_inputs_and_classes() -> None:
    model = capsnet((3, 32, 32), 5, decoder=False)
    assert model.decoder is None
    assert model.class_caps.in_caps == 32 * 8 * 8
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 5, 16)


def test_deepcaps_has_four_cells_with_routing_in_the_last_skip() -> None:
    model = deepcaps()
    assert isinstance(model, DeepCaps)
    cells = list(model.cells)
    assert len(cells) == 4 and all(isinstance(cell, CapsCell) for cell in cells)
    assert [(c.l1.out_caps, c.l1.out_dim) for c in cells] == [(32, 4), (32, 8), (32, 8), (32, 8)]
    assert [isinstance(c.skip, ConvCaps3d) for c in cells] == [False, False, False, True]
    # 28 -> 14 -> 7 -> 4 -> 2
    assert (model.class_caps.in_caps, model.class_caps.in_dim) == (32 * 2 * 2, 8)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10, 16)


def test_deepcaps_every_parameter_gets_gradient() -> None:
    _assert_every_parameter_gets_gradient(deepcaps(), torch.rand(2, 1, 28, 28))


def test_deepcaps_for_other_inputs_and_classes() -> None:
    model = deepcaps((3, 32, 32), 7, stem_channels=16, cell_caps=((4, 2), (4, 4)))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7, 16)
    assert model.decoder(torch.rand(2, 7, 16)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("builder", [capsnet, deepcaps])
@pytest.mark.parametrize("input_shape", [(28, 28), (1, 28, 28, 1), (0, 28, 28), (1, -1, 28), ()])
def test_reference_networks_reject_bad_input_shape(builder, input_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"input_shape must be \(channels, height, width\) of positive sizes"):
        builder(input_shape)


@pytest.mark.parametrize("builder", [capsnet, deepcaps])
def test_reference_networks_reject_non_positive_classes(builder) -> None:
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        builder((1, 28, 28), 0)


def test_capsnet_rejects_images_too_small_for_its_kernels() -> None:
    with pytest.raises(ValueError, match=r"kernel_size 9 .* does not fit an input of size 8"):
        capsnet((1, 8, 8))

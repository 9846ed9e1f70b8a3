"""Capsule layers: outputs against independent computations, gradients, and bad-input errors."""

from __future__ import annotations

from typing import Callable

import nni
import pytest
import torch
from torch import nn
from nni.nas.nn.pytorch import ModelSpace

from nni_capsnas.modules import (
    CapsCell, ClassCaps, ConvCaps2d, ConvCaps3d, FlattenCaps, MarginLoss, PrimaryCaps,
    ReconstructionDecoder, capsule_length, dynamic_routing, mask_capsules,
)


def _explicit_squash(s: torch.Tensor, dim: int) -> torch.Tensor:
    norm2 = (s * s).sum(dim=dim, keepdim=True)
    return s * norm2 / (1 + norm2) / torch.sqrt(norm2 + 1e-8)


def _assert_every_parameter_gets_gradient(module: nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    names = [name for name, _ in module.named_parameters()]
    assert names, "module has no parameters"
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert bool(parameter.grad.abs().sum() > 0), f"{name} got an all-zero gradient"


# --- PrimaryCaps -------------------------------------------------------------------------


def test_primary_caps_is_grouped_convolution_then_squash() -> None:
    layer = PrimaryCaps(in_channels=3, out_caps=4, caps_dim=5, kernel_size=3, stride=2, padding=1)
    x = torch.randn(2, 3, 9, 9)
    y = nn.functional.conv2d(x, layer.conv.weight, layer.conv.bias, stride=2, padding=1)
    expected = _explicit_squash(y.view(2, 4, 5, 5, 5), dim=2)
    out = layer(x)
    assert out.shape == (2, 4, 5, 5, 5)
    torch.testing.assert_close(out, expected)
    assert bool((out.norm(dim=2) < 1).all())


def test_primary_caps_every_parameter_gets_gradient() -> None:
    layer = PrimaryCaps(in_channels=2, out_caps=3, caps_dim=4, kernel_size=3)
    _assert_every_parameter_gets_gradient(layer, layer(torch.randn(2, 2, 6, 6)).sum())


class _ChoiceSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.primary = PrimaryCaps(in_channels=3, out_caps=nni.choice("caps", [2, 4]),
                                   caps_dim=nni.choice("dim", [3, 5]), kernel_size=3)
        self.class_caps = ClassCaps(in_caps=nni.choice("caps", [2, 4]) * 16, in_dim=nni.choice("dim", [3, 5]),
                                    out_caps=3, out_dim=4, iterations=nni.choice("iterations", [1, 2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_caps(FlattenCaps()(self.primary(x)))


def test_layers_accept_nni_choice_and_freeze_to_a_sample() -> None:
    space = _ChoiceSpace()
    assert set(space.simplify()) == {"caps", "dim", "iterations"}
    model = space.freeze({"caps": 4, "dim": 5, "iterations": 2})
    assert isinstance(model.primary, PrimaryCaps) and isinstance(model.class_caps, ClassCaps)
    assert (model.class_caps.in_caps, model.class_caps.in_dim, model.class_caps.iterations) == (64, 5, 2)
    assert model.primary(torch.randn(1, 3, 6, 6)).shape == (1, 4, 5, 4, 4)
    assert model(torch.randn(1, 3, 6, 6)).shape == (1, 3, 4)


@pytest.mark.parametrize("argument", ["in_channels", "out_caps", "caps_dim", "kernel_size", "stride"])
@pytest.mark.parametrize("value", [0, -2])
def test_primary_caps_rejects_non_positive_sizes(argument: str, value: int) -> None:
    kwargs = dict(in_channels=3, out_caps=2, caps_dim=4, kernel_size=3, stride=1)
    kwargs[argument] = value
    with pytest.raises(ValueError, match=rf"{argument} must be a positive integer, got {value}"):
        PrimaryCaps(**kwargs)


def test_primary_caps_rejects_negative_padding() -> None:
    with pytest.raises(ValueError, match="padding must be >= 0"):
        PrimaryCaps(in_channels=3, out_caps=2, caps_dim=4, kernel_size=3, padding=-1)


def test_primary_caps_rejects_wrong_rank_and_channels() -> None:
    layer = PrimaryCaps(in_channels=3, out_caps=2, caps_dim=4, kernel_size=3)
    with pytest.raises(ValueError, match=r"x must have 4 dimensions .*got shape \(3, 8, 8\)"):
        layer(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"x dimension 1 \(in_channels\) must be 3, got shape \(1, 2, 8, 8\)"):
        layer(torch.randn(1, 2, 8, 8))


# --- ClassCaps ---------------------------------------------------------------------------


def test_class_caps_votes_match_per_capsule_matrix_products() -> None:
    layer = ClassCaps(in_caps=5, in_dim=3, out_caps=4, out_dim=2, iterations=2).double()
    u = torch.randn(2, 5, 3, dtype=torch.float64)
    w = layer.weight.detach().view(5, 3, 4, 2)
    expected = torch.zeros(2, 5, 4, 2, dtype=torch.float64)
    for b in range(2):
        for i in range(5):
            for j in range(4):
                expected[b, i, j] = w[i, :, j, :].T @ u[b, i]  # W_ij u_i
    torch.testing.assert_close(layer.votes(u), expected, rtol=1e-12, atol=1e-12)


def test_class_caps_routes_its_votes() -> None:
    layer = ClassCaps(in_caps=6, in_dim=4, out_caps=3, out_dim=5, iterations=3)
    u = torch.randn(2, 6, 4)
    out = layer(u)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out, dynamic_routing(layer.votes(u), 3))
    assert not torch.allclose(out, dynamic_routing(layer.votes(u), 1))


def test_class_caps_every_parameter_gets_gradient() -> None:
    layer = ClassCaps(in_caps=6, in_dim=4, out_caps=3, out_dim=5)
    _assert_every_parameter_gets_gradient(layer, layer(torch.randn(2, 6, 4)).norm(dim=-1).sum())


@pytest.mark.parametrize("argument", ["in_caps", "in_dim", "out_caps", "out_dim", "iterations"])
def test_class_caps_rejects_non_positive_sizes(argument: str) -> None:
    kwargs = dict(in_caps=6, in_dim=4, out_caps=3, out_dim=5, iterations=3)
    kwargs[argument] = 0
    with pytest.raises(ValueError, match=rf"{argument} must be a positive integer, got 0"):
        ClassCaps(**kwargs)


@pytest.mark.parametrize("shape, pattern", [
    ((6, 4), r"u must have 3 dimensions \(batch, in_caps, in_dim\), got shape \(6, 4\)"),
    ((2, 6, 4, 1), r"u must have 3 dimensions"),
    ((2, 5, 4), r"u dimension 1 \(in_caps\) must be 6, got shape \(2, 5, 4\)"),
    ((2, 6, 8), r"u dimension 2 \(in_dim\) must be 4, got shape \(2, 6, 8\)"),
])
def test_class_caps_rejects_wrong_input_shape(shape: tuple[int, ...], pattern: str) -> None:
    layer = ClassCaps(in_caps=6, in_dim=4, out_caps=3, out_dim=5)
    with pytest.raises(ValueError, match=pattern):
        layer(torch.randn(*shape))


def test_class_caps_rejects_non_tensor_input() -> None:
    with pytest.raises(ValueError, match="u must be a torch.Tensor"):
        ClassCaps(in_caps=2, in_dim=2, out_caps=2, out_dim=2)([[1.0, 2.0]])  # type: ignore[arg-type]


# --- ConvCaps2d --------------------------------------------------------------------------


def test_conv_caps2d_is_convolution_over_flattened_capsules_then_squash() -> None:
    layer = ConvCaps2d(in_caps=3, in_dim=2, out_caps=4, out_dim=5, kernel_size=3, stride=2)
    x = torch.randn(2, 3, 2, 7, 7)
    y = nn.functional.conv2d(x.reshape(2, 6, 7, 7), layer.conv.weight, layer.conv.bias, stride=2, padding=1)
    out = layer(x)
    assert out.shape == (2, 4, 5, 4, 4)
    torch.testing.assert_close(out, _explicit_squash(y.view(2, 4, 5, 4, 4), dim=2))


def test_conv_caps2d_same_padding_keeps_grid_size() -> None:
    layer = ConvCaps2d(in_caps=2, in_dim=3, out_caps=2, out_dim=3, kernel_size=5)
    assert layer(torch.randn(1, 2, 3, 6, 6)).shape == (1, 2, 3, 6, 6)


def test_conv_caps2d_every_parameter_gets_gradient() -> None:
    layer = ConvCaps2d(in_caps=2, in_dim=3, out_caps=2, out_dim=3)
    _assert_every_parameter_gets_gradient(layer, layer(torch.randn(2, 2, 3, 5, 5)).sum())


@pytest.mark.parametrize("argument", ["in_caps", "in_dim", "out_caps", "out_dim", "kernel_size", "stride"])
def test_conv_caps2d_rejects_non_positive_sizes(argument: str) -> None:
    kwargs = dict(in_caps=2, in_dim=3, out_caps=2, out_dim=3, kernel_size=3, stride=1)
    kwargs[argument] = -1
    with pytest.raises(ValueError, match=rf"{argument} must be a positive integer, got -1"):
        ConvCaps2d(**kwargs)


@pytest.mark.parametrize("layer_type", [ConvCaps2d, ConvCaps3d])
@pytest.mark.parametrize("shape, pattern", [
    ((2, 3, 5, 5), r"x must have 5 dimensions \(batch, in_caps, in_dim, height, width\), got shape \(2, 3, 5, 5\)"),
    ((1, 3, 2, 3, 5, 5), r"x must have 5 dimensions"),
    ((1, 4, 3, 5, 5), r"x dimension 1 \(in_caps\) must be 2, got shape \(1, 4, 3, 5, 5\)"),
    ((1, 2, 4, 5, 5), r"x dimension 2 \(in_dim\) must be 3, got shape \(1, 2, 4, 5, 5\)"),
])
def test_conv_caps_reject_wrong_input_shape(layer_type: type, shape: tuple[int, ...], pattern: str) -> None:
    layer = layer_type(in_caps=2, in_dim=3, out_caps=2, out_dim=3)
    with pytest.raises(ValueError, match=pattern):
        layer(torch.randn(*shape))


# --- ConvCaps3d --------------------------------------------------------------------------


def test_conv_caps3d_votes_match_loop_reference() -> None:
    in_caps, in_dim, out_caps, out_dim, size, k = 2, 3, 2, 2, 4, 3
    layer = ConvCaps3d(in_caps=in_caps, in_dim=in_dim, out_caps=out_caps, out_dim=out_dim, kernel_size=k).double()
    x = torch.randn(1, in_caps, in_dim, size, size, dtype=torch.float64)
    padded = nn.functional.pad(x, [1, 1, 1, 1])
    weight = layer.conv.weight.detach()[:, 0]  # (out_caps*out_dim, in_dim, k, k)
    bias = layer.conv.bias.detach()
    expected = torch.zeros(1, in_caps, out_caps, out_dim, size, size, dtype=torch.float64)
    for i in range(in_caps):
        for j in range(out_caps):
            for d in range(out_dim):
                channel = j * out_dim + d
                for h in range(size):
                    for w in range(size):
                        window = padded[0, i, :, h:h + k, w:w + k]
                        expected[0, i, j, d, h, w] = (weight[channel] * window).sum() + bias[channel]
    torch.testing.assert_close(layer.votes(x), expected, rtol=1e-12, atol=1e-12)


def test_conv_caps3d_routes_independently_at_each_position() -> None:
    layer = ConvCaps3d(in_caps=3, in_dim=2, out_caps=2, out_dim=4, iterations=2).double()
    x = torch.randn(2, 3, 2, 3, 4, dtype=torch.float64)
    u_hat = layer.votes(x)  # (batch, in_caps, out_caps, out_dim, H, W)
    out = layer(x)
    assert out.shape == (2, 2, 4, 3, 4)
    for h in range(3):
        for w in range(4):
            torch.testing.assert_close(out[..., h, w], dynamic_routing(u_hat[..., h, w], 2),
                                       rtol=1e-12, atol=1e-12)


def test_conv_caps3d_every_parameter_gets_gradient() -> None:
    layer = ConvCaps3d(in_caps=3, in_dim=2, out_caps=2, out_dim=4)
    _assert_every_parameter_gets_gradient(layer, layer(torch.randn(2, 3, 2, 4, 4)).norm(dim=2).sum())


@pytest.mark.parametrize("argument", ["in_caps", "in_dim", "out_caps", "out_dim", "kernel_size", "iterations"])
def test_conv_caps3d_rejects_non_positive_sizes(argument: str) -> None:
    kwargs = dict(in_caps=2, in_dim=3, out_caps=2, out_dim=3, kernel_size=3, iterations=3)
    kwargs[argument] = 0
    with pytest.raises(ValueError, match=rf"{argument} must be a positive integer, got 0"):
        ConvCaps3d(**kwargs)


# --- FlattenCaps -------------------------------------------------------------------------


def test_flatten_caps_puts_capsule_type_outermost() -> None:
    x = torch.randn(2, 3, 4, 5, 6)
    out = FlattenCaps()(x)
    assert out.shape == (2, 3 * 5 * 6, 4)
    for c in range(3):
        for h in range(5):
            for w in range(6):
                torch.testing.assert_close(out[:, c * 30 + h * 6 + w], x[:, c, :, h, w], rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 4, 5, 6, 7)])
def test_flatten_caps_rejects_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"x must have 5 dimensions \(batch, caps, dim, height, width\)"):
        FlattenCaps()(torch.randn(*shape))


# --- CapsCell ----------------------------------------------------------------------------


@pytest.mark.parametrize("routing_skip, skip_type", [(False, ConvCaps2d), (True, ConvCaps3d)])
def test_caps_cell_adds_skip_branch_to_the_stacked_convolutions(routing_skip: bool, skip_type: type) -> None:
    cell = CapsCell(in_caps=3, in_dim=2, out_caps=4, out_dim=3, stride=2, routing_skip=routing_skip, iterations=2)
    assert type(cell.skip) is skip_type
    x = torch.randn(2, 3, 2, 8, 8)
    x1 = cell.l1(x)
    out = cell(x)
    assert out.shape == (2, 4, 3, 4, 4)
    torch.testing.assert_close(out, cell.l3(cell.l2(x1)) + cell.skip(x1))


@pytest.mark.parametrize("routing_skip", [False, True])
def test_caps_cell_every_parameter_gets_gradient(routing_skip: bool) -> None:
    cell = CapsCell(in_caps=3, in_dim=2, out_caps=4, out_dim=3, routing_skip=routing_skip)
    _assert_every_parameter_gets_gradient(cell, cell(torch.randn(2, 3, 2, 6, 6)).norm(dim=2).sum())


@pytest.mark.parametrize("argument", ["in_caps", "in_dim", "out_caps", "out_dim", "kernel_size", "stride",
                                      "iterations"])
def test_caps_cell_rejects_non_positive_sizes(argument: str) -> None:
    kwargs = dict(in_caps=2, in_dim=3, out_caps=2, out_dim=3, kernel_size=3, stride=2, routing_skip=True,
                  iterations=3)
    kwargs[argument] = 0
    with pytest.raises(ValueError, match=rf"{argument} must be a positive integer, got 0"):
        CapsCell(**kwargs)


def test_caps_cell_rejects_wrong_input_shape() -> None:
    cell = CapsCell(in_caps=2, in_dim=3, out_caps=2, out_dim=3)
    with pytest.raises(ValueError, match=r"x dimension 2 \(in_dim\) must be 3"):
        cell(torch.randn(1, 2, 1, 6, 6))


# --- MarginLoss --------------------------------------------------------------------------


def test_margin_loss_matches_hand_computed_value() -> None:
    lengths = torch.tensor([[0.95, 0.05, 0.5], [0.2, 0.3, 0.1]])
    labels = torch.tensor([0, 2])
    # sample 0: present 0.95 >= 0.9 -> 0; absent 0.05 -> 0, 0.5 -> 0.5 * 0.4^2 = 0.08
    # sample 1: present 0.1 -> 0.8^2 = 0.64; absent 0.2 -> 0.5 * 0.01, 0.3 -> 0.5 * 0.04
    expected = (0.08 + 0.64 + 0.005 + 0.02) / 2
    assert float(MarginLoss()(lengths, labels)) == pytest.approx(expected, rel=1e-6)


def test_margin_loss_is_zero_for_confident_correct_predictions() -> None:
    lengths = torch.tensor([[0.95, 0.0], [0.05, 1.0]])
    assert float(MarginLoss()(lengths, torch.tensor([0, 1]))) == 0.0


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2]), torch.tensor([[0], [1]]), torch.tensor(0)])
def test_margin_loss_rejects_wrong_labels_shape(labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        MarginLoss()(torch.rand(2, 3), labels)


def test_margin_loss_rejects_wrong_lengths_rank() -> None:
    with pytest.raises(ValueError, match=r"lengths must have 2 dimensions \(batch, classes\)"):
        MarginLoss()(torch.rand(2, 3, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("m_plus, m_minus", [(0.1, 0.9), (0.5, 0.5), (1.5, 0.1), (0.9, -0.1)])
def test_margin_loss_rejects_bad_margins(m_plus: float, m_minus: float) -> None:
    with pytest.raises(ValueError, match=r"m_minus < m_plus"):
        MarginLoss(m_plus=m_plus, m_minus=m_minus)


# --- decoder, capsule length, masking ----------------------------------------------------


def test_decoder_reconstructs_image_shape_in_unit_range() -> None:
    decoder = ReconstructionDecoder(num_caps=4, caps_dim=3, output_shape=(2, 5, 6), hidden=(8, 16))
    out = decoder(torch.randn(7, 4, 3))
    assert out.shape == (7, 2, 5, 6)
    assert bool(((out >= 0) & (out <= 1)).all())


def test_decoder_every_parameter_gets_gradient() -> None:
    decoder = ReconstructionDecoder(num_caps=4, caps_dim=3, output_shape=(1, 4, 4), hidden=(8,))
    target = torch.rand(3, 1, 4, 4)
    _assert_every_parameter_gets_gradient(decoder, ((decoder(torch.randn(3, 4, 3)) - target) ** 2).sum())


def test_decoder_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_caps must be a positive integer"):
        ReconstructionDecoder(num_caps=0, caps_dim=3, output_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="caps_dim must be a positive integer"):
        ReconstructionDecoder(num_caps=2, caps_dim=-3, output_shape=(1, 4, 4))
    decoder = ReconstructionDecoder(num_caps=2, caps_dim=3, output_shape=(1, 4, 4), hidden=(4,))
    with pytest.raises(ValueError, match=r"masked_caps must have 3 dimensions"):
        decoder(torch.randn(2, 6))


def test_capsule_length_is_the_euclidean_norm_with_finite_gradient_at_zero() -> None:
    v = torch.randn(3, 4, 5)
    v[0, 0] = 0
    v.requires_grad_(True)
    lengths = capsule_length(v)
    torch.testing.assert_close(lengths, v.detach().norm(dim=-1), rtol=1e-5, atol=1e-5)
    lengths.sum().backward()
    assert bool(torch.isfinite(v.grad).all())
    with pytest.raises(ValueError, match=r"v must have 3 dimensions"):
        capsule_length(torch.randn(3, 4))


def test_mask_capsules_keeps_only_the_labelled_capsule() -> None:
    v = torch.randn(3, 4, 2)
    masked = mask_capsules(v, torch.tensor([2, 0, 3]))
    for b, keep in enumerate([2, 0, 3]):
        for j in range(4):
            expected = v[b, j] if j == keep else torch.zeros(2)
            torch.testing.assert_close(masked[b, j], expected, rtol=0, atol=0)


def test_mask_capsules_without_labels_keeps_the_longest() -> None:
    v = torch.zeros(2, 3, 2)
    v[0, 1] = torch.tensor([0.5, 0.5])
    v[0, 2] = torch.tensor([0.1, 0.0])
    v[1, 0] = torch.tensor([0.0, 0.2])
    v[1, 2] = torch.tensor([0.0, -0.9])
    masked = mask_capsules(v)
    expected = torch.zeros_like(v)
    expected[0, 1], expected[1, 2] = v[0, 1], v[1, 2]
    torch.testing.assert_close(masked, expected, rtol=0, atol=0)


@pytest.mark.parametrize("labels", [torch.tensor([0, 1]), torch.tensor([[0], [1], [2]])])
def test_mask_capsules_rejects_wrong_labels_shape(labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        mask_capsules(torch.randn(3, 4, 2), labels)


def test_mask_capsules_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"v must have 3 dimensions"):
        mask_capsules(torch.randn(3, 4))


@pytest.mark.parametrize("factory", [
    lambda: PrimaryCaps(in_channels=1, out_caps=2, caps_dim=2, kernel_size=3),
    lambda: ClassCaps(in_caps=2, in_dim=2, out_caps=2, out_dim=2),
    lambda: ConvCaps3d(in_caps=2, in_dim=2, out_caps=2, out_dim=2),
    lambda: CapsCell(in_caps=2, in_dim=2, out_caps=2, out_dim=2),
])
def test_layers_print_their_arguments(factory: Callable[[], nn.Module]) -> None:
    text = repr(factory())
    assert "out_caps=2" in text

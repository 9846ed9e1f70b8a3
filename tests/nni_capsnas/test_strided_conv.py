"""The primary-capsule convolution as kernel-row GEMMs gives ``F.conv2d``'s results and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nni_capsnas.export import export_onnx
from nni_capsnas.modules import PrimaryCaps, strided_conv
from nni_capsnas.modules.strided_conv import conv2d, uses_row_gemms


@pytest.fixture
def row_gemms_for_small_convolutions(monkeypatch):
    """Take the row-GEMM path for tiny float64 cases, in batch chunks of one or two images."""
    monkeypatch.setattr(strided_conv, "MIN_ROW_LENGTH", 1)
    monkeypatch.setattr(strided_conv, "PATCH_BUFFER_BYTES", 4000)


@pytest.mark.parametrize(("height", "width", "kernel", "stride", "padding"), [
    (20, 20, 9, 2, 0),   # CapsNet's primary capsules (a row and column left unread)
    (13, 11, 3, 2, 1),   # padding and odd sizes that leave the last row/column unread
    (12, 12, 5, 3, 2),
    (8, 9, 3, 1, 0),
    (7, 7, 7, 1, 3),
])
def test_results_and_gradients_match_conv2d(row_gemms_for_small_convolutions, height, width,
                                            kernel, stride, padding):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, height, width, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(5, 4, kernel, kernel, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, generator=generator, requires_grad=True)

    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=generator)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), grad_out)

    result = conv2d(x, weight, bias, stride=stride, padding=padding)
    assert "RowGemm" in type(result.grad_fn).__name__
    grads = torch.autograd.grad(result, (x, weight, bias), grad_out)

    torch.testing.assert_close(result, expected)
    for name, got, want in zip(["input", "weight", "bias"], grads, expected_grads):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, msg=f"{name} gradient differs")


def test_an_empty_batch_has_zero_weight_and_bias_gradients(row_gemms_for_small_convolutions):
    x = torch.randn(0, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    result = conv2d(x, weight, bias, stride=2)
    assert "RowGemm" in type(result.grad_fn).__name__ and result.shape == (0, 5, 4, 4)
    grad_x, grad_weight, grad_bias = torch.autograd.grad(result, (x, weight, bias), torch.ones_like(result))
    assert grad_x.shape == x.shape
    assert torch.equal(grad_weight, torch.zeros_like(weight)) and torch.equal(grad_bias, torch.zeros_like(bias))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_come_back_in_the_layout_of_their_tensors(row_gemms_for_small_convolutions, channels_last):
    generator = torch.Generator().manual_seed(2)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, 11, 11, dtype=torch.float64, generator=generator).to(memory_format=layout)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=generator).to(memory_format=layout)
    x.requires_grad_(), weight.requires_grad_()
    grad_out = torch.randn(3, 5, 5, 5, dtype=torch.float64, generator=generator)

    expected = torch.autograd.grad(F.conv2d(x, weight, stride=2), (x, weight), grad_out)
    conv2d(x, weight, None, stride=2).backward(grad_out)

    torch.testing.assert_close(x.grad, expected[0])
    torch.testing.assert_close(weight.grad, expected[1])
    for name, tensor in [("input", x), ("weight", weight)]:
        assert tensor.grad.is_contiguous(memory_format=layout), f"{name} gradient not in its tensor's layout"


def test_capsnet_sized_primary_capsules_keep_their_kernel_channels_last():
    primary = PrimaryCaps(in_channels=256, out_caps=32, caps_dim=8, kernel_size=9, stride=2)
    small = PrimaryCaps(in_channels=8, out_caps=4, caps_dim=4, kernel_size=3)
    assert primary.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert small.conv.weight.is_contiguous()
    x = torch.rand(2, 256, 20, 20).to(memory_format=torch.channels_last)
    primary(x).sum().backward()
    assert primary.conv.weight.grad.is_contiguous(memory_format=torch.channels_last)


def test_gradcheck_and_only_requested_gradients(row_gemms_for_small_convolutions):
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: conv2d(a, w, None, stride=2, padding=1), (x, weight))

    frozen = weight.detach()
    (grad_x,) = torch.autograd.grad(conv2d(x, frozen, None, stride=2).sum(), (x,))
    assert grad_x.shape == x.shape and frozen.grad is None


def test_capsnet_primary_capsules_take_the_row_gemm_path_and_small_layers_do_not():
    capsnet_input, capsnet_weight = torch.empty(2, 256, 20, 20), torch.empty(256, 256, 9, 9)
    assert uses_row_gemms(capsnet_input, capsnet_weight)
    assert not uses_row_gemms(torch.empty(2, 8, 10, 10), torch.empty(16, 8, 3, 3))
    assert not uses_row_gemms(capsnet_input.half(), capsnet_weight.half())


def test_float32_inference_and_flop_count_equal_the_plain_convolution():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 128, 20, 20, generator=generator)
    weight = torch.randn(32, 128, 9, 9, generator=generator) * 0.05
    bias = torch.randn(32, generator=generator)
    assert uses_row_gemms(x, weight)
    with torch.no_grad():
        result = conv2d(x, weight, bias, stride=2)
    torch.testing.assert_close(result, F.conv2d(x, weight, bias, stride=2), atol=1e-4, rtol=1e-4)

    def counted_flops(convolution) -> int:
        leaf_x, leaf_w = x.clone().requires_grad_(), weight.clone().requires_grad_()
        with FlopCounterMode(display=False) as counter:
            convolution(leaf_x, leaf_w, bias, stride=2).sum().backward()
        return counter.get_total_flops()

    assert counted_flops(conv2d) == counted_flops(F.conv2d) > 0


@pytest.mark.parametrize("training", [False, True])
def test_onnx_export_sees_one_conv_node(training):
    layer = PrimaryCaps(in_channels=128, out_caps=4, caps_dim=8, kernel_size=9, stride=2).train(training)
    example = torch.rand(1, 128, 20, 20)
    assert uses_row_gemms(example, layer.conv.weight)
    op_types = [node.op_type for node in export_onnx(layer, example).graph.node]
    assert op_types.count("Conv") == 1 and "MatMul" not in op_types and "Gemm" not in op_types

"""The primary-capsule convolution's own backward gives autograd's gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nni_capsnas.modules.strided_conv import conv2d


@pytest.mark.parametrize(("height", "width", "kernel", "stride", "padding"), [
    (20, 20, 9, 2, 0),   # CapsNet's primary capsules (a row and column left unread)
    (13, 11, 3, 2, 1),   # padding and odd sizes that leave the last row/column unread
    (12, 12, 5, 3, 2),
    (8, 9, 3, 1, 0),
    (7, 7, 7, 1, 3),
])
def test_gradients_match_autograd(height, width, kernel, stride, padding):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, height, width, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(5, 4, kernel, kernel, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, generator=generator, requires_grad=True)

    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=generator)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), grad_out)

    result = conv2d(x, weight, bias, stride=stride, padding=padding)
    grads = torch.autograd.grad(result, (x, weight, bias), grad_out)

    torch.testing.assert_close(result, expected)
    for name, got, want in zip(["input", "weight", "bias"], grads, expected_grads):
        torch.testing.assert_close(got, want, msg=f"{name} gradient differs")


def test_gradcheck_and_only_requested_gradients():
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: conv2d(a, w, None, stride=2, padding=1), (x, weight))

    frozen = weight.detach()
    (grad_x,) = torch.autograd.grad(conv2d(x, frozen, None, stride=2).sum(), (x,))
    assert grad_x.shape == x.shape and frozen.grad is None


def test_inference_is_a_plain_convolution():
    x, weight = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3, requires_grad=True)
    with torch.no_grad():
        assert conv2d(x, weight, stride=2).grad_fn is None
    assert "ForwardStyleBackward" in type(conv2d(x, weight, stride=2).grad_fn).__name__

"""A 2D convolution whose backward pass runs as two forward-style convolutions.

PyTorch's CPU backward of a large strided convolution (the primary-capsule layer: 256 -> 256
channels, 9x9, stride 2) runs at about half the throughput of its forward pass. Both gradients
are themselves convolutions that oneDNN computes with its faster forward kernels:

- the input gradient is the transposed convolution of the output gradient with the weight;
- the weight gradient is a convolution of the (padded, cropped) input, with batch and channels
  swapped, by the output gradient dilated by the stride.

:func:`conv2d` uses this only while autograd records (training); inference and ONNX export see
an ordinary ``Conv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _Conv2dForwardStyleBackward(torch.autograd.Function):
    """``F.conv2d`` (no groups, no dilation) with both gradients computed by forward convolutions."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad_out = grad_out.contiguous()
        kernel_h, kernel_w = weight.shape[-2:]
        out_h, out_w = grad_out.shape[-2:]
        # Input rows/columns the forward pass actually read (the rest get zero gradient).
        span_h, span_w = stride * (out_h - 1) + kernel_h, stride * (out_w - 1) + kernel_w
        padded_h, padded_w = x.shape[-2] + 2 * padding, x.shape[-1] + 2 * padding
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv_transpose2d(grad_out, weight, stride=stride, padding=padding,
                                        output_padding=(padded_h - span_h, padded_w - span_w))
        if ctx.needs_input_grad[1]:
            x_read = F.pad(x, (padding,) * 4) if padding else x
            x_read = x_read[:, :, :span_h, :span_w]
            grad_weight = F.conv2d(x_read.transpose(0, 1), grad_out.transpose(0, 1),
                                   dilation=stride).transpose(0, 1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
           stride: int = 1, padding: int = 0) -> torch.Tensor:
    """``F.conv2d`` with a faster CPU backward for large strided kernels.

    Parameters
    ----------
    x
        Input ``(batch, in_channels, H, W)``.
    weight
        Kernel ``(out_channels, in_channels, kH, kW)``.
    bias
        Optional ``(out_channels,)``.
    stride, padding
        Symmetric stride and zero padding (ints).

    Returns
    -------
    torch.Tensor
        Exactly ``F.conv2d(x, weight, bias, stride=stride, padding=padding)``; only the
        backward computation differs (same gradients up to float rounding).
    """
    recording = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if not recording or x.device.type != "cpu" or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    return _Conv2dForwardStyleBackward.apply(x, weight, bias, stride, padding)

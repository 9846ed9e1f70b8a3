"""A large 2D convolution computed as kernel-row GEMMs on CPU.

oneDNN runs the primary-capsule convolution (256 -> 256 channels, 9x9, stride 2, the bulk of a
CapsNet's FLOPs) at about half of the machine's float32 GEMM throughput, and its backward pass
slower still. A plain im2col + GEMM would be faster in the multiplication but pays for a copy the
size of the whole patch matrix, far larger than the caches.

Here the convolution is split along the kernel's rows. With the input in channels-last layout, the
patch slice that one kernel row reads, ``x[b, s*i + row, s*j : s*j + kW, :]``, is one contiguous
run of ``kW * C`` numbers, so the patch matrix of one kernel row is a cheap strided copy that stays
in cache, and each pass of the convolution is ``kH`` large GEMMs:

- forward: ``out += patches[row] @ W[row]``;
- weight gradient: ``dW[row]^T = patches[row]^T @ dout`` (one transposing copy at the end);
- input gradient: ``cols = dout @ W[row]^T``, scattered back with one strided add per kernel column.

A kernel stored channels-last (see :func:`is_row_gemm_sized`) is already laid out as kernel rows,
and gradients come back in the layout of their tensors, so the passes do not transpose the weight, and
a channels-last input (such as a channels-last convolution's output) is read and differentiated
without a copy.

:func:`conv2d` takes this path on CPU for convolutions large enough to profit (see
:func:`uses_row_gemms`) and when no graph is being traced or exported; otherwise, and for ONNX
export, it is an ordinary ``F.conv2d``.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from ._eager import runs_eagerly

#: Smallest ``kernel_width * in_channels`` (the GEMMs' inner size) worth the row-GEMM path. Measured on
#: 2 cores, forward + backward at batch 64: 1.17x oneDNN's speed for 256 channels 9x9 (K = 2304), even
#: at 128 channels 9x9 (1152), 0.7-0.9x for the 3x3 and 5x5 layers below 1024.
MIN_ROW_LENGTH = 1024
#: Batch chunks keep one kernel row's patch matrix below this many bytes (cache-resident).
PATCH_BUFFER_BYTES = 32 * 2 ** 20


def uses_row_gemms(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`conv2d` computes this convolution with kernel-row GEMMs.

    Parameters
    ----------
    x
        Input ``(batch, in_channels, H, W)``.
    weight
        Kernel ``(out_channels, in_channels, kH, kW)``.

    Returns
    -------
    bool
        True on CPU, for float32/float64 inputs whose GEMM inner size ``kW * in_channels`` is at
        least :data:`MIN_ROW_LENGTH`, outside graph tracing, compilation and ONNX export.
    """
    if x.dtype not in (torch.float32, torch.float64) or not is_row_gemm_sized(weight):
        return False
    return runs_eagerly(x)


def is_row_gemm_sized(weight: torch.Tensor) -> bool:
    """Whether a kernel ``(out_channels, in_channels, kH, kW)`` is large enough for kernel-row GEMMs.

    Such a weight is best stored channels-last (``module.to(memory_format=torch.channels_last)``):
    its kernel rows are then a view and its gradient needs no transpose.
    """
    return weight.dim() == 4 and weight.shape[1] * weight.shape[3] >= MIN_ROW_LENGTH


def _patch_rows(x_nhwc: torch.Tensor, row: int, stride: int, out_hw: tuple[int, int],
                kernel_w: int) -> torch.Tensor:
    """View ``(batch, out_h, out_w, kW * C)`` of the input patches read by one kernel row."""
    batch, height, width, channels = x_nhwc.shape
    out_h, out_w = out_hw
    return x_nhwc.as_strided(
        (batch, out_h, out_w, kernel_w * channels),
        (height * width * channels, stride * width * channels, stride * channels, 1),
        x_nhwc.storage_offset() + row * width * channels)


def _row_patch_matrices(x_nhwc: torch.Tensor, stride: int, out_hw: tuple[int, int], kernel_h: int,
                        kernel_w: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(row, patches)`` per kernel row: ``(batch * out_h * out_w, kW * C)``, one reused buffer."""
    patches = None
    for row in range(kernel_h):
        view = _patch_rows(x_nhwc, row, stride, out_hw, kernel_w)
        patches = view.contiguous() if patches is None else patches.copy_(view)
        yield row, patches.view(-1, patches.shape[-1])


def _batch_chunks(batch: int, out_hw: tuple[int, int], kernel_w: int, channels: int,
                  element_size: int) -> list[slice]:
    """Batch slices whose kernel-row patch matrix stays below :data:`PATCH_BUFFER_BYTES`."""
    per_image = out_hw[0] * out_hw[1] * kernel_w * channels * element_size
    size = max(1, min(batch, PATCH_BUFFER_BYTES // per_image))
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)]


class _RowGemmConv2d(torch.autograd.Function):
    """``F.conv2d`` (no groups or dilation) as kernel-row GEMMs, forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: int, padding: int) -> torch.Tensor:
        out_channels, _, kernel_h, kernel_w = weight.shape
        x_nhwc = _padded_channels_last(x, padding)
        out_h = (x_nhwc.shape[1] - kernel_h) // stride + 1
        out_w = (x_nhwc.shape[2] - kernel_w) // stride + 1
        # weight as (out_channels, kernel row, kernel column x in_channels): a view of a channels-last
        # weight (see is_row_gemm_sized), one batched transpose otherwise
        row_weights = weight.permute(0, 2, 3, 1).reshape(out_channels, kernel_h, -1)
        out = x.new_zeros(x.shape[0], out_h, out_w, out_channels)
        for chunk in _batch_chunks(x.shape[0], (out_h, out_w), kernel_w, x_nhwc.shape[3], x.element_size()):
            out_rows = out[chunk].view(-1, out_channels)
            for row, patches in _row_patch_matrices(x_nhwc[chunk], stride, (out_h, out_w), kernel_h, kernel_w):
                _accumulate_product(out_rows, patches, row_weights[:, row].t())
        if bias is not None:
            out += bias
        ctx.save_for_backward(x_nhwc, row_weights)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        ctx.channels_last_input = x.is_contiguous(memory_format=torch.channels_last)
        ctx.weight_shape = weight.shape
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x_nhwc, row_weights = ctx.saved_tensors
        grad_nhwc = grad_out.permute(0, 2, 3, 1).contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_gradient(grad_nhwc, row_weights, x_nhwc.shape, ctx.stride, ctx.padding)
            # in the input's own layout: a channels-last producer reads it without a copy, oneDNN's
            # NCHW convolution backward is much slower with a channels-last gradient
            if not ctx.channels_last_input:
                grad_x = grad_x.contiguous()
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_gradient(grad_nhwc, x_nhwc, ctx.stride, ctx.weight_shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_nhwc.sum(dim=(0, 1, 2))
        return grad_x, grad_weight, grad_bias, None, None


def _accumulate_product(target: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                        overwrite: bool = False) -> None:
    """``target += left @ right`` in place (``target = left @ right`` with ``overwrite``: its old
    contents, even NaN, are ignored); the ``out=`` form, which ``FlopCounterMode`` counts."""
    torch.addmm(target, left, right, beta=0 if overwrite else 1, out=target)


def _padded_channels_last(x: torch.Tensor, padding: int) -> torch.Tensor:
    """``x`` zero-padded on both spatial sides, as a contiguous ``(batch, H, W, channels)`` copy."""
    if not padding:
        return x.permute(0, 2, 3, 1).contiguous()
    batch, channels, height, width = x.shape
    padded = x.new_zeros(batch, height + 2 * padding, width + 2 * padding, channels)
    padded[:, padding:padding + height, padding:padding + width] = x.permute(0, 2, 3, 1)
    return padded


def _weight_gradient(grad_nhwc: torch.Tensor, x_nhwc: torch.Tensor, stride: int,
                     weight_shape: torch.Size) -> torch.Tensor:
    """``dW[row]^T = patches[row]^T @ dout``, accumulated over batch chunks; a channels-last view.

    The transposed product has the forward pass's GEMM shape, which MKL runs about 10% faster than
    ``dout^T @ patches[row]``; one transposing copy at the end costs less than that.
    """
    out_channels, in_channels, kernel_h, kernel_w = weight_shape
    _, out_h, out_w, _ = grad_nhwc.shape
    chunks = _batch_chunks(x_nhwc.shape[0], (out_h, out_w), kernel_w, in_channels, x_nhwc.element_size())
    # the first chunk overwrites the buffer, so it needs a zero fill only for an empty batch
    transposed = (grad_nhwc.new_empty if chunks else grad_nhwc.new_zeros)(
        kernel_h, kernel_w * in_channels, out_channels)
    for index, chunk in enumerate(chunks):
        grad_rows = grad_nhwc[chunk].reshape(-1, out_channels)
        for row, patches in _row_patch_matrices(x_nhwc[chunk], stride, (out_h, out_w), kernel_h, kernel_w):
            _accumulate_product(transposed[row], patches.t(), grad_rows, overwrite=index == 0)
    row_grads = transposed.permute(2, 0, 1).contiguous()
    # a channels-last view: what a channels-last weight's gradient accumulates without a copy
    return row_grads.view(out_channels, kernel_h, kernel_w, in_channels).permute(0, 3, 1, 2)


def _input_gradient(grad_nhwc: torch.Tensor, row_weights: torch.Tensor, padded_shape: torch.Size,
                    stride: int, padding: int) -> torch.Tensor:
    """``cols = dout @ W[row]^T`` per kernel row, added back onto the input positions it read.

    Returns a channels-last view ``(batch, in_channels, H, W)`` (cropped by ``padding``).
    """
    batch, height, width, in_channels = padded_shape
    kernel_h = row_weights.shape[1]
    kernel_w = row_weights.shape[2] // in_channels
    _, out_h, out_w, out_channels = grad_nhwc.shape
    grad_x = grad_nhwc.new_zeros(batch, height, width, in_channels)
    row_end, col_end = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    for chunk in _batch_chunks(batch, (out_h, out_w), kernel_w, in_channels, grad_nhwc.element_size()):
        grad_rows = grad_nhwc[chunk].reshape(-1, out_channels)
        target = grad_x[chunk]
        cols = grad_rows.new_empty(grad_rows.shape[0], kernel_w * in_channels)
        for row in range(kernel_h):
            torch.mm(grad_rows, row_weights[:, row], out=cols)
            patch_grads = cols.view(-1, out_h, out_w, kernel_w, in_channels)
            for column in range(kernel_w):
                target[:, row:row + row_end:stride, column:column + col_end:stride] += patch_grads[:, :, :, column]
    grad_x = grad_x.permute(0, 3, 1, 2)
    if padding:
        grad_x = grad_x[:, :, padding:height - padding, padding:width - padding]
    return grad_x


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
           stride: int = 1, padding: int = 0) -> torch.Tensor:
    """``F.conv2d``, computed as kernel-row GEMMs on CPU where that is faster.

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
        ``F.conv2d(x, weight, bias, stride=stride, padding=padding)`` up to float rounding (the
        row-GEMM result is a channels-last tensor viewed as ``(batch, channels, H', W')``).
    """
    if not uses_row_gemms(x, weight):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    return _RowGemmConv2d.apply(x, weight, bias, stride, padding)

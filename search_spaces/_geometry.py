"""Spatial size arithmetic shared by the spaces."""

from __future__ import annotations

import numbers
from typing import Any


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output height/width of a convolution, or ``ValueError`` if the kernel does not fit."""
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ValueError(
            f"kernel_size {kernel_size} with stride {stride} and padding {padding} does not fit "
            f"an input of size {size}")
    return out


def check_input_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Validate ``(channels, height, width)`` and return it as a tuple of ints."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width) of positive sizes, got {input_shape!r}")
    return shape  # type: ignore[return-value]


def same_size(size: int, stride: int) -> int:
    """Output size of a "same"-padded convolution (odd kernel, padding ``kernel // 2``)."""
    return (size - 1) // stride + 1


def fit_kernel(kernel: int, height: int, width: int) -> int:
    """Largest odd kernel that is at most ``kernel`` and fits in a ``height x width`` map."""
    size = min(height, width)
    return min(kernel, size if size % 2 else size - 1)


def fit_stride(stride: int, height: int, width: int, min_size: int) -> int:
    """``stride``, or 1 if striding would leave a map smaller than ``min_size``."""
    if stride > 1 and min(same_size(height, stride), same_size(width, stride)) < min_size:
        return 1
    return stride


def check_shape(input_shape: Any) -> tuple[int, int, int]:
    """Validate ``input_shape`` as ``(channels, height, width)`` of positive integers."""
    try:
        values = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}") from None
    if not all(is_integer(v) for v in values):
        raise ValueError(f"input_shape must be (channels, height, width) of integers, got {input_shape!r}")
    return check_input_shape(values)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (``numbers.Integral``) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)

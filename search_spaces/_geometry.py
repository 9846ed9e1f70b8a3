"""Spatial size arithmetic shared by the spaces."""

from __future__ import annotations


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

"""Argument and tensor checks that raise ``ValueError`` naming the culprit."""

from __future__ import annotations

from typing import Sequence

import torch


def check_positive(name: str, value: int) -> int:
    """Return ``value`` if it is a positive integer, else raise ``ValueError``.

    Parameters
    ----------
    name
        Argument name used in the error message.
    value
        The value received.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_rank(name: str, tensor: torch.Tensor, rank: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``rank`` dimensions.

    Parameters
    ----------
    name
        Name of the tensor argument.
    tensor
        The tensor received.
    rank
        Expected number of dimensions.
    layout
        Human-readable layout, e.g. ``"(batch, in_caps, in_dim)"``.
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}")
    if tensor.dim() != rank:
        raise ValueError(
            f"{name} must have {rank} dimensions {layout}, got shape {tuple(tensor.shape)}"
        )


def check_sizes(name: str, tensor: torch.Tensor, expected: Sequence[tuple[int, int, str]]) -> None:
    """Raise ``ValueError`` if any ``(dim, size, meaning)`` of ``expected`` does not match.

    Parameters
    ----------
    name
        Name of the tensor argument.
    tensor
        The tensor received.
    expected
        Triples of dimension index, expected size and what that size means.
    """
    for dim, size, meaning in expected:
        if tensor.shape[dim] != size:
            raise ValueError(
                f"{name} dimension {dim} ({meaning}) must be {size}, got shape {tuple(tensor.shape)}"
            )

"""Capsule length and masking helpers."""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_rank


def capsule_length(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Length of each capsule vector, ``(batch, caps, dim) -> (batch, caps)``.

    ``eps`` keeps the gradient finite for all-zero capsules. Half-precision capsules are
    measured in float32 (where ``eps`` does not round to zero), and so are their lengths.
    """
    check_rank("v", v, 3, "(batch, caps, dim)")
    wide = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
    return torch.sqrt((wide * wide).sum(dim=-1) + eps)


def class_scores(output: torch.Tensor) -> torch.Tensor:
    """Scores ``(batch, classes)``: lengths of class capsules ``(batch, classes, dim)``, or logits as they are."""
    if output.dim() == 3:
        return capsule_length(output)
    if output.dim() == 2:
        return output
    raise ValueError(f"model output must be class capsules (batch, classes, dim) or logits "
                     f"(batch, classes), got shape {tuple(output.shape)}")


def mask_capsules(v: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Zero every capsule but one per sample.

    Parameters
    ----------
    v
        Class capsules ``(batch, caps, dim)``.
    labels
        Capsule to keep per sample (training: the true class). ``None`` keeps the longest.

    Returns
    -------
    torch.Tensor
        Masked capsules, same shape as ``v``.
    """
    check_rank("v", v, 3, "(batch, caps, dim)")
    if labels is None:
        labels = capsule_length(v).argmax(dim=1)
    if labels.shape != (v.shape[0],):
        raise ValueError(f"labels must have shape ({v.shape[0]},), got {tuple(labels.shape)}")
    one_hot = torch.nn.functional.one_hot(labels, v.shape[1]).to(v.dtype)
    return v * one_hot.unsqueeze(-1)

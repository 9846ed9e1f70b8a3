"""When a layer may swap its ops for a faster hand-written CPU path."""

from __future__ import annotations

import torch


def runs_eagerly(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` flows through ordinary eager PyTorch (not tracing, compiling or exporting).

    Hand-written autograd functions and kernel-level rewrites are used only then: graph capture
    (``torch.jit``, ``torch.compile``, ``torch.export`` and the ONNX exporters, whose fake and
    functional tensors are ``Tensor`` subclasses) must see the plain operators.

    Parameters
    ----------
    tensor
        The layer's input.

    Returns
    -------
    bool
        True for a plain CPU ``torch.Tensor`` outside any graph capture.
    """
    if type(tensor) is not torch.Tensor or tensor.device.type != "cpu":
        return False
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())

"""Common base of the capsule layers."""

from __future__ import annotations

from torch import nn
from nni.nas.nn.pytorch import ParametrizedModule


class CapsuleModule(ParametrizedModule):
    """A :class:`~nni.nas.nn.pytorch.ParametrizedModule` that also prints when frozen.

    NNI records the init arguments only outside a frozen-model context, and its
    ``__repr__`` needs them; frozen layers fall back to PyTorch's repr.
    """

    def __repr__(self) -> str:
        if "trace_kwargs" in self.__dict__ or hasattr(type(self), "trace_kwargs"):
            try:
                return super().__repr__()
            except AttributeError:
                pass
        return nn.Module.__repr__(self)

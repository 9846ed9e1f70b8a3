"""Architecture parameters of NNI 3.0's differentiable supernets (private attributes).

NNI's DARTS-style mixed modules (``DifferentiableMixedLayer``, ``DifferentiableMixedCell``,
``DifferentiableMixedRepeat`` and mixed operations under ``MixedOpDifferentiablePolicy``) keep
their architecture logits in ``_arch_alpha`` (a ``ParameterDict`` keyed by label, or one
``Parameter``) and their softmax in ``_softmax``; NNI has no public accessor. E2RNAS' expected
costs, the capsule mixed operations and the supernet benchmarks read them here only.
``traverse_all_options`` (the distribution of a mutable expression under label probabilities)
lives in NNI's private ``_expression_utils``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from nni.nas.oneshot.pytorch.supermodule._expression_utils import traverse_all_options
from torch import nn

__all__ = ["architecture_logits", "architecture_parameters", "label_softmax", "traverse_all_options"]

#: NNI's name of the architecture-logit attribute of mixed modules (also in parameter names).
ARCH_ALPHA = "_arch_alpha"


def architecture_logits(module: nn.Module) -> Any:
    """The module's architecture logits: a ``ParameterDict`` by label, a ``Parameter``, or ``None``."""
    return getattr(module, ARCH_ALPHA, None)


def label_softmax(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The softmax the module applies to its logits (a temperature, for GumbelDARTS), else plain softmax."""
    softmax = getattr(module, "_softmax", None)
    return softmax if softmax is not None else (lambda alpha: torch.softmax(alpha, dim=-1))


def architecture_parameters(supernet: nn.Module) -> dict[str, nn.Parameter]:
    """Each label's architecture parameter (shared between the modules that use the label)."""
    parameters: dict[str, nn.Parameter] = {}
    for module in supernet.modules():
        alpha = architecture_logits(module)
        if isinstance(alpha, nn.ParameterDict):
            parameters.update(alpha.items())
        elif isinstance(alpha, nn.Parameter):
            parameters[module.label] = alpha
    return parameters


def is_architecture_parameter(name: str) -> bool:
    """Whether a ``named_parameters()`` name is an architecture logit."""
    return ARCH_ALPHA in name

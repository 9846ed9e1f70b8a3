"""Logits for a softmax over classes: a CNN's logits, or class capsules' lengths mapped to logits.

Cross-entropy needs scores that a softmax can turn into a confident prediction. Capsule lengths
are in [0, 1): a softmax over them is nearly uniform whatever the network predicts. Lengths 0.9
for the true class and 0.1 for nine others (a perfect prediction by the margin loss' standard)
give the true class a softmax probability of 0.20 and a cross-entropy of 1.61, against
ln 10 = 2.30 for a uniform prediction, so cross-entropy on raw lengths is nearly flat.

Ways to map a capsule length ``l`` to a logit (:data:`CAPSULE_LOGITS`):

- ``"log_odds"``: ``log(l / (1 - l))``. For a squashed capsule, ``l = |s|^2 / (1 + |s|^2)``,
  this is exactly ``log |s|^2``: the softmax is proportional to the squared length of the
  capsule *before* squashing, no constant to choose. The perfect prediction above then has
  probability 0.90 (cross-entropy 0.11). Lengths are clamped to ``[1e-6, 1 - 1e-6]``.
- ``"scaled_length"``: ``LENGTH_TEMPERATURE * l``, a fixed temperature (cross-entropy 0.003 for
  the perfect prediction above).
- ``"length"``: ``l`` as it is (the former behaviour, nearly flat; for comparison).

Every mapping is strictly increasing in ``l``, so the predicted class (the argmax) is that of the
lengths, and the margin loss, which reads the lengths (:func:`~nni_capsnas.modules.class_scores`),
is not affected.
"""

from __future__ import annotations

from typing import Callable

import torch

from .capsule_ops import capsule_length

#: Temperature of ``"scaled_length"``.
LENGTH_TEMPERATURE = 10.0
#: Lengths are clamped to ``[LOG_ODDS_EPS, 1 - LOG_ODDS_EPS]`` before the log-odds.
LOG_ODDS_EPS = 1e-6

#: Name -> map from capsule lengths ``(batch, classes)`` to logits of the same shape.
CAPSULE_LOGITS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "log_odds": lambda lengths: torch.logit(lengths, eps=LOG_ODDS_EPS),
    "scaled_length": lambda lengths: LENGTH_TEMPERATURE * lengths,
    "length": lambda lengths: lengths,
}
#: The mapping that the search's cross-entropy and the attacks use unless told otherwise.
DEFAULT_CAPSULE_LOGITS = "log_odds"


def check_capsule_logits(kind: str) -> str:
    """Return ``kind`` if it names a mapping of :data:`CAPSULE_LOGITS`, else raise ``ValueError``."""
    if kind not in CAPSULE_LOGITS:
        raise ValueError(f"capsule_logits must be one of {tuple(CAPSULE_LOGITS)}, got {kind!r}")
    return kind


def class_logits(output: torch.Tensor, capsule_logits: str = DEFAULT_CAPSULE_LOGITS) -> torch.Tensor:
    """Logits ``(batch, classes)`` for cross-entropy: logits as they are, or mapped capsule lengths.

    Parameters
    ----------
    output
        Class capsules ``(batch, classes, dim)`` or logits ``(batch, classes)``.
    capsule_logits
        How capsule lengths become logits, a key of :data:`CAPSULE_LOGITS` (ignored for logits).

    Returns
    -------
    torch.Tensor
        ``(batch, classes)``; their argmax is the predicted class in every case.
    """
    mapping = CAPSULE_LOGITS[check_capsule_logits(capsule_logits)]
    if output.dim() == 3:
        return mapping(capsule_length(output))
    if output.dim() == 2:
        return output
    raise ValueError(f"model output must be class capsules (batch, classes, dim) or logits "
                     f"(batch, classes), got shape {tuple(output.shape)}")

"""How decisively a differentiable search chose: the probability margin of each label's leading value.

A one-shot search exports, per label, the value of highest probability. When the runner-up is
almost as probable the export is a coin toss that noise in the last architecture steps decides;
:func:`choice_margins` measures the lead and :func:`near_ties` names such labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

_logger = logging.getLogger(__name__)

#: A lead (in probability) below this makes a label's choice a near-tie by default.
NEAR_TIE_MARGIN = 0.05


@dataclass(frozen=True)
class ChoiceMargin:
    """The leading value of one label, its probability and its lead over the runner-up."""

    label: str
    chosen: Any
    probability: float
    runner_up: Optional[Any]
    runner_up_probability: float

    @property
    def margin(self) -> float:
        """``probability - runner_up_probability`` (the probability itself for a single-valued label)."""
        return self.probability - self.runner_up_probability


def check_near_tie_margin(margin: Any) -> float:
    """Return ``margin`` as a float if it is a number in [0, 1], else raise ``ValueError``."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 1:
        raise ValueError(f"near_tie_margin must be a probability in [0, 1], got {margin!r}")
    return float(margin)


def choice_margins(probabilities: Mapping[str, Mapping[Any, float]]) -> dict[str, ChoiceMargin]:
    """The leading value of every label and its lead over the runner-up.

    Parameters
    ----------
    probabilities
        ``{label: {value: probability}}``, e.g. a one-shot module's ``export_probs()``.

    Returns
    -------
    dict
        ``{label: ChoiceMargin}`` in the order of ``probabilities``; labels without values are left out.
    """
    margins = {}
    for label, distribution in probabilities.items():
        ranked = sorted(((float(p), index, value) for index, (value, p) in enumerate(dict(distribution).items())),
                        key=lambda item: (-item[0], item[1]))
        if not ranked:
            continue
        (top, _, chosen), rest = ranked[0], ranked[1:]
        runner_up, second = (rest[0][2], rest[0][0]) if rest else (None, 0.0)
        margins[str(label)] = ChoiceMargin(str(label), chosen, top, runner_up, second)
    return margins


def near_ties(margins: Mapping[str, ChoiceMargin], threshold: float = NEAR_TIE_MARGIN) -> list[ChoiceMargin]:
    """The labels whose leading value is less than ``threshold`` ahead of its runner-up."""
    return [m for m in margins.values() if m.runner_up is not None and m.margin < threshold]


def log_choice_margins(margins: Mapping[str, ChoiceMargin], threshold: float = NEAR_TIE_MARGIN) -> None:
    """Log every label's choice and lead (INFO) and warn about each near-tie."""
    for m in margins.values():
        _logger.info("exported %s = %s with probability %.3f, %.3f ahead of %s (%.3f)", m.label, m.chosen,
                     m.probability, m.margin, m.runner_up, m.runner_up_probability)
    for m in near_ties(margins, threshold):
        _logger.warning("near-tie: %s = %s leads %s by %.4f in probability (%.3f vs %.3f; warning below %.3f): "
                        "the export is close to a coin toss; search longer or with a larger arc_learning_rate",
                        m.label, m.chosen, m.runner_up, m.margin, m.probability, m.runner_up_probability, threshold)

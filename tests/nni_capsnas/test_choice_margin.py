"""The lead of each label's exported value over its runner-up, and near-tie warnings."""

from __future__ import annotations

import logging

import pytest

from nni_capsnas.strategy.choice_margin import (ChoiceMargin, check_near_tie_margin, choice_margins,
                                                log_choice_margins, near_ties)
from nni_capsnas.strategy.e2rnas import E2RNAS

PROBABILITIES = {
    "feature_op": {"conv3x3": 0.1291, "max_pool3x3": 0.1282, "skip": 0.7427},
    "primary_caps": {4: 0.52, 8: 0.48},
    "routing_iterations": {1: 0.9, 3: 0.1},
    "fixed": {"only": 1.0},
}


def test_margins_name_the_leader_and_the_runner_up() -> None:
    margins = choice_margins(PROBABILITIES)
    assert list(margins) == list(PROBABILITIES)
    assert margins["feature_op"] == ChoiceMargin("feature_op", "skip", 0.7427, "conv3x3", 0.1291)
    assert margins["feature_op"].margin == pytest.approx(0.7427 - 0.1291)
    assert (margins["primary_caps"].chosen, margins["primary_caps"].margin) == (4, pytest.approx(0.04))
    assert margins["fixed"] == ChoiceMargin("fixed", "only", 1.0, None, 0.0)
    # an exact tie goes to the first value, as an argmax export does
    assert choice_margins({"x": {"a": 0.5, "b": 0.5}})["x"].chosen == "a"


def test_near_ties_are_the_labels_below_the_threshold() -> None:
    margins = choice_margins(PROBABILITIES)
    assert [m.label for m in near_ties(margins)] == ["primary_caps"]  # default threshold 0.05
    assert [m.label for m in near_ties(margins, 0.0)] == []
    assert [m.label for m in near_ties(margins, 0.9)] == ["feature_op", "primary_caps", "routing_iterations"]


def test_every_choice_is_logged_and_each_near_tie_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="nni_capsnas.strategy.choice_margin"):
        log_choice_margins(choice_margins(PROBABILITIES), threshold=0.05)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "exported feature_op = skip with probability 0.743, 0.614 ahead of conv3x3 (0.129)" in info
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("near-tie: primary_caps = 4 leads 8 by 0.0400 in probability (0.520 vs 0.480")


@pytest.mark.parametrize("margin", [-0.1, 1.5, True, "0.05"])
def test_the_near_tie_margin_is_a_probability(margin: object) -> None:
    with pytest.raises(ValueError, match="near_tie_margin must be a probability in \\[0, 1\\]"):
        check_near_tie_margin(margin)
    with pytest.raises(ValueError, match="near_tie_margin"):
        E2RNAS(near_tie_margin=margin)  # type: ignore[arg-type]

"""Class logits for cross-entropy: capsule lengths mapped to logits, predictions and margin loss untouched."""

from __future__ import annotations

import math

import pytest
import torch

from nni_capsnas.modules import (CAPSULE_LOGITS, MarginLoss, capsule_length, class_logits, class_scores,
                                 squash)
from trials.losses import ClassificationLoss


def _capsules(seed: int) -> torch.Tensor:
    """Squashed class capsules with lengths from nearly 0 to nearly 1."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-3, 2, 10).view(1, 10, 1)
    return squash(torch.randn(64, 10, 8, generator=generator) * scale[:, torch.randperm(10, generator=generator)])


def _margin_prediction(present: float = 0.9, absent: float = 0.1) -> torch.Tensor:
    capsules = torch.zeros(1, 10, 2)
    capsules[0, :, 0] = absent
    capsules[0, 3, 0] = present
    return capsules


@pytest.mark.parametrize("kind", list(CAPSULE_LOGITS))
def test_every_mapping_keeps_the_predicted_class_and_the_margin_loss(kind: str) -> None:
    for seed in range(3):
        capsules = _capsules(seed)
        labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(seed))
        logits = class_logits(capsules, kind)
        assert logits.shape == (64, 10)
        assert torch.equal(logits.argmax(dim=1), capsule_length(capsules).argmax(dim=1))
        assert torch.equal(logits.argmax(dim=1), class_scores(capsules).argmax(dim=1))
        # the training loss reads the lengths, whatever mapping cross-entropy uses
        margin = MarginLoss()(capsules.norm(dim=-1), labels)
        assert ClassificationLoss(reconstruction_weight=0.0)(capsules, labels, torch.zeros(64, 1, 8, 8)) == \
            pytest.approx(margin.item(), rel=1e-5)


def test_log_odds_of_a_squashed_capsule_is_its_squared_length_before_squashing() -> None:
    raw = torch.randn(16, 10, 8, dtype=torch.float64) * 2
    logits = class_logits(squash(raw), "log_odds")
    torch.testing.assert_close(logits, (raw * raw).sum(dim=-1).log(), rtol=1e-6, atol=1e-6)


def test_cross_entropy_of_a_perfect_margin_prediction_is_near_zero_only_on_mapped_lengths() -> None:
    label = torch.tensor([3])
    loss = {kind: float(torch.nn.functional.cross_entropy(class_logits(_margin_prediction(), kind), label))
            for kind in CAPSULE_LOGITS}
    assert loss["length"] == pytest.approx(1.618, abs=1e-3)  # ln 10 = 2.303 is chance: almost no signal
    assert loss["log_odds"] == pytest.approx(math.log(10 / 9), abs=1e-4)
    assert loss["scaled_length"] < 0.01
    # a wrong confident prediction costs far more than chance once the lengths are mapped
    wrong = _margin_prediction(present=0.1, absent=0.1)
    wrong[0, 5, 0] = 0.9
    assert float(torch.nn.functional.cross_entropy(class_logits(wrong, "log_odds"), label)) > 4.0


def test_logits_pass_through_and_bad_arguments_are_named() -> None:
    logits = torch.randn(4, 10)
    assert class_logits(logits, "log_odds") is logits
    with pytest.raises(ValueError, match="capsule_logits must be one of \\('log_odds', 'scaled_length', 'length'\\), "
                                         "got 'softmax'"):
        class_logits(_capsules(0), "softmax")
    with pytest.raises(ValueError, match="model output must be class capsules"):
        class_logits(torch.randn(4), "length")
    saturated = class_logits(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), "log_odds")
    assert torch.isfinite(saturated).all()

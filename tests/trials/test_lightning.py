"""The Lightning evaluator trains on the configured device and precision."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from tests.conftest import DEVICES
from trials.lightning import LIGHTNING_PRECISIONS, capsule_evaluator, lightning_device


@pytest.mark.parametrize("device, expected", [
    ("cpu", {"accelerator": "cpu", "devices": 1}),
    ("auto", {"accelerator": "auto", "devices": 1}),
    ("cuda", {"accelerator": "cuda", "devices": 1}),
    ("cuda:2", {"accelerator": "cuda", "devices": [2]}),
])
def test_device_settings_become_lightning_trainer_arguments(device: str, expected: dict) -> None:
    assert lightning_device(device) == expected


def test_bad_device_or_precision_is_refused_when_the_evaluator_is_built() -> None:
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, cuda:N"):
        capsule_evaluator("digits", device="tpu")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, got 'int8'"):
        capsule_evaluator("digits", precision="int8")


@pytest.mark.parametrize("device", DEVICES)
def test_the_evaluator_trains_on_the_device_in_mixed_precision(device: str, caplog: pytest.LogCaptureFixture) -> None:
    evaluator = capsule_evaluator("digits", epochs=1, limit_train_batches=4, device=device, precision="bf16")
    assert evaluator.trainer.precision == LIGHTNING_PRECISIONS["bf16"] == "bf16-mixed"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with caplog.at_level(logging.INFO, logger="trials.lightning"):
        evaluator.evaluate(model)
    assert all(p.device.type == device for p in model.parameters())
    assert f"training on {'cuda:0' if device == 'cuda' else 'cpu'} (" in caplog.text
    assert 0.0 <= float(evaluator.trainer.callback_metrics["val_accuracy"]) <= 1.0

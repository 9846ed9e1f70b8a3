"""HardwareProfiler: a hardware metric per sample, usable as an NNI one-shot budget."""

from __future__ import annotations

import pytest
import torch
from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
from nni.nas.profiler import Profiler
from nni.nas.strategy import RandomOneShot

from hw_estimators import estimate
from nni_capsnas.export import export_onnx
from nni_capsnas.profiler import METRICS, HardwareProfiler
from search_spaces import CapsNetSpace

SMALL = {"stem_channels": 16, "primary_caps": 4, "primary_dim": 4, "primary_kernel": 3, "iterations": 1}
LARGE = {"stem_channels": 32, "primary_caps": 8, "primary_dim": 8, "primary_kernel": 5, "iterations": 3}


@pytest.fixture(scope="module")
def space() -> CapsNetSpace:
    return CapsNetSpace(input_shape=(1, 8, 8), num_classes=10, decoder=False)


@pytest.fixture(scope="module")
def profiler(space: CapsNetSpace) -> HardwareProfiler:
    return HardwareProfiler(space, input_shape=(1, 8, 8), accelerator="capsacc", metric="energy_mj")


def test_profile_equals_estimate_of_the_frozen_model(space: CapsNetSpace, profiler: HardwareProfiler) -> None:
    assert isinstance(profiler, Profiler)
    frozen = space.freeze(SMALL)
    expected = estimate(export_onnx(frozen, torch.zeros(1, 1, 8, 8)), "capsacc").energy_mj
    assert profiler.profile(SMALL) == pytest.approx(expected)
    assert profiler.profile(LARGE) > profiler.profile(SMALL) > 0


def test_each_sample_is_exported_once(profiler: HardwareProfiler) -> None:
    first = profiler.estimate(SMALL)
    assert profiler.estimate(dict(reversed(list(SMALL.items())))) is first


def test_range_filter_budget(profiler: HardwareProfiler) -> None:
    budget = RangeProfilerFilter(profiler, max=profiler.profile(SMALL) * 1.01)
    assert budget(SMALL) and not budget(LARGE)
    strategy = RandomOneShot(filter=budget)
    assert strategy.filter is budget


def test_other_metrics_share_one_export(space: CapsNetSpace, profiler: HardwareProfiler) -> None:
    result = profiler.estimate(LARGE)
    latency = HardwareProfiler(space, input_shape=(1, 1, 8, 8), metric="latency_ms")
    assert latency.input_shape == (1, 1, 8, 8)
    assert latency.profile(LARGE) == pytest.approx(result.latency_ms)
    assert set(METRICS) >= {"energy_mj", "latency_ms", "memory_kib"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(1, 8, 8), metric="accuracy"), "metric must be one of"),
    (dict(input_shape=(8, 8)), "input_shape must be"),
    (dict(input_shape=(1, 8, 8), accelerator="tpu"), "neither a built-in accelerator"),
])
def test_bad_arguments(space: CapsNetSpace, kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        HardwareProfiler(space, **kwargs)

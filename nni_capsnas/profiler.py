"""An NNI profiler that reports a hardware-estimator metric for a sample of a model space."""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Sequence, Union

import torch
from nni.mutable import Sample
from nni.nas.profiler import Profiler

from hw_estimators import Accelerator, Estimate, estimate, load_accelerator
from .export import export_onnx

_logger = logging.getLogger(__name__)

#: Attributes of :class:`hw_estimators.Estimate` a profiler may report.
METRICS: tuple[str, ...] = ("energy_mj", "latency_ms", "memory_kib", "weight_memory_kib", "activation_memory_kib",
                            "macs", "params")


class HardwareProfiler(Profiler):
    """Profile a sample by freezing the space, exporting it to ONNX and estimating it.

    Usable wherever NNI takes a :class:`~nni.nas.profiler.Profiler`, e.g. as a budget for
    random one-shot search::

        profiler = HardwareProfiler(space, input_shape=(1, 28, 28), metric="energy_mj")
        strategy = RandomOneShot(filter=RangeProfilerFilter(profiler, max=5.0))

    Each distinct sample is exported once (about a second or more); its estimate is kept for
    the profiler's lifetime. The space is copied at construction, so strategies that mutate the
    space in place do not affect the profiles.

    Parameters
    ----------
    model_space
        The NNI model space.
    input_shape
        Shape of one example input: ``(channels, height, width)`` (batch 1 is added) or a full
        shape with the batch dimension.
    accelerator
        Built-in accelerator name, TOML file, or :class:`hw_estimators.Accelerator`.
    metric
        One of :data:`METRICS`.
    strict
        Passed to :func:`hw_estimators.estimate`.
    """

    def __init__(self, model_space: Any, *, input_shape: Sequence[int],
                 accelerator: Union[str, os.PathLike, Accelerator] = "capsacc", metric: str = "energy_mj",
                 strict: bool = False) -> None:
        super().__init__(model_space)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        shape = tuple(int(size) for size in input_shape)
        if len(shape) not in (3, 4) or min(shape) < 1:
            raise ValueError("input_shape must be (channels, height, width) or (batch, channels, height, width) "
                             f"of positive sizes, got {tuple(input_shape)!r}")
        self.input_shape = shape if len(shape) == 4 else (1, *shape)
        self.accelerator = load_accelerator(accelerator)
        self.metric = metric
        self.strict = strict
        self.model_space = copy.deepcopy(model_space)
        self._estimates: dict[tuple, Estimate] = {}

    def estimate(self, sample: Sample) -> Estimate:
        """The full estimate of ``sample`` (cached per sample)."""
        key = tuple(sorted((str(label), repr(value)) for label, value in sample.items()))
        if key not in self._estimates:
            model = self.model_space.freeze(sample)
            proto = export_onnx(model, torch.zeros(self.input_shape))
            self._estimates[key] = estimate(proto, self.accelerator, strict=self.strict)
            _logger.debug("%s of %s: %s", self.metric, sample, getattr(self._estimates[key], self.metric))
        return self._estimates[key]

    def profile(self, sample: Sample) -> float:
        """The configured metric of ``sample``."""
        return float(getattr(self.estimate(sample), self.metric))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(metric={self.metric!r}, accelerator={self.accelerator.name!r}, "
                f"input_shape={self.input_shape})")

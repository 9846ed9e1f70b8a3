"""Hardware cost of a PyTorch network: export to ONNX, then run the hardware estimator."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from hw_estimators import estimate

from .export import export_onnx
from .metrics import ESTIMATOR_METRICS

_logger = logging.getLogger(__name__)


def network_cost(model: nn.Module, input_shape: Sequence[int], *, accelerator: str = "capsacc",
                 measure_host: bool = False) -> dict[str, float]:
    """Estimated energy, latency and memory of ``model`` on ``accelerator`` for one image.

    Parameters
    ----------
    model
        The network (put in eval mode for the export, then restored).
    input_shape
        ``(channels, height, width)`` of one image.
    accelerator
        Built-in accelerator name or path of an accelerator file.
    measure_host
        Also measure onnxruntime latency on this CPU (``host_latency_ms``).
    """
    was_training = model.training
    model.eval()
    try:
        graph = export_onnx(model, torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    result = estimate(graph, accelerator=accelerator, measure_host=measure_host)
    metrics = {name: float(getattr(result, name)) for name in ESTIMATOR_METRICS}
    if measure_host and getattr(result, "host_latency_ms", None) is not None:
        metrics["host_latency_ms"] = float(result.host_latency_ms)
    return metrics


class SampleCostEstimator:
    """Callable from an NNI sample to the hardware cost of that architecture, cached.

    The NSGA-II strategy uses it to reject architectures that break a hardware budget
    before they are trained.

    Parameters
    ----------
    model_space
        The NNI model space (anything with ``freeze(sample)``).
    input_shape
        ``(channels, height, width)``; defaults to the space's ``input_shape`` attribute.
    accelerator
        Accelerator name or file.
    """

    def __init__(self, model_space: Any, input_shape: Sequence[int] | None = None, *,
                 accelerator: str = "capsacc") -> None:
        shape = input_shape if input_shape is not None else getattr(model_space, "input_shape", None)
        if shape is None:
            raise ValueError("input_shape is required: the model space has no input_shape attribute")
        self.model_space = model_space
        self.input_shape = tuple(int(s) for s in shape)
        self.accelerator = accelerator
        self._cache: dict[tuple, dict[str, float]] = {}

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, float]:
        key = tuple(sorted((str(k), repr(v)) for k, v in sample.items()))
        if key not in self._cache:
            frozen = self.model_space.freeze(dict(sample))
            network = frozen.executable_model() if hasattr(frozen, "executable_model") else frozen
            self._cache[key] = network_cost(network, self.input_shape, accelerator=self.accelerator)
            _logger.debug("estimated %s: %s", dict(sample), self._cache[key])
        return self._cache[key]

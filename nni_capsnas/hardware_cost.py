"""Hardware cost of a PyTorch network: exported to ONNX and estimated (what a trial reports), or,
before training, from the network's blocks traced on the meta device (the same figures, without exporting)."""

from __future__ import annotations

import logging
from typing import Any, Hashable, Mapping, Sequence

import torch
from torch import nn

from hw_estimators import estimate

from .block_cost import BlockCostEstimator
from .blocks import Block, network_signature
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
    """Callable from an NNI sample to the hardware cost of that architecture, before any training.

    The NSGA-II strategy uses it to reject architectures that break a hardware budget before they
    are trained, and to screen candidates. The figures are those of the ONNX path
    (:func:`network_cost`: export, then :func:`hw_estimators.estimate`), computed without exporting:
    the network is described as blocks (the space's ``cost_blocks(sample)``, see
    :mod:`nni_capsnas.blocks`; any other space is one block, its frozen network), each distinct
    block is traced once on the meta device and read as the exporter's graph, and the readings are
    composed (:class:`~nni_capsnas.block_cost.BlockCostEstimator`). A never-seen network made of
    known blocks costs well under a millisecond. A network that does not run on the meta device, or
    calls a torch function the trace cannot write as the exporter does, is exported and estimated as a
    trial would (with a warning, once per cause).

    Parameters
    ----------
    model_space
        The NNI model space (anything with ``freeze(sample)``; ``cost_blocks(sample)`` if it has one).
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
        self.blocks = BlockCostEstimator(accelerator)
        self._cache: dict[tuple, dict[str, float]] = {}
        self._networks: dict[Hashable, dict[str, float]] = {}
        self._untraceable: set[str] = set()

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, float]:
        """The figures of ``sample``'s network (remembered per sample, and per network: samples that differ
        only in genes the network ignores cost one estimate)."""
        key = _sample_key(sample)
        if key not in self._cache:
            blocks = self.blocks_of(sample)
            signature = network_signature(blocks)
            if signature not in self._networks:
                self._networks[signature] = self._figures(sample, blocks)
            self._cache[key] = self._networks[signature]
            _logger.debug("estimated %s: %s", dict(sample), self._cache[key])
        return dict(self._cache[key])

    @property
    def networks_estimated(self) -> int:
        """Distinct networks estimated through :meth:`__call__` so far."""
        return len(self._networks)

    def estimate(self, sample: Mapping[str, Any]) -> dict[str, float]:
        """The figures of ``sample``'s network, composed afresh: not looked up among the samples and networks
        seen before (the blocks read before are reused)."""
        return self._figures(sample, self.blocks_of(sample))

    def _figures(self, sample: Mapping[str, Any], blocks: Sequence[Block]) -> dict[str, float]:
        try:
            figures = self.blocks.figures(blocks, (1, *self.input_shape))
        except ValueError as error:
            reason = " ".join(str(error).split())
            if reason not in self._untraceable:
                _logger.warning("exporting to ONNX the networks that cannot be traced on the meta device: %s", reason)
                self._untraceable.add(reason)
            _logger.debug("exporting the network of %s to ONNX", dict(sample))
            return network_cost(self._frozen(sample), self.input_shape, accelerator=self.accelerator)
        return {name: figures[name] for name in ESTIMATOR_METRICS}

    def blocks_of(self, sample: Mapping[str, Any]) -> Sequence[Block]:
        """The network ``sample`` builds, as blocks: the space's ``cost_blocks``, else its frozen network."""
        describe = getattr(self.model_space, "cost_blocks", None)
        if callable(describe):
            return describe(dict(sample))
        return (Block.of(_frozen_network, space=self.model_space, sample=_Sample(sample)),)

    def _frozen(self, sample: Mapping[str, Any]) -> nn.Module:
        return _frozen_network(self.model_space, _Sample(sample))


def _sample_key(sample: Mapping[str, Any]) -> tuple:
    return tuple(sorted((str(k), repr(v)) for k, v in sample.items()))


class _Sample:
    """A sample as a block argument: hashed and compared by its values' reprs (values may be lists)."""

    def __init__(self, sample: Mapping[str, Any]) -> None:
        self.values = dict(sample)
        self.key = _sample_key(sample)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Sample) and other.key == self.key


def _frozen_network(space: Any, sample: _Sample) -> nn.Module:
    """The network ``space`` builds for ``sample``."""
    frozen = space.freeze(dict(sample.values))
    return frozen.executable_model() if hasattr(frozen, "executable_model") else frozen

"""Layers priced on one accelerator, each distinct layer once.

A search estimates thousands of networks that repeat the same layers (the same convolution at the
same size, the same routing step); :class:`LayerPricer` remembers each distinct layer's
:class:`~hw_estimators.cost.LayerCost`, keyed on the fields a cost model reads, so that a repeated
layer costs a dictionary lookup. :func:`~hw_estimators.estimate.cost_workload` stays the reference:
a pricer gives the same per-layer costs, without the per-layer table.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterable, Union

from .accelerator import Accelerator, load_accelerator
from .cost import LayerCost
from .workload import Layer, Workload

#: Layer fields that describe a layer without changing its cost (names and provenance).
DESCRIPTIVE_FIELDS: frozenset[str] = frozenset({"name", "op_type", "module", "scope", "detail"})
#: Layer fields a cost model may read: the key of a priced layer.
COST_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Layer)
                                     if field.name not in DESCRIPTIVE_FIELDS)


def cost_key(layer: Layer) -> tuple:
    """The values of :data:`COST_FIELDS` of ``layer``: equal keys, equal costs on any accelerator."""
    return tuple(getattr(layer, name) for name in COST_FIELDS)


@dataclass(frozen=True, kw_only=True)
class PricedLayers:
    """Totals of a sequence of layers on one accelerator.

    Parameters
    ----------
    energy_mj, latency_ms
        Sums of the layers' energies and latencies.
    weight_bytes
        Bytes of stored weights, at the accelerator's widths.
    macs
        Multiply-accumulates.
    layers
        Number of layers.
    """

    energy_mj: float
    latency_ms: float
    weight_bytes: float
    macs: int
    layers: int


class LayerPricer:
    """Prices layers on one accelerator, remembering the cost of every distinct layer.

    Parameters
    ----------
    accelerator
        A built-in accelerator name, a TOML file or an :class:`~hw_estimators.accelerator.Accelerator`.
    max_layers
        Distinct layers remembered; beyond it the memory starts afresh (a bound on its size, for
        searches that run for days).
    """

    def __init__(self, accelerator: Union[str, os.PathLike, Accelerator], *, max_layers: int = 100_000) -> None:
        if isinstance(max_layers, bool) or not isinstance(max_layers, int) or max_layers < 1:
            raise ValueError(f"max_layers must be a positive integer, got {max_layers!r}")
        self.accelerator = load_accelerator(accelerator)
        self.model = self.accelerator.cost_model()
        self.max_layers = max_layers
        self._costs: dict[tuple, LayerCost] = {}

    def __len__(self) -> int:
        """Distinct layers priced so far (and remembered)."""
        return len(self._costs)

    def layer_cost(self, layer: Layer) -> LayerCost:
        """The cost model's :class:`~hw_estimators.cost.LayerCost` of ``layer``."""
        key = cost_key(layer)
        cost = self._costs.get(key)
        if cost is None:
            if len(self._costs) >= self.max_layers:
                self._costs.clear()
            cost = self._costs[key] = self.model.layer_cost(layer)
        return cost

    def price(self, layers: Iterable[Layer]) -> PricedLayers:
        """Energy, latency, weight bytes and MACs of ``layers`` (run one after another)."""
        energy = latency = weight_bytes = 0.0
        macs = count = 0
        for layer in layers:
            cost = self.layer_cost(layer)
            energy += cost.energy_mj
            latency += cost.latency_ms
            weight_bytes += cost.weight_bytes
            macs += layer.macs
            count += 1
        return PricedLayers(energy_mj=energy, latency_ms=latency, weight_bytes=weight_bytes, macs=macs, layers=count)

    def activation_bytes(self, peak_elements: int, peak_bits: int) -> float:
        """Bytes the cost model needs for a peak of ``peak_elements`` live activations (``peak_bits`` bits)."""
        return self.model.activation_bytes(Workload(layers=(), peak_activation_elements=peak_elements,
                                                    peak_activation_bits=peak_bits))

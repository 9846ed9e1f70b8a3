"""What a cost model returns for one layer, and the interface every cost model follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Union

from .workload import Layer, Workload

Number = Union[int, float]


@dataclass(frozen=True, kw_only=True)
class LayerCost:
    """Modelled cost of one layer on an accelerator.

    Parameters
    ----------
    cycles
        Clock cycles the layer occupies the accelerator.
    latency_ms
        ``cycles`` times the clock period, in ms.
    energy_mj
        Energy in mJ.
    weight_bytes
        Bytes of weights the layer stores.
    bits
        Operand width the layer is costed at (0 when the model has no notion of width).
    details
        Model-specific intermediate figures (become extra table columns).
    """

    cycles: int
    latency_ms: float
    energy_mj: float
    weight_bytes: float
    bits: int = 0
    details: Mapping[str, Number] = field(default_factory=dict)


class CostModel(Protocol):
    """A cost model: prices layers and sizes activation memory."""

    def layer_cost(self, layer: Layer) -> LayerCost:
        """Cost of ``layer``."""

    def activation_bytes(self, workload: Workload) -> float:
        """Bytes needed to hold the workload's peak of live activations."""

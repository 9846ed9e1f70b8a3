"""NASCaps' cost model of a CapsAcc-like weight-stationary systolic array.

Every contraction is described by three numbers (see :class:`~hw_estimators.workload.StationaryMapping`):
``W`` elements held stationary, ``S`` partial sums per output and ``D`` data streamed per
weight tile. With ``rows x cols`` PEs of ``pe_width`` inputs and ``pe_stages`` stages:

- ``cycles = (rows + pe_stages - 1) * ceil(W / (cols * min(rows * pe_width, S))) + D``
- ``power = P_PE * rows * cols + n_acc * P_reg`` with ``n_acc = cols`` when ``D == 1``, else
  ``cols * max(S - rows * pe_width + 1, 1)`` accumulator registers (one per pending partial sum)
- ``energy = power * cycles * period``; memory: one ``weight_bits`` word per weight.

For a layer without an explicit mapping, ``W``, ``S`` and ``D`` are derived as NASCaps does for
its convolution layers: for a convolution with ``C`` input channels per group, kernel taps
``T`` and bias ``b``, ``W = (C * T + b) * C_out``, ``S = (T + b) * C`` and
``D = out_positions * C_in * images``; for a product in GEMM view, ``W = batch * (k + b) * n``,
``S = k + b`` and ``D = m``.

The array has one fixed word width, as in NASCaps: every layer is costed at ``weight_bits`` /
``activation_bits`` whatever width the graph computes at (float32 and int8 graphs cost the same).

Element-wise work is not part of NASCaps' model; here it runs on the array at
``elementwise_ops_per_cycle`` operations per cycle with the PEs' power (an extension, small
next to the contractions).

Because the model charges one 25-bit register per pending partial sum, its absolute energies are
far above a real chip's: treat them as NASCaps-comparable relative costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .cost import LayerCost
from .synthesis_tables import pe_power_mw, register_power_mw
from .workload import Layer, StationaryMapping, Workload, ceil_div, prod


@dataclass(frozen=True, kw_only=True)
class CapsAccConfig:
    """Parameters of the ``capsacc`` model (the ``[parameters]`` table of its TOML file).

    Parameters
    ----------
    rows, cols
        Systolic array size.
    pe_width
        Inputs per PE per cycle.
    pe_stages
        Pipeline stages per PE.
    period_ns
        Clock period in ns.
    accumulator_bits
        Width of the accumulator registers.
    weight_bits, activation_bits
        Word sizes of weights and activations in memory.
    pe_power_mw, register_power_mw
        Power of one PE and of one accumulator register; ``None`` looks them up in NASCaps'
        synthesis tables (45 nm) for ``period_ns``, ``pe_width``, ``pe_stages`` and
        ``accumulator_bits``.
    elementwise_ops_per_cycle
        Element-wise operations per cycle (``None``: one per PE, ``rows * cols``).
    """

    rows: int = 16
    cols: int = 16
    pe_width: int = 1
    pe_stages: int = 1
    period_ns: float = 3.0
    accumulator_bits: int = 25
    weight_bits: int = 8
    activation_bits: int = 8
    pe_power_mw: Optional[float] = None
    register_power_mw: Optional[float] = None
    elementwise_ops_per_cycle: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "pe_width", "pe_stages", "accumulator_bits", "weight_bits", "activation_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"capsacc parameter {name} must be a positive integer, got {value!r}")
        if not isinstance(self.period_ns, (int, float)) or self.period_ns <= 0:
            raise ValueError(f"capsacc parameter period_ns must be a positive number, got {self.period_ns!r}")
        for name in ("pe_power_mw", "register_power_mw"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"capsacc parameter {name} must be a non-negative number or absent, got {value!r}")
        ops = self.elementwise_ops_per_cycle
        if ops is not None and (isinstance(ops, bool) or not isinstance(ops, int) or ops < 1):
            raise ValueError(f"capsacc parameter elementwise_ops_per_cycle must be a positive integer, got {ops!r}")


def stationary_mapping(layer: Layer) -> StationaryMapping:
    """``W``, ``S``, ``D`` of ``layer``: its explicit mapping, or NASCaps' rules (module docstring)."""
    if layer.mapping is not None:
        return layer.mapping
    bias = int(layer.bias)
    if layer.kernel:
        channels = layer.in_channels // max(layer.groups, 1)
        taps = prod(layer.kernel)
        return StationaryMapping(weights=(channels * taps + bias) * layer.out_channels,
                                 sums_per_output=(taps + bias) * channels,
                                 data_per_weight=prod(layer.out_size) * layer.in_channels * layer.images)
    return StationaryMapping(weights=layer.batch * (layer.k + bias) * layer.n, sums_per_output=layer.k + bias,
                             data_per_weight=layer.m)


class CapsAccModel:
    """The ``capsacc`` cost model (see the module docstring).

    Parameters
    ----------
    config
        Array, clock and power parameters.
    """

    def __init__(self, *, config: CapsAccConfig) -> None:
        self.config = config
        self.pe_power_mw = (config.pe_power_mw if config.pe_power_mw is not None else
                            pe_power_mw(period_ns=config.period_ns, pe_width=config.pe_width,
                                        pe_stages=config.pe_stages, accumulator_bits=config.accumulator_bits))
        self.register_power_mw = (config.register_power_mw if config.register_power_mw is not None else
                                  register_power_mw(period_ns=config.period_ns, bits=config.accumulator_bits))
        self.elementwise_ops_per_cycle = config.elementwise_ops_per_cycle or config.rows * config.cols

    def layer_cost(self, layer: Layer) -> LayerCost:
        """Cost of ``layer``, by its kind (see :data:`COSTS`)."""
        return COSTS[layer.kind](self, layer)

    def activation_bytes(self, workload: Workload) -> float:
        """Bytes of the workload's peak activation elements, ``activation_bits`` each (NASCaps' fixed width)."""
        return workload.peak_activation_elements * self.config.activation_bits / 8

    def _finish(self, layer: Layer, cycles: int, power_mw: float, **details: float) -> LayerCost:
        config = self.config
        return LayerCost(cycles=cycles, latency_ms=cycles * config.period_ns * 1e-6,
                         energy_mj=power_mw * cycles * config.period_ns * 1e-9,
                         weight_bytes=layer.weights * config.weight_bits / 8,
                         bits=max(config.weight_bits, config.activation_bits), details={"power_mw": power_mw, **details})


def contraction_cost(model: CapsAccModel, layer: Layer) -> LayerCost:
    """NASCaps' cycles and power of a contraction layer."""
    config = model.config
    mapping = stationary_mapping(layer)
    weights, sums, data = mapping.weights, mapping.sums_per_output, mapping.data_per_weight
    depth = min(config.rows * config.pe_width, sums)
    loads = ceil_div(weights, config.cols * depth) if depth > 0 else 0
    cycles = (config.rows + config.pe_stages - 1) * loads + data
    if data == 1:
        accumulators = config.cols
    else:
        accumulators = config.cols * max(sums - config.rows * config.pe_width + 1, 1)
    power = model.pe_power_mw * config.rows * config.cols + accumulators * model.register_power_mw
    return model._finish(layer, cycles, power, W=weights, S=sums, D=data, accumulators=accumulators)


def elementwise_cost(model: CapsAccModel, layer: Layer) -> LayerCost:
    """Element-wise work at ``elementwise_ops_per_cycle`` with the array's PE power."""
    config = model.config
    cycles = ceil_div(layer.ops, model.elementwise_ops_per_cycle)
    power = model.pe_power_mw * config.rows * config.cols
    return model._finish(layer, cycles, power, W=0, S=0, D=0, accumulators=0)


#: Cost function per layer kind.
COSTS: dict[str, Callable[[CapsAccModel, Layer], LayerCost]] = {
    "conv": contraction_cost,
    "matmul": contraction_cost,
    "capsule_votes": contraction_cost,
    "routing": contraction_cost,
    "elementwise": elementwise_cost,
}

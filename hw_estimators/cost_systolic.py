"""A generic weight-stationary systolic array with per-operation and per-access energies.

Each contraction in GEMM view (``batch`` products of ``m x k`` by a stationary ``k x n``) is
tiled into ``batch * ceil(k / rows) * ceil(n / cols)`` tiles. Per tile the array loads the
stationary tile (``rows`` cycles), streams the ``m`` vectors and drains
(``m + rows + cols - 2`` cycles). Data movement:

- every weight is read once from DRAM and once from the on-chip SRAM (no weight reuse across
  inferences: weights do not stay on chip);
- streamed inputs are read from SRAM once per column tile, outputs written once, and partial
  sums of ``k`` longer than ``rows`` are read and written back ``ceil(k / rows) - 1`` times at
  accumulator width;
- a layer whose input and output activations exceed the SRAM spills them to DRAM.

Energy = MACs x (multiply + add) + element-wise ops x ALU op + SRAM bytes x SRAM energy per
byte + DRAM bytes x DRAM energy per byte. Latency = the larger of compute cycles and DRAM
transfer cycles, per layer, summed. Defaults (``accelerators/systolic.toml``) are Horowitz,
"Computing's energy problem", ISSCC 2014, 45 nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .cost import LayerCost
from .workload import Layer, ceil_div


@dataclass(frozen=True, kw_only=True)
class SystolicConfig:
    """Parameters of the ``systolic`` model (the ``[parameters]`` table of its TOML file).

    Parameters
    ----------
    rows, cols
        Systolic array size.
    clock_mhz
        Clock frequency.
    weight_bits, activation_bits, accumulator_bits
        Word sizes.
    mult_pj, add_pj
        Energy of one multiply (at ``weight_bits`` x ``activation_bits``) and one accumulate
        (at ``accumulator_bits``), in pJ.
    elementwise_pj
        Energy of one element-wise operation, in pJ.
    sram_kib
        On-chip activation buffer size.
    sram_pj_per_access, sram_bytes_per_access
        SRAM energy per access and access width.
    dram_pj_per_access, dram_bytes_per_access
        DRAM energy per access and access width.
    dram_bytes_per_cycle
        DRAM bandwidth in bytes per clock cycle.
    """

    rows: int = 16
    cols: int = 16
    clock_mhz: float = 500.0
    weight_bits: int = 8
    activation_bits: int = 8
    accumulator_bits: int = 32
    mult_pj: float = 0.2
    add_pj: float = 0.1
    elementwise_pj: float = 0.1
    sram_kib: float = 256.0
    sram_pj_per_access: float = 10.0
    sram_bytes_per_access: int = 8
    dram_pj_per_access: float = 2000.0
    dram_bytes_per_access: int = 8
    dram_bytes_per_cycle: float = 16.0

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "weight_bits", "activation_bits", "accumulator_bits",
                     "sram_bytes_per_access", "dram_bytes_per_access"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"systolic parameter {name} must be a positive integer, got {value!r}")
        for name in ("clock_mhz", "sram_kib", "dram_bytes_per_cycle"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"systolic parameter {name} must be a positive number, got {value!r}")
        for name in ("mult_pj", "add_pj", "elementwise_pj", "sram_pj_per_access", "dram_pj_per_access"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"systolic parameter {name} must be a non-negative number, got {value!r}")


class SystolicModel:
    """The ``systolic`` cost model (see the module docstring).

    Parameters
    ----------
    config
        Array, clock, word-size and energy parameters.
    """

    def __init__(self, *, config: SystolicConfig) -> None:
        self.config = config
        self.period_ns = 1e3 / config.clock_mhz
        self.sram_pj_per_byte = config.sram_pj_per_access / config.sram_bytes_per_access
        self.dram_pj_per_byte = config.dram_pj_per_access / config.dram_bytes_per_access
        self.sram_bytes = config.sram_kib * 1024

    def layer_cost(self, layer: Layer) -> LayerCost:
        """Cost of ``layer``, by its kind (see :data:`COSTS`)."""
        return COSTS[layer.kind](self, layer)

    def activation_bytes(self, elements: int) -> float:
        """Bytes of ``elements`` activations of ``activation_bits`` each."""
        return elements * self.config.activation_bits / 8

    def _spill_bytes(self, layer: Layer) -> float:
        activations = self.activation_bytes(layer.input_elements + layer.output_elements)
        return activations if activations > self.sram_bytes else 0.0

    def _finish(self, layer: Layer, *, compute_cycles: int, compute_pj: float, sram: float,
                dram: float) -> LayerCost:
        memory_cycles = math.ceil(dram / self.config.dram_bytes_per_cycle)
        cycles = max(compute_cycles, memory_cycles)
        energy_pj = compute_pj + sram * self.sram_pj_per_byte + dram * self.dram_pj_per_byte
        return LayerCost(cycles=cycles, latency_ms=cycles * self.period_ns * 1e-6, energy_mj=energy_pj * 1e-9,
                         weight_bytes=layer.weights * self.config.weight_bits / 8,
                         details={"compute_cycles": compute_cycles, "memory_cycles": memory_cycles,
                                  "sram_bytes": sram, "dram_bytes": dram,
                                  "compute_energy_mj": compute_pj * 1e-9})


def contraction_cost(model: SystolicModel, layer: Layer) -> LayerCost:
    """Tiles, data movement and energy of a contraction in GEMM view."""
    config = model.config
    weight_bytes, act_bytes = config.weight_bits / 8, config.activation_bits / 8
    acc_bytes = config.accumulator_bits / 8
    k_tiles, n_tiles = ceil_div(layer.k, config.rows), ceil_div(layer.n, config.cols)
    tiles = layer.batch * k_tiles * n_tiles
    compute_cycles = tiles * (2 * config.rows + layer.m + config.cols - 2) if layer.macs else 0
    stationary = layer.batch * layer.k * layer.n * (weight_bytes if layer.weights else act_bytes)
    streamed = layer.batch * layer.m * layer.k * n_tiles * act_bytes
    outputs = layer.batch * layer.m * layer.n
    partial_sums = 2 * max(k_tiles - 1, 0) * outputs * acc_bytes
    sram = stationary + streamed + outputs * act_bytes + partial_sums
    dram = layer.weights * weight_bytes + model._spill_bytes(layer)
    compute_pj = layer.macs * (config.mult_pj + config.add_pj)
    return model._finish(layer, compute_cycles=compute_cycles, compute_pj=compute_pj, sram=sram, dram=dram)


def elementwise_cost(model: SystolicModel, layer: Layer) -> LayerCost:
    """Element-wise work on a ``cols``-lane vector unit, operands through the SRAM."""
    config = model.config
    compute_cycles = ceil_div(layer.ops, config.cols)
    sram = model.activation_bytes(layer.input_elements + layer.output_elements)
    dram = layer.weights * config.weight_bits / 8 + model._spill_bytes(layer)
    return model._finish(layer, compute_cycles=compute_cycles, compute_pj=layer.ops * config.elementwise_pj,
                         sram=sram, dram=dram)


#: Cost function per layer kind.
COSTS: dict[str, Callable[[SystolicModel, Layer], LayerCost]] = {
    "conv": contraction_cost,
    "matmul": contraction_cost,
    "capsule_votes": contraction_cost,
    "routing": contraction_cost,
    "elementwise": elementwise_cost,
}

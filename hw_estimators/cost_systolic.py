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

Bit widths: every layer moves its data at the widths the graph gives it (``Layer.weight_bits``,
``activation_bits``, ``output_bits``; the native ``weight_bits`` / ``activation_bits`` where the
front end gives none, as for NASCaps chromosomes), and computes with the energies of the
narrowest declared precision that holds its operands: the native one (``mult_pj``, ``add_pj``,
``elementwise_pj``) or one of ``precisions`` (e.g. float32: Horowitz' 3.7 pJ multiply and 0.9 pJ
add); wider operands than any declared use the widest. So an int8 graph and its float32 original
differ by the arithmetic energies of the two widths and by 4x fewer bytes moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .cost import LayerCost
from .workload import Layer, Workload, ceil_div


def _number(owner: str, name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{owner} {name} must be a {kind} number, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class PrecisionEnergy:
    """Arithmetic energies of the array at one operand width.

    Parameters
    ----------
    bits
        Operand width (weights and activations) this entry prices.
    mult_pj, add_pj
        Energy of one multiply and one accumulate, in pJ.
    elementwise_pj
        Energy of one element-wise operation, in pJ.
    """

    bits: int
    mult_pj: float
    add_pj: float
    elementwise_pj: float

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"systolic precision bits must be a positive integer, got {self.bits!r}")
        owner = f"systolic precision ({self.bits} bits)"
        for name in ("mult_pj", "add_pj", "elementwise_pj"):
            object.__setattr__(self, name, _number(owner, name, getattr(self, name), positive=False))

    @classmethod
    def from_table(cls, table: Any, position: int) -> PrecisionEnergy:
        """An entry from one ``[[parameters.precisions]]`` table of an accelerator file."""
        if isinstance(table, PrecisionEnergy):
            return table
        expected = {"bits", "mult_pj", "add_pj", "elementwise_pj"}
        if not isinstance(table, Mapping) or set(table) != expected:
            keys = sorted(table) if isinstance(table, Mapping) else type(table).__name__
            raise ValueError(f"systolic parameter precisions[{position}] must be a table with keys "
                             f"{sorted(expected)}, got {keys}")
        return cls(**table)


#: Float32 operands in Horowitz' 45 nm figures: FP32 multiply 3.7 pJ, FP32 add 0.9 pJ.
FLOAT32_HOROWITZ = PrecisionEnergy(bits=32, mult_pj=3.7, add_pj=0.9, elementwise_pj=0.9)


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
    precisions
        Other operand widths the array computes at, with their energies (TOML: an array of
        ``[[parameters.precisions]]`` tables with ``bits``, ``mult_pj``, ``add_pj``,
        ``elementwise_pj``; default: float32 at :data:`FLOAT32_HOROWITZ`, ``[]`` for none).
        ``weight_bits`` / ``activation_bits`` with ``mult_pj``, ``add_pj`` and ``elementwise_pj``
        are the native one.
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
    precisions: tuple[PrecisionEnergy, ...] = (FLOAT32_HOROWITZ,)

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
        if not isinstance(self.precisions, (list, tuple)):
            raise ValueError(f"systolic parameter precisions must be an array of tables, "
                             f"got {type(self.precisions).__name__}")
        entries = tuple(PrecisionEnergy.from_table(table, position) for position, table in enumerate(self.precisions))
        widths = [entry.bits for entry in self.precision_table(entries)]
        if len(set(widths)) != len(widths):
            raise ValueError(f"systolic parameter precisions: each width may be declared once (the native width "
                             f"{self.native_bits} comes from weight_bits / activation_bits), got {widths}")
        object.__setattr__(self, "precisions", tuple(sorted(entries, key=lambda entry: entry.bits)))

    @property
    def native_bits(self) -> int:
        """Width of the native precision: the wider of ``weight_bits`` and ``activation_bits``."""
        return max(self.weight_bits, self.activation_bits)

    def precision_table(self, extra: tuple[PrecisionEnergy, ...] = ()) -> tuple[PrecisionEnergy, ...]:
        """The native precision and the declared ones (``extra`` by default ``precisions``), narrowest first."""
        native = PrecisionEnergy(bits=self.native_bits, mult_pj=self.mult_pj, add_pj=self.add_pj,
                                 elementwise_pj=self.elementwise_pj)
        return tuple(sorted((*(extra or self.precisions), native), key=lambda entry: entry.bits))


@dataclass(frozen=True)
class LayerWidths:
    """Bytes per element a layer moves, and the precision it computes at."""

    stationary: float
    inputs: float
    outputs: float
    precision: PrecisionEnergy


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
        self.precisions = config.precision_table()

    def precision(self, bits: int) -> PrecisionEnergy:
        """Energies for operands of ``bits``: the narrowest declared precision that holds them, else the
        widest declared."""
        return next((entry for entry in self.precisions if entry.bits >= bits), self.precisions[-1])

    def layer_cost(self, layer: Layer) -> LayerCost:
        """Cost of ``layer``, by its kind (see :data:`COSTS`)."""
        return COSTS[layer.kind](self, layer)

    def activation_bytes(self, workload: Workload) -> float:
        """Bytes of the workload's peak of live activations, each at its own width where the front end
        knows it, else ``activation_bits`` each."""
        if workload.peak_activation_bits:
            return workload.peak_activation_bits / 8
        return workload.peak_activation_elements * self.config.activation_bits / 8

    def widths(self, layer: Layer) -> LayerWidths:
        """Bytes per element of the layer's stationary operand, inputs and outputs, and its precision.

        Data wider than the widest declared precision is taken as converted to it (an array that
        computes in int8 only runs a float32 graph quantized).
        """
        config = self.config
        stationary = layer.weight_bits or (config.weight_bits if layer.weights or not layer.is_contraction
                                           else config.activation_bits)
        inputs = layer.activation_bits or config.activation_bits
        outputs = layer.output_bits or inputs
        operands = max(stationary, inputs) if layer.is_contraction else max(inputs, outputs)
        precision = self.precision(operands)
        widest = precision.bits
        return LayerWidths(stationary=min(stationary, widest) / 8, inputs=min(inputs, widest) / 8,
                           outputs=min(outputs, widest) / 8, precision=precision)

    def _spill_bytes(self, layer: Layer, widths: LayerWidths) -> float:
        activations = layer.input_elements * widths.inputs + layer.output_elements * widths.outputs
        return activations if activations > self.sram_bytes else 0.0

    def _finish(self, layer: Layer, widths: LayerWidths, *, compute_cycles: int, compute_pj: float, sram: float,
                dram: float) -> LayerCost:
        memory_cycles = math.ceil(dram / self.config.dram_bytes_per_cycle)
        cycles = max(compute_cycles, memory_cycles)
        energy_pj = compute_pj + sram * self.sram_pj_per_byte + dram * self.dram_pj_per_byte
        return LayerCost(cycles=cycles, latency_ms=cycles * self.period_ns * 1e-6, energy_mj=energy_pj * 1e-9,
                         weight_bytes=layer.weights * widths.stationary, bits=widths.precision.bits,
                         details={"compute_cycles": compute_cycles, "memory_cycles": memory_cycles,
                                  "sram_bytes": sram, "dram_bytes": dram,
                                  "compute_energy_mj": compute_pj * 1e-9})


def contraction_cost(model: SystolicModel, layer: Layer) -> LayerCost:
    """Tiles, data movement and energy of a contraction in GEMM view."""
    config = model.config
    widths = model.widths(layer)
    acc_bytes = config.accumulator_bits / 8
    k_tiles, n_tiles = ceil_div(layer.k, config.rows), ceil_div(layer.n, config.cols)
    tiles = layer.batch * k_tiles * n_tiles
    compute_cycles = tiles * (2 * config.rows + layer.m + config.cols - 2) if layer.macs else 0
    stationary = layer.batch * layer.k * layer.n * widths.stationary
    streamed = layer.batch * layer.m * layer.k * n_tiles * widths.inputs
    outputs = layer.batch * layer.m * layer.n
    partial_sums = 2 * max(k_tiles - 1, 0) * outputs * acc_bytes
    sram = stationary + streamed + outputs * widths.outputs + partial_sums
    dram = layer.weights * widths.stationary + model._spill_bytes(layer, widths)
    compute_pj = layer.macs * (widths.precision.mult_pj + widths.precision.add_pj)
    return model._finish(layer, widths, compute_cycles=compute_cycles, compute_pj=compute_pj, sram=sram, dram=dram)


def elementwise_cost(model: SystolicModel, layer: Layer) -> LayerCost:
    """Element-wise work on a ``cols``-lane vector unit, operands through the SRAM."""
    widths = model.widths(layer)
    compute_cycles = ceil_div(layer.ops, model.config.cols)
    sram = layer.input_elements * widths.inputs + layer.output_elements * widths.outputs
    dram = layer.weights * widths.stationary + model._spill_bytes(layer, widths)
    return model._finish(layer, widths, compute_cycles=compute_cycles,
                         compute_pj=layer.ops * widths.precision.elementwise_pj, sram=sram, dram=dram)


#: Cost function per layer kind.
COSTS: dict[str, Callable[[SystolicModel, Layer], LayerCost]] = {
    "conv": contraction_cost,
    "matmul": contraction_cost,
    "capsule_votes": contraction_cost,
    "routing": contraction_cost,
    "elementwise": elementwise_cost,
}

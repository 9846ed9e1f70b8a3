"""Energy, latency and memory of a network on an accelerator model.

:func:`estimate` reads an ONNX model, :func:`estimate_chromosome` a NASCaps chromosome; both
return an :class:`Estimate`. Results are cached on the model's weight-free structure and the
accelerator, so evaluating the same architecture twice (e.g. in a search) costs a lookup.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import onnx
import pandas as pd

from .accelerator import Accelerator, load_accelerator
from .chromosome import GeneLike, chromosome_workload, parse_chromosome
from .cost import LayerCost
from .host import measure_host_latency
from .model_source import ModelSource, load_model, structure
from .onnx_frontend import onnx_workload
from .workload import Workload

_logger = logging.getLogger(__name__)

AcceleratorLike = Union[str, os.PathLike, Accelerator]

#: Table columns, first the layer's own, then its modelled cost.
LAYER_COLUMNS = ("name", "kind", "bits", "op_type", "module", "scope", "shape", "detail", "macs", "weights",
                 "input_elements", "output_elements", "ops", "batch", "m", "k", "n", "weight_bits", "activation_bits",
                 "output_bits", "cycles", "latency_ms", "energy_mj", "weight_kib")
HOST_LATENCY_NOTE = "measured on this host's CPU with onnxruntime (median of {runs} runs), not modelled"


@dataclass(frozen=True, kw_only=True, eq=False)
class Estimate:
    """Modelled cost of one network on one accelerator (plus, optionally, a measured host latency).

    Attributes
    ----------
    accelerator
        Name of the accelerator.
    source
        ``"onnx"`` or ``"chromosome"``.
    energy_mj, latency_ms
        Modelled energy and latency of one inference (layers run one after another).
    weight_memory_kib
        Stored weights.
    activation_memory_kib
        Peak of simultaneously live activations.
    memory_kib
        ``weight_memory_kib + activation_memory_kib``.
    macs, params
        Multiply-accumulates and stored weights of the network.
    layers
        One row per workload layer (columns :data:`LAYER_COLUMNS` plus the cost model's own):
        ``kind`` is the canonical layer kind, ``bits`` the operand width the accelerator computes
        the layer at, ``weight_bits`` / ``activation_bits`` / ``output_bits`` the widths the graph
        gives (0: not given).
    unknown_ops
        Operator type costed as element-wise work for lack of a parser -> number of nodes
        (:func:`~hw_estimators.workload.format_unknown_ops` writes it as one line).
    host_latency_ms
        Measured latency on this machine's CPU with onnxruntime, if requested (``None`` otherwise).
    host_latency_runs
        Runs the measured median is taken over.
    """

    accelerator: str
    source: str
    energy_mj: float
    latency_ms: float
    memory_kib: float
    weight_memory_kib: float
    activation_memory_kib: float
    macs: int
    params: int
    layers: pd.DataFrame
    unknown_ops: Mapping[str, int] = dataclasses.field(default_factory=dict)
    host_latency_ms: Optional[float] = None
    host_latency_runs: int = 0

    def to_dict(self, *, per_layer: bool = True) -> dict[str, Any]:
        """Plain, JSON-serialisable data (layers as a list of records when ``per_layer``)."""
        result: dict[str, Any] = {
            "accelerator": self.accelerator, "source": self.source,
            "energy_mj": self.energy_mj, "latency_ms": self.latency_ms, "memory_kib": self.memory_kib,
            "weight_memory_kib": self.weight_memory_kib, "activation_memory_kib": self.activation_memory_kib,
            "macs": int(self.macs), "params": int(self.params), "unknown_ops": dict(self.unknown_ops),
            "host_latency_ms": self.host_latency_ms,
            "host_latency_note": (HOST_LATENCY_NOTE.format(runs=self.host_latency_runs)
                                  if self.host_latency_ms is not None else None),
        }
        if per_layer:
            result["layers"] = json.loads(self.layers.to_json(orient="records"))
        return result

    def to_json(self, *, per_layer: bool = True, indent: Optional[int] = None) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(per_layer=per_layer), indent=indent)

    def _copy(self, **changes: Any) -> Estimate:
        return dataclasses.replace(self, layers=self.layers.copy(), unknown_ops=dict(self.unknown_ops), **changes)


def cost_workload(workload: Workload, accelerator: AcceleratorLike = "capsacc") -> Estimate:
    """Price every layer of ``workload`` on ``accelerator`` and total the costs."""
    accelerator = load_accelerator(accelerator)
    model = accelerator.cost_model()
    costs: list[LayerCost] = [model.layer_cost(layer) for layer in workload.layers]
    rows = []
    for layer, cost in zip(workload.layers, costs):
        row = layer.as_row()
        row.update(bits=cost.bits, cycles=cost.cycles, latency_ms=cost.latency_ms, energy_mj=cost.energy_mj,
                   weight_kib=cost.weight_bytes / 1024, **dict(cost.details))
        rows.append(row)
    extra = sorted({key for cost in costs for key in cost.details})
    columns = list(LAYER_COLUMNS) + [key for key in extra if key not in LAYER_COLUMNS]
    table = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    weight_kib = sum(cost.weight_bytes for cost in costs) / 1024
    activation_kib = model.activation_bytes(workload) / 1024
    return Estimate(accelerator=accelerator.name, source=workload.source,
                    energy_mj=float(sum(cost.energy_mj for cost in costs)),
                    latency_ms=float(sum(cost.latency_ms for cost in costs)),
                    memory_kib=float(weight_kib + activation_kib), weight_memory_kib=float(weight_kib),
                    activation_memory_kib=float(activation_kib), macs=workload.macs, params=workload.params,
                    layers=table, unknown_ops=dict(workload.unknown_ops))


@functools.lru_cache(maxsize=128)
def _estimate_structure(serialized: bytes, accelerator: Accelerator, strict: bool) -> Estimate:
    """Estimate of a serialized weight-free model structure (cached: a pure function of its arguments)."""
    return cost_workload(onnx_workload(onnx.ModelProto.FromString(serialized), strict=strict), accelerator)


def estimate(model: ModelSource, accelerator: AcceleratorLike = "capsacc", *, strict: bool = False,
             measure_host: bool = False, host_runs: int = 10) -> Estimate:
    """Energy, latency and memory of an ONNX model on an accelerator.

    Parameters
    ----------
    model
        An :class:`onnx.ModelProto`, its serialized bytes, or the path of an ``.onnx`` file.
        Tensor shapes should be static (the batch size of the graph is the batch estimated).
    accelerator
        A built-in accelerator (``"capsacc"``, ``"systolic"``), a TOML file, or an
        :class:`~hw_estimators.accelerator.Accelerator`.
    strict
        Raise ``ValueError`` naming the operator type and node for operators the estimator
        does not know, instead of costing them as element-wise work (with a warning).
    measure_host
        Also measure the model's latency on this machine's CPU with onnxruntime
        (``host_latency_ms``, median of ``host_runs`` runs; never cached).
    host_runs
        Timed runs of the host measurement.

    Returns
    -------
    Estimate
        A fresh copy; cached results are never handed out for mutation.

    Raises
    ------
    FileNotFoundError
        If ``model`` or ``accelerator`` names a missing file.
    ValueError
        If ``model`` is not an ONNX model, the accelerator file is invalid, or (``strict``) an
        operator is unknown.
    """
    proto = load_model(model)
    accelerator = load_accelerator(accelerator)
    key = structure(proto).SerializeToString(deterministic=True)
    result = _estimate_structure(key, accelerator, bool(strict))._copy()
    if measure_host:
        target = model if isinstance(model, (str, os.PathLike)) else proto
        latency = measure_host_latency(target, runs=host_runs)
        result = dataclasses.replace(result, host_latency_ms=latency, host_latency_runs=host_runs)
    return result


@functools.lru_cache(maxsize=256)
def _estimate_gene(gene: tuple[tuple[int, ...], ...], accelerator: Accelerator) -> Estimate:
    return cost_workload(chromosome_workload([list(row) for row in gene]), accelerator)


def estimate_chromosome(gene: GeneLike, accelerator: AcceleratorLike = "capsacc") -> Estimate:
    """Energy, latency and memory of a NASCaps chromosome, the way NASCaps' estimator reads it.

    With ``accelerator="capsacc"`` this reproduces NASCaps' published figures (energy,
    latency, and ``weight_memory_kib`` = NASCaps' memory).

    Parameters
    ----------
    gene
        Nested lists as in a ``.chr`` file, or a parsed
        :class:`~hw_estimators.chromosome.Chromosome`.
    accelerator
        As for :func:`estimate`.
    """
    chromosome = parse_chromosome(gene)
    key = tuple(tuple(row) for row in chromosome.to_list())
    return _estimate_gene(key, load_accelerator(accelerator))._copy()


def clear_cache() -> None:
    """Forget every cached estimate (for benchmarks and tests)."""
    _estimate_structure.cache_clear()
    _estimate_gene.cache_clear()

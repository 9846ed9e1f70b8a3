"""Hardware estimators: energy, latency and memory of a network on a DNN accelerator model.

Reads ONNX graphs (any network) or NASCaps chromosomes; depends on onnx, numpy, pandas and
onnxruntime only, never on torch or NNI.

Examples
--------
>>> from hw_estimators import estimate_chromosome
>>> result = estimate_chromosome([[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8],
...                               [1, 14, 32, 8, 9, 2, 7, 10, 16], [-1], [1]])
>>> round(result.energy_mj, 1), round(result.latency_ms, 2), round(result.weight_memory_kib)
(88.8, 1.82, 8573)
"""

from .accelerator import MODELS, Accelerator, builtin_accelerators, load_accelerator
from .chromosome import Chromosome, GeneRow, RowType, chromosome_workload, parse_chromosome, read_chromosome
from .cost import LayerCost
from .cost_capsacc import CapsAccConfig, CapsAccModel
from .cost_systolic import PrecisionEnergy, SystolicConfig, SystolicModel
from .estimate import Estimate, clear_cache, cost_workload, estimate, estimate_chromosome
from .host import measure_host_latency
from .model_source import load_model
from .onnx_frontend import PARSERS, onnx_workload
from .workload import LAYER_KINDS, Layer, StationaryMapping, Workload, format_unknown_ops

__all__ = [
    "Accelerator", "CapsAccConfig", "CapsAccModel", "Chromosome", "Estimate", "GeneRow", "LAYER_KINDS", "Layer",
    "LayerCost", "MODELS", "PARSERS", "PrecisionEnergy", "RowType", "StationaryMapping", "SystolicConfig", "SystolicModel", "Workload",
    "builtin_accelerators", "chromosome_workload", "clear_cache", "cost_workload", "estimate", "estimate_chromosome",
    "format_unknown_ops",
    "load_accelerator", "load_model", "measure_host_latency", "onnx_workload", "parse_chromosome",
    "read_chromosome",
]

"""Measured (not modelled) latency of a model on this host's CPU, through onnxruntime."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np
import onnx
import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

_NUMPY_TYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.BOOL: np.bool_,
}


def measure_host_latency(model: Union[onnx.ModelProto, str, os.PathLike], *, runs: int = 10, warmup: int = 2,
                         threads: Optional[int] = None, seed: int = 0) -> float:
    """Median wall-clock latency in ms of one inference with onnxruntime's CPU provider.

    Inputs are random tensors of the graph's input shapes (dynamic dimensions taken as 1).

    Raises
    ------
    ValueError
        If onnxruntime cannot load the model (e.g. an IR version it does not support yet).

    Parameters
    ----------
    model
        The model, or the path of an ``.onnx`` file (external weight data is then found).
    runs
        Timed runs; the median is returned.
    warmup
        Untimed runs first.
    threads
        onnxruntime intra-op threads (``None``: its default).
    seed
        Seed of the random inputs.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs!r}, warmup={warmup!r}")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if isinstance(model, onnx.ModelProto):
        source: Union[bytes, str] = model.SerializeToString()
        graph = model.graph
    else:
        source = str(Path(model))
        graph = onnx.load(source, load_external_data=False).graph

    ort_failures = (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NotImplemented,
                    ort_errors.InvalidProtobuf, ort_errors.NoSuchFile, ort_errors.RuntimeException)
    try:
        session = onnxruntime.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except ort_failures as error:
        raise ValueError(f"model: onnxruntime cannot load it for the host measurement "
                         f"({' '.join(str(error).split())[:300]})") from error
    initializers = {initializer.name for initializer in graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1
                 for dim in tensor_type.shape.dim]
        dtype = _NUMPY_TYPES.get(tensor_type.elem_type, np.float32)
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    for _ in range(warmup):
        session.run(None, feeds)
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        timings.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(timings))

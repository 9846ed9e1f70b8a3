"""Reading ONNX models from paths, bytes or protos, and their weight-free structure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import onnx
from google.protobuf.message import DecodeError

from .onnx_ops import CLASS_HIERARCHY_KEY, NAME_SCOPES_KEY
from .workload import prod

ModelSource = Union[onnx.ModelProto, str, os.PathLike, bytes]

#: Integer initializers up to this many elements keep their data in the structure: shape
#: constants, which shape inference reads. Float initializers (weights) never affect shapes.
SMALL_INITIALIZER = 1024
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                          onnx.TensorProto.DOUBLE})


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def load_model(source: ModelSource) -> onnx.ModelProto:
    """An :class:`onnx.ModelProto` from a proto, serialized bytes or a file path.

    Weights stored as external data are not loaded (the estimate needs only their shapes).

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If the data is not an ONNX model (corrupt, truncated, another format).
    """
    if isinstance(source, onnx.ModelProto):
        model, origin = source, "model"
    elif isinstance(source, (bytes, bytearray)):
        model, origin = _parse_bytes(bytes(source), "model bytes"), "model bytes"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ValueError(f"model file {path} cannot be read: {_one_line(error)}") from error
        model, origin = _parse_bytes(data, f"model file {path}"), f"model file {path}"
    else:
        raise ValueError(f"model must be an onnx.ModelProto, serialized bytes or a path to an .onnx file, "
                         f"got {type(source).__name__}")
    _check_model(model, origin)
    return model


def _parse_bytes(data: bytes, origin: str) -> onnx.ModelProto:
    if not data:
        raise ValueError(f"{origin} is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as error:
        raise ValueError(f"{origin} is not a valid ONNX model (corrupt or truncated protobuf: "
                         f"{_one_line(error)})") from error
    return model


def _check_model(model: onnx.ModelProto, origin: str) -> None:
    """Cheap structural checks that reject data that parsed as protobuf but is no ONNX model."""
    if model.ir_version < 1 or not model.opset_import:
        raise ValueError(f"{origin} is not an ONNX model (no IR version or operator set)")
    if not model.graph.node:
        raise ValueError(f"{origin} is not an ONNX model with a graph (no nodes)")
    for index, node in enumerate(model.graph.node):
        # protobuf hands out string fields that are not UTF-8 as bytes (ONNX is proto2)
        texts = [node.op_type, node.domain, node.name, *node.input, *node.output,
                 *(attribute.name for attribute in node.attribute),
                 *(text for prop in node.metadata_props for text in (prop.key, prop.value))]
        if not all(isinstance(text, str) for text in texts):
            raise ValueError(f"{origin} is not a valid ONNX model (node {index} has a name or attribute that is "
                             f"not UTF-8 text)")
        if not node.op_type or not node.op_type.isidentifier():
            raise ValueError(f"{origin} is not a valid ONNX model (node {index} has operator type "
                             f"{node.op_type!r})")
    graph = model.graph
    names = [value.name for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)]
    if not all(isinstance(name, str) for name in [*names, *(opset.domain for opset in model.opset_import)]):
        raise ValueError(f"{origin} is not a valid ONNX model (a tensor name or operator-set domain is not "
                         f"UTF-8 text)")


def structure(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without weight values, exporter stack traces and other node metadata.

    Weights keep their name, type and shape only; small integer initializers (shape constants)
    keep their data, so shape inference still works. Everything the estimate depends on is kept, so the
    structure's serialization is a cache key for the estimate.
    """
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph, source = skeleton.graph, model.graph
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    for initializer in source.initializer:
        if (initializer.data_type not in _FLOAT_TYPES and prod(initializer.dims) <= SMALL_INITIALIZER
                and initializer.data_location != onnx.TensorProto.EXTERNAL):
            graph.initializer.append(initializer)
        else:
            tensor = graph.initializer.add()
            tensor.name = initializer.name
            tensor.data_type = initializer.data_type
            tensor.dims.extend(initializer.dims)
    keep = (CLASS_HIERARCHY_KEY, NAME_SCOPES_KEY)
    for node in source.node:
        copy = graph.node.add()
        copy.op_type = node.op_type
        copy.domain = node.domain
        copy.name = node.name
        copy.input.extend(node.input)
        copy.output.extend(node.output)
        copy.attribute.extend(node.attribute)
        for prop in node.metadata_props:
            if prop.key in keep:
                copy.metadata_props.add(key=prop.key, value=prop.value)
    return skeleton

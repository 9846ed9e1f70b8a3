"""Export a PyTorch model to ONNX for the hardware estimator."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import Sequence, Union

import onnx
import torch
from torch import nn

_logger = logging.getLogger(__name__)

MIN_OPSET = 18
ExampleInput = Union[torch.Tensor, Sequence[torch.Tensor]]


def export_onnx(model: nn.Module, example_input: ExampleInput, *, opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Export ``model`` with the dynamo exporter and return the ONNX model with shapes inferred.

    The model is exported in evaluation mode (and put back in its previous mode). Every node
    keeps its ``metadata_props``, in particular ``pkg.torch.onnx.class_hierarchy``, through
    which :mod:`hw_estimators` recognises capsule layers by their class. A model trained on a
    GPU is exported from a CPU copy (the example input is moved to the CPU too), so the graph
    does not depend on the training device and the model itself stays where it is.

    Parameters
    ----------
    model
        The network.
    example_input
        One input tensor, or a sequence of tensors (one per ``forward`` argument). Its shapes
        are the graph's static shapes, batch size included.
    opset
        ONNX operator set, at least 18.

    Returns
    -------
    onnx.ModelProto
        The model, with ``onnx.shape_inference.infer_shapes`` applied.

    Raises
    ------
    ValueError
        If an argument has the wrong type, or the exporter fails (e.g. the input does not fit the
        model); the message gives the cause.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_input, torch.Tensor):
        args: tuple[torch.Tensor, ...] = (example_input,)
    elif isinstance(example_input, Sequence) and example_input and all(
            isinstance(item, torch.Tensor) for item in example_input):
        args = tuple(example_input)
    else:
        raise ValueError("example_input must be a torch.Tensor or a non-empty sequence of tensors, "
                         f"got {type(example_input).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    shapes = [tuple(arg.shape) for arg in args]
    model, args = on_cpu(model), tuple(arg.cpu() for arg in args)
    was_training = model.training
    model.eval()
    captured = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(captured):
            program = torch.onnx.export(model, args, dynamo=True, opset_version=opset, verbose=False,
                                        external_data=False)
    except (torch.onnx.OnnxExporterError, RuntimeError, TypeError, ValueError) as error:
        cause = error.__cause__ or error
        reason = " ".join(str(cause).split())[:500]
        raise ValueError(f"cannot export {type(model).__name__} to ONNX with example_input of shape(s) {shapes}: "
                         f"{type(cause).__name__}: {reason}") from error
    finally:
        model.train(was_training)
    if captured.getvalue().strip():
        _logger.debug("torch.onnx.export output: %s", captured.getvalue().strip())
    if program is None:
        raise ValueError(f"torch.onnx.export returned no program for {type(model).__name__}")
    return onnx.shape_inference.infer_shapes(program.model_proto)


def on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself if all its parameters and buffers are on the CPU, else a CPU copy of it."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(tensor.device.type == "cpu" for tensor in tensors):
        return model
    _logger.debug("exporting a CPU copy of %s (its tensors are on %s)", type(model).__name__,
                  sorted({str(tensor.device) for tensor in tensors}))
    return copy.deepcopy(model).cpu()

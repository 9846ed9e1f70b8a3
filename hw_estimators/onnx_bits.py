"""Bit width at which each tensor of an ONNX graph is stored and computed on.

In a QDQ graph (``QuantizeLinear -> DequantizeLinear`` pairs around float operators, as written
by onnxruntime's ``quantize_static``) the float tensors between the pairs are a notation: an
integer accelerator keeps every tensor at its quantized width, requantizing in the output stage
of the layer that writes it. So:

- a ``DequantizeLinear`` output has the width of its quantized input (int8 -> 8 bits);
- a tensor read only by ``QuantizeLinear`` nodes has their output's width (requantized on write);
- any other tensor has the width of its element type (float32 -> 32 bits).

QLinearConv / QLinearMatMul / ConvInteger / MatMulInteger read and write integer tensors, whose
element types give their widths directly. No library answers this question: onnxruntime's QDQ
transformers rewrite the graph for its own kernels instead of describing it.
"""

from __future__ import annotations

from typing import Iterable, Optional

from .onnx_graph import GraphIndex
from .onnx_ops import ELEMENT_BITS

#: Width assumed for a tensor of unknown element type.
DEFAULT_BITS = 32


class TensorBits:
    """Bit width of a graph's tensors (see the module docstring), computed once for the whole graph.

    Parameters
    ----------
    index
        The graph's index.
    types
        ONNX element type of each tensor whose type is known.
    """

    def __init__(self, index: GraphIndex, types: dict[str, int]) -> None:
        self._index = index
        self._element_bits = {name: ELEMENT_BITS.get(element_type, DEFAULT_BITS) for name, element_type in types.items()}
        stored = dict(self._element_bits)
        quantized = {node.input[0] for node in index.nodes
                     if node.op_type == "QuantizeLinear" and node.input and node.input[0] and node.output}
        for name in quantized:
            width = self._requantized_width(name)
            if width is not None:
                stored[name] = width
        for node in index.nodes:  # graph order: a DequantizeLinear reads a width already settled
            if node.op_type == "DequantizeLinear" and node.input and node.input[0] and node.output and node.output[0]:
                stored[node.output[0]] = stored.get(node.input[0], DEFAULT_BITS)
        self._stored = stored

    def __call__(self, name: str) -> int:
        """Bits of one element of tensor ``name``."""
        return self._stored.get(name, DEFAULT_BITS)

    def of_type(self, name: str) -> int:
        """Bits of tensor ``name``'s element type (no QDQ reading)."""
        return self._element_bits.get(name, DEFAULT_BITS)

    def widest(self, names: Iterable[str]) -> int:
        """Largest width among ``names`` (0 for none)."""
        stored = self._stored
        return max((stored.get(name, DEFAULT_BITS) for name in names if name), default=0)

    def _requantized_width(self, name: str) -> Optional[int]:
        """The width of the ``QuantizeLinear`` outputs, if only such nodes read ``name``."""
        index = self._index
        readers = index.readers_of(name)
        if not readers or name in index.graph_outputs:
            return None
        widths = set()
        for reader in readers:
            node = index.nodes[reader]
            if node.op_type != "QuantizeLinear" or node.input[0] != name or not node.output:
                return None
            widths.add(self.of_type(node.output[0]))
        return max(widths)

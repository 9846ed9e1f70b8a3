"""Peak of simultaneously live activations, running an ONNX graph's nodes in graph order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping

from .onnx_graph import GraphIndex


@dataclass(frozen=True, kw_only=True)
class LiveProfile:
    """Activations alive at each step of running a graph's nodes in order.

    Parameters
    ----------
    initial
        ``(elements, bits)`` of the graph inputs, before any node runs.
    steps
        ``(elements, bits)`` alive once each node has written its outputs, before it frees anything.
    inputs
        Each graph input -> ``(elements, bits, position)``: its size, and the node after which it is
        freed (its last reader).
    """

    initial: tuple[int, int]
    steps: tuple[tuple[int, int], ...]
    inputs: dict[str, tuple[int, int, int]]

    def peak(self, kept_alive: Collection[str] = ()) -> tuple[int, int]:
        """Peak ``(elements, bits)``, with the graph inputs ``kept_alive`` alive to the end (as if a later
        part of a larger graph read them)."""
        kept = [self.inputs[name] for name in kept_alive if name in self.inputs]
        peak_elements, peak_bits = self.initial
        for position, (elements, bits) in enumerate(self.steps):
            for size, size_bits, freed in kept:
                if freed < position:
                    elements += size
                    bits += size_bits
            if elements > peak_elements:
                peak_elements = elements
            if bits > peak_bits:
                peak_bits = bits
        return peak_elements, peak_bits


def live_profile(index: GraphIndex, sizes: Mapping[str, int], *, roots: Mapping[str, str],
                 constants: Collection[str], bits: Callable[[str], int]) -> LiveProfile:
    """The :class:`LiveProfile` of a graph (see :func:`peak_live_activations` for the rules)."""
    end = len(index.nodes)
    last_use: dict[str, int] = {}
    for position, node in enumerate(index.nodes):
        for name in node.input:
            if name:
                last_use[roots.get(name, name)] = position
    for name in index.graph_outputs:
        last_use[roots.get(name, name)] = end
    # what each node frees once it has run: the activations it reads or writes for the last time
    releases: dict[int, list[str]] = {}
    live: dict[str, tuple[int, int]] = {}

    def allocate(name: str, written_at: int) -> tuple[int, int]:
        size = sizes.get(name, 0)
        live[name] = (size, size * bits(name))
        releases.setdefault(max(last_use.get(name, written_at), written_at), []).append(name)
        return live[name]

    elements = total_bits = 0
    inputs: dict[str, tuple[int, int, int]] = {}
    for name in index.graph_inputs:
        if name not in constants and name not in live:
            size, size_bits = allocate(name, 0)
            elements, total_bits = elements + size, total_bits + size_bits
            inputs[name] = (size, size_bits, max(last_use.get(name, 0), 0))
    initial = (elements, total_bits)
    steps = []
    for position, node in enumerate(index.nodes):
        for name in node.output:
            if name and name not in roots and name not in constants and name not in live:
                size, size_bits = allocate(name, position)
                elements, total_bits = elements + size, total_bits + size_bits
        steps.append((elements, total_bits))
        for name in releases.pop(position, ()):
            size, size_bits = live.pop(name)
            elements, total_bits = elements - size, total_bits - size_bits
    return LiveProfile(initial=initial, steps=tuple(steps), inputs=inputs)


def peak_live_activations(index: GraphIndex, sizes: Mapping[str, int], *, roots: Mapping[str, str],
                          constants: Collection[str], bits: Callable[[str], int]) -> tuple[int, int]:
    """Largest total of activations alive at once, in elements and in bits.

    A tensor lives from the node that writes it (graph inputs: from the start) to its last
    reader (graph outputs: to the end). Views (``roots``: Reshape, Identity, quantization
    boundaries, folded affine nodes, ...) share their source's memory and keep it alive while they
    are read; constants (weights, shape tensors) are not activations.

    Parameters
    ----------
    index
        The graph's index.
    sizes
        Elements of each tensor with a known shape.
    roots
        View -> the tensor whose memory it shares.
    constants
        Tensors known before inference.
    bits
        Bits per element of a tensor.

    Returns
    -------
    tuple of int
        Peak elements and peak bits (the two peaks may fall on different nodes).
    """
    return live_profile(index, sizes, roots=roots, constants=constants, bits=bits).peak()

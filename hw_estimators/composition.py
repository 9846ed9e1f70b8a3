"""Pieces of a network read on their own (:mod:`hw_estimators.fragments`), put back together.

The composed figures equal those of reading the whole graph, whose nodes are the pieces' nodes in
order, when no canonical rewrite crosses a boundary; :func:`compose` checks that and raises
:class:`UncleanBoundary` otherwise (the caller then reads the pieces around it as one). Per boundary
tensor:

- element-wise fusion: work writing the tensor merges with work reading it only when *every* node
  computing on it downstream is element-wise (:mod:`hw_estimators.onnx_fusion`), looking through
  pieces that only move data; a piece read on its own sees its output as a graph output and merges
  nothing across it;
- affine folding: a contraction writing the tensor absorbs a batch norm (or per-channel ``Mul``/``Add``)
  reading it (:mod:`hw_estimators.onnx_folding`).

Layers, MACs and stored weights then add up. The peak of live activations is the largest, over
pieces, of the piece's own peak (with the inputs that a later piece reads again kept alive to its end)
plus the activations alive across it: written before it, read after it, not read by it. That is
the peak the whole graph's sweep (:func:`~hw_estimators.onnx_memory.peak_live_activations`) finds,
since every state of that sweep falls inside one piece.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

from .fragments import FragmentReading
from .workload import Layer, Workload

#: :attr:`Wire.fragment` of a network input.
NETWORK_INPUT = -1


class UncleanBoundary(ValueError):
    """A canonical rewrite (element-wise fusion, affine folding) crosses a boundary between pieces."""


@dataclass(frozen=True)
class Wire:
    """Where a tensor comes from: an output of an earlier piece, or a network input.

    Parameters
    ----------
    fragment
        Index of the piece that writes it, or :data:`NETWORK_INPUT`.
    output
        Index among that piece's outputs (among the network inputs for :data:`NETWORK_INPUT`).
    """

    fragment: int
    output: int = 0


@dataclass(frozen=True, kw_only=True)
class Composition:
    """A network's figures from its pieces.

    Parameters
    ----------
    fragments
        The pieces, in execution order.
    peak_activation_elements, peak_activation_bits
        Peak of live activations of the whole network.
    params, macs
        Stored weights and multiply-accumulates of the whole network.
    unknown_ops
        Operator types costed as element-wise work for lack of a parser -> number of nodes.
    """

    fragments: tuple[FragmentReading, ...]
    peak_activation_elements: int
    peak_activation_bits: int
    params: int
    macs: int
    unknown_ops: dict[str, int]

    def layers(self) -> Iterator[Layer]:
        """Every piece's layers, in execution order."""
        for fragment in self.fragments:
            yield from fragment.layers

    def workload(self) -> Workload:
        """The whole network's workload (layers renamed ``"<piece>/<layer>"`` to keep names unique)."""
        layers = tuple(replace(layer, name=f"{position}/{layer.name}") for position, fragment in enumerate(self.fragments)
                       for layer in fragment.layers)
        return Workload(layers=layers, peak_activation_elements=self.peak_activation_elements,
                        peak_activation_bits=self.peak_activation_bits, params=self.params, source="onnx",
                        unknown_ops=dict(self.unknown_ops))


class _Memory:
    """The activation tensors crossing boundaries: who writes each, who reads it, how large it is."""

    def __init__(self) -> None:
        self.elements: list[int] = []
        self.bits: list[int] = []
        self.first: list[int] = []
        self.last: list[int] = []
        self.readers: list[list[tuple[int, int]]] = []

    def add(self, elements: int, bits: int, writer: int) -> int:
        self.elements.append(elements)
        self.bits.append(bits * elements)
        self.first.append(writer)
        self.last.append(writer)
        self.readers.append([])
        return len(self.elements) - 1


def compose(fragments: Sequence[FragmentReading], inputs: Sequence[Sequence[Wire]],
            outputs: Sequence[Wire]) -> Composition:
    """The figures of a network made of ``fragments`` run in order.

    Parameters
    ----------
    fragments
        The pieces, in execution order.
    inputs
        For each piece, where each of its inputs comes from (in the order the piece takes them).
    outputs
        The network's outputs.

    Raises
    ------
    UncleanBoundary
        If a canonical rewrite would cross a boundary (see the module docstring).
    ValueError
        If the wiring is inconsistent: a piece reading a later piece, a wrong number of inputs, a
        boundary tensor whose sizes differ on its two sides, a tensor read twice by one piece, or an
        output that nothing reads.
    """
    fragments = tuple(fragments)
    if len(inputs) != len(fragments):
        raise ValueError(f"inputs must give the wiring of each of the {len(fragments)} fragments, got {len(inputs)}")
    memory = _Memory()
    objects: dict[tuple[int, int], int] = {}
    fed: list[list[int]] = []
    for position, (fragment, wires) in enumerate(zip(fragments, inputs)):
        if len(wires) != len(fragment.inputs):
            raise ValueError(f"fragment {position} takes {len(fragment.inputs)} inputs, got {len(wires)} wires")
        feeding = []
        for slot, (wire, entry) in enumerate(zip(wires, fragment.inputs)):
            tensor = _source(wire, position, entry.elements, entry.bits, objects, memory)
            if memory.elements[tensor] != entry.elements:
                raise ValueError(f"fragment {position} input {slot} has {entry.elements} elements, its source "
                                 f"{wire} has {memory.elements[tensor]}")
            if tensor in feeding:
                raise ValueError(f"fragment {position} reads the same tensor twice ({wire})")
            feeding.append(tensor)
            memory.readers[tensor].append((position, slot))
            memory.last[tensor] = max(memory.last[tensor], position)
        fed.append(feeding)
        for slot, entry in enumerate(fragment.outputs):
            objects[(position, slot)] = (feeding[entry.alias_of] if entry.alias_of is not None
                                         else memory.add(entry.elements, entry.bits, position))
    network_outputs = set()
    for wire in outputs:
        key = (wire.fragment, wire.output)
        if key not in objects:
            raise ValueError(f"network output {wire} is not written by any fragment")
        network_outputs.add(objects[key])
        memory.last[objects[key]] = len(fragments)
    for (position, slot), tensor in objects.items():
        if position != NETWORK_INPUT and memory.last[tensor] == position and tensor not in network_outputs:
            raise ValueError(f"output {slot} of fragment {position} is read by no fragment and is no network output")
    _check_boundaries(fragments, objects, memory, network_outputs)
    peak_elements, peak_bits = _peak(fragments, fed, memory)
    unknown: Counter[str] = Counter()
    for fragment in fragments:
        unknown.update(fragment.workload.unknown_ops)
    return Composition(fragments=fragments, peak_activation_elements=peak_elements, peak_activation_bits=peak_bits,
                       params=sum(fragment.params for fragment in fragments),
                       macs=sum(fragment.macs for fragment in fragments), unknown_ops=dict(sorted(unknown.items())))


def _source(wire: Wire, reader: int, elements: int, bits: int, objects: dict[tuple[int, int], int],
            memory: _Memory) -> int:
    key = (wire.fragment, wire.output)
    if wire.fragment == NETWORK_INPUT:
        if key not in objects:
            objects[key] = memory.add(elements, bits, NETWORK_INPUT)
        return objects[key]
    if not 0 <= wire.fragment < reader:
        raise ValueError(f"fragment {reader} must read an earlier fragment or a network input, got {wire}")
    if key not in objects:
        raise ValueError(f"fragment {reader} reads {wire}, which that fragment does not write")
    return objects[key]


def _peak(fragments: tuple[FragmentReading, ...], fed: list[list[int]], memory: _Memory) -> tuple[int, int]:
    inputs = [tensor for tensor, first in enumerate(memory.first) if first == NETWORK_INPUT]
    peak_elements = sum(memory.elements[tensor] for tensor in inputs)
    peak_bits = sum(memory.bits[tensor] for tensor in inputs)
    for position, fragment in enumerate(fragments):
        feeding = fed[position]
        across = [tensor for tensor in range(len(memory.elements))
                  if memory.first[tensor] < position < memory.last[tensor] and tensor not in feeding]
        kept = [slot for slot, tensor in enumerate(feeding) if memory.last[tensor] > position]
        elements, bits = fragment.peak(kept)
        peak_elements = max(peak_elements, elements + sum(memory.elements[tensor] for tensor in across))
        peak_bits = max(peak_bits, bits + sum(memory.bits[tensor] for tensor in across))
    return peak_elements, peak_bits


def _downstream_fusable(tensor: int, fragments: tuple[FragmentReading, ...], objects: dict[tuple[int, int], int],
                        memory: _Memory, network_outputs: set[int], seen: set[int]) -> bool:
    """Whether every node computing on ``tensor`` in later pieces (through pieces that only move it) is
    fusable element-wise work, and at least one does."""
    if tensor in network_outputs or tensor in seen:
        return False
    seen.add(tensor)
    found = False
    for position, slot in memory.readers[tensor]:
        entry = fragments[position].inputs[slot]
        if entry.readers_fusable is False:
            return False
        found = found or entry.readers_fusable is True
        for output in entry.passes_to:
            onward = objects[(position, output)]
            if onward == tensor:  # a view of this very tensor: its readers are already listed
                continue
            if not _downstream_fusable(onward, fragments, objects, memory, network_outputs, seen):
                return False
            found = True
    return found


def _check_boundaries(fragments: tuple[FragmentReading, ...], objects: dict[tuple[int, int], int], memory: _Memory,
                      network_outputs: set[int]) -> None:
    for (position, slot), tensor in objects.items():
        if position == NETWORK_INPUT:
            continue
        entry = fragments[position].outputs[slot]
        if entry.alias_of is not None:
            continue
        readers = memory.readers[tensor]
        if entry.fold_host and any(fragments[reader].inputs[input_slot].affine_reader for reader, input_slot in readers):
            raise UncleanBoundary(f"output {slot} of fragment {position} is written by a contraction and read by an "
                                  "affine node after the boundary, which would fold into it")
        if entry.fusable_producer and _downstream_fusable(tensor, fragments, objects, memory, network_outputs, set()):
            raise UncleanBoundary(f"output {slot} of fragment {position} is written and read by element-wise work "
                                  "on both sides of the boundary, which would merge into one layer")

"""One piece of a network, read as a canonical graph of its own.

A search screens thousands of networks assembled from a few hundred distinct pieces (a
convolution block at some size, a DeepCaps cell, class capsules with some number of inputs).
Reading each distinct piece once and putting the readings together
(:mod:`hw_estimators.composition`) gives the figures of the whole network's reading without reading
the whole network, provided no canonical rewrite crosses a boundary between pieces. A
:class:`FragmentReading` keeps, besides its layers, what decides that at each boundary and what the
peak of live activations needs:

- which inputs element-wise work reads (a boundary tensor written by element-wise work and read only
  by element-wise work would merge two layers, :mod:`hw_estimators.onnx_fusion`), and which outputs
  such work writes;
- which outputs a contraction writes and which inputs an affine node reads (a batch norm after the
  boundary would fold into the convolution before it, :mod:`hw_estimators.onnx_folding`);
- the piece's own peak of live activations, with each subset of its inputs kept alive to its end
  (a skip connection read again after the piece), and which outputs are views of an input.

Written here, not delegated: the canonical reading is this package's own (no library splits a graph
reading into composable parts).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Union

import onnx

from .onnx_folding import AFFINE_RULES, PASS_THROUGH_OPS
from .onnx_frontend import (
    FOLD_HOSTS, FUSABLE, ROUTING_CAPSULE_CLASSES, CanonicalReading, read_canonical, weight_operand,
)
from .onnx_ops import is_default_domain
from .onnx_shapes import TensorTable
from .workload import Layer, Workload

#: Most inputs a fragment may have: its peaks are computed for every subset of them.
MAX_FRAGMENT_INPUTS = 4


@dataclass(frozen=True, kw_only=True)
class FragmentInput:
    """A graph input of a fragment: a tensor another piece of the network writes.

    Parameters
    ----------
    name, shape, elements, bits
        The tensor, its shape, elements and bits per element.
    readers_fusable
        Whether the nodes computing on it inside the fragment (looking through free nodes) are all
        fusable element-wise work (``True``), not all (``False``), or none at all (``None``).
    affine_reader
        Whether a node that a per-channel affine fold could absorb reads it directly (through
        ``Identity``/``Dropout``).
    passes_to
        Outputs of the fragment it reaches through free nodes only (data movement, views).
    """

    name: str
    shape: tuple[int, ...]
    elements: int
    bits: int
    readers_fusable: Optional[bool]
    affine_reader: bool
    passes_to: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class FragmentOutput:
    """A graph output of a fragment: a tensor another piece of the network reads.

    Parameters
    ----------
    name, shape, elements, bits
        The tensor, its shape, elements and bits per element.
    fusable_producer
        Whether fusable element-wise work writes it (through free nodes) that would merge with
        element-wise readers after the boundary.
    fold_host
        Whether a contraction with weights writes it (through ``Identity``/``Dropout``, or as the end
        of a fold already made) and could absorb an affine node after the boundary.
    alias_of
        Index of the input it is a view of (it shares that input's memory), if any.
    """

    name: str
    shape: tuple[int, ...]
    elements: int
    bits: int
    fusable_producer: bool
    fold_host: bool
    alias_of: Optional[int]


class FragmentReading:
    """The canonical reading of one piece of a network, and what putting pieces together needs.

    Build it with :meth:`of` (or :func:`read_fragment`). Holds no graph: its layers, totals, boundary
    tensors and peaks only.

    Parameters
    ----------
    workload
        The piece's workload, read on its own.
    inputs, outputs
        Its graph inputs and outputs, in the order the piece takes and returns them.
    peaks
        Peak live activations ``(elements, bits)`` for each set of input indices kept alive to the end.

    Attributes
    ----------
    macs : int
        Multiply-accumulates of the piece.
    """

    def __init__(self, *, workload: Workload, inputs: tuple[FragmentInput, ...], outputs: tuple[FragmentOutput, ...],
                 peaks: Mapping[frozenset[int], tuple[int, int]]) -> None:
        self.workload = workload
        self.inputs = inputs
        self.outputs = outputs
        self.macs = workload.macs
        self._peaks = dict(peaks)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The piece's layers, in graph order."""
        return self.workload.layers

    @property
    def params(self) -> int:
        """Stored weights of the piece."""
        return self.workload.params

    def peak(self, kept_alive: Iterable[int] = ()) -> tuple[int, int]:
        """Peak live activations ``(elements, bits)``, with the inputs ``kept_alive`` alive to the end."""
        return self._peaks[frozenset(kept_alive)]

    def __repr__(self) -> str:
        shapes = ", ".join(str(item.shape) for item in self.inputs)
        return f"{type(self).__name__}(inputs=[{shapes}], layers={len(self.layers)}, params={self.params})"

    @classmethod
    def of(cls, reading: CanonicalReading, *, outputs: Iterable[str]) -> FragmentReading:
        """The fragment reading of a graph read with :func:`~hw_estimators.onnx_frontend.read_canonical`.

        Parameters
        ----------
        reading
            The graph's canonical reading (its :meth:`~CanonicalReading.workload` is built here).
        outputs
            The graph's output names, in order.

        Raises
        ------
        ValueError
            If the graph has more than :data:`MAX_FRAGMENT_INPUTS` inputs.
        """
        inputs = reading.index.graph_inputs
        if len(inputs) > MAX_FRAGMENT_INPUTS:
            raise ValueError(f"a fragment has at most {MAX_FRAGMENT_INPUTS} inputs, got {len(inputs)}")
        outputs = tuple(outputs)
        workload = reading.workload()
        boundary = _Boundary(reading, outputs)
        peaks = {frozenset(kept): reading.peak_activations(inputs[position] for position in kept)
                 for size in range(len(inputs) + 1) for kept in itertools.combinations(range(len(inputs)), size)}
        return cls(workload=workload, inputs=tuple(boundary.input(name) for name in inputs),
                   outputs=tuple(boundary.output(name) for name in outputs), peaks=peaks)


class _Boundary:
    """What a graph's reading says about its inputs and outputs (see :class:`FragmentInput`, :class:`FragmentOutput`)."""

    def __init__(self, reading: CanonicalReading, outputs: tuple[str, ...]) -> None:
        self.reading = reading
        self.outputs = outputs
        index, context = reading.index, reading.context
        self.fusable = frozenset(member for member, parser in enumerate(reading.parsers)
                                 if parser in FUSABLE and member not in reading.free)
        self.hosts = frozenset(member for member, node in enumerate(index.nodes)
                               if reading.parsers[member] in FOLD_HOSTS
                               and context.is_weight(weight_operand(node)))
        self.fold_ends = frozenset(fold.output for fold in reading.folds.values())

    def _tensor(self, name: str) -> tuple[tuple[int, ...], int, int]:
        context = self.reading.context
        shape = context.shapes.get(name, ())
        return shape, context.size(name), context.bits(name)

    def input(self, name: str) -> FragmentInput:
        reading = self.reading
        readers, _ = reading.flow.readers(name)
        readers_fusable = None if not readers else readers <= self.fusable
        shape, elements, bits = self._tensor(name)
        return FragmentInput(name=name, shape=shape, elements=elements, bits=bits, readers_fusable=readers_fusable,
                             affine_reader=self._affine_reader(name), passes_to=self._passes_to(name))

    def output(self, name: str) -> FragmentOutput:
        inputs = self.reading.index.graph_inputs
        root = self.reading.roots.get(name, name)
        shape, elements, bits = self._tensor(name)
        return FragmentOutput(name=name, shape=shape, elements=elements, bits=bits,
                              fusable_producer=self._fusable_producer(name), fold_host=self._fold_host(name),
                              alias_of=inputs.index(root) if root in inputs else None)

    def _affine_reader(self, name: str) -> bool:
        index = self.reading.index
        pending, seen = [name], set()
        while pending:
            tensor = pending.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for reader in index.readers_of(tensor):
                node = index.nodes[reader]
                if node.op_type in PASS_THROUGH_OPS and node.output:
                    pending.append(node.output[0])
                elif node.op_type in AFFINE_RULES and is_default_domain(node.domain):
                    return True
        return False

    def _passes_to(self, name: str) -> tuple[int, ...]:
        """Outputs reached from ``name`` through free nodes only."""
        index, free = self.reading.index, self.reading.free
        targets = {output: position for position, output in enumerate(self.outputs)}
        reached: set[int] = set()
        pending, seen = [name], set()
        while pending:
            tensor = pending.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            if tensor in targets:
                reached.add(targets[tensor])
            for reader in index.readers_of(tensor):
                if reader in free:
                    pending.extend(output for output in index.nodes[reader].output if output)
        return tuple(sorted(reached))

    def _computing_writers(self, name: str) -> set[int]:
        """Non-free nodes that write ``name``, looking back through free nodes."""
        index, free, constants = self.reading.index, self.reading.free, self.reading.context.constants.constants
        writers: set[int] = set()
        pending, seen = [name], set()
        while pending:
            tensor = pending.pop()
            if tensor in seen or tensor in constants:
                continue
            seen.add(tensor)
            producer = index.producer.get(tensor)
            if producer is None:
                continue
            if producer in free:
                pending.extend(item for item in index.nodes[producer].input if item)
            else:
                writers.add(producer)
        return writers

    def _fusable_producer(self, name: str) -> bool:
        """Whether element-wise work writing ``name`` would join the readers after the boundary if they
        were all element-wise: every reader of every output of that work inside the fragment is."""
        flow, index = self.reading.flow, self.reading.index
        for writer in self._computing_writers(name) & self.fusable:
            joins = True
            for output in index.nodes[writer].output:
                if not output:
                    continue
                readers, escapes = flow.readers(output)
                if not readers <= self.fusable or (not readers and not escapes):
                    joins = False
                    break
            if joins:
                return True
        return False

    def _fold_host(self, name: str) -> bool:
        index = self.reading.index
        tensor = name
        while True:
            if tensor in self.fold_ends:
                return True
            producer = index.producer.get(tensor)
            if producer is None:
                return False
            node = index.nodes[producer]
            if producer in self.hosts and node.output and node.output[0] == tensor:
                return True
            if node.op_type in PASS_THROUGH_OPS and node.input:
                tensor = node.input[0]
                continue
            return False


def read_fragment(model: Union[onnx.ModelProto, str, os.PathLike], *, tensors: Optional[TensorTable] = None,
                  strict: bool = False, routing_classes: Iterable[str] = ROUTING_CAPSULE_CLASSES) -> FragmentReading:
    """The :class:`FragmentReading` of an ONNX graph (one piece of a network, exported or built on its own).

    Parameters
    ----------
    model
        The piece as an ONNX model (or the path of one).
    tensors
        Static shapes and element types of all its tensors, if known (shape resolution is skipped).
    strict, routing_classes
        As for :func:`~hw_estimators.onnx_frontend.onnx_workload`.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model), load_external_data=False)
    reading = read_canonical(model, strict=strict, routing_classes=routing_classes, tensors=tensors)
    return FragmentReading.of(reading, outputs=[value.name for value in model.graph.output])

"""Who writes and who reads each tensor of an ONNX graph.

:class:`GraphIndex` is built once per graph; the canonicalisation passes (constants, bit widths,
folding, element-wise fusion, peak memory) query it instead of scanning the node list again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Collection, Mapping

import onnx


@dataclass(frozen=True, kw_only=True)
class GraphIndex:
    """Producers and readers of a graph's tensors.

    Parameters
    ----------
    nodes
        The graph's nodes, in graph order (node indices refer to it).
    producer
        Tensor name -> index of the node that writes it.
    readers
        Tensor name -> indices of the nodes that read it, in graph order (once per node).
    graph_inputs, graph_outputs
        Names of the graph's (non-initializer) inputs and its outputs.
    initializers
        Initializer name -> tensor.
    """

    nodes: tuple[onnx.NodeProto, ...]
    producer: dict[str, int]
    readers: dict[str, tuple[int, ...]]
    graph_inputs: tuple[str, ...]
    graph_outputs: frozenset[str]
    initializers: dict[str, onnx.TensorProto]

    @classmethod
    def build(cls, graph: onnx.GraphProto) -> GraphIndex:
        """Index ``graph``."""
        nodes = tuple(graph.node)
        producer: dict[str, int] = {}
        readers: dict[str, list[int]] = defaultdict(list)
        for index, node in enumerate(nodes):
            for name in node.input:
                if name:
                    seen = readers[name]
                    if not seen or seen[-1] != index:
                        seen.append(index)
            for name in node.output:
                if name:
                    producer.setdefault(name, index)
        initializers = {initializer.name: initializer for initializer in graph.initializer}
        return cls(nodes=nodes, producer=producer, readers={name: tuple(found) for name, found in readers.items()},
                   graph_inputs=tuple(value.name for value in graph.input if value.name not in initializers),
                   graph_outputs=frozenset(value.name for value in graph.output), initializers=initializers)

    def readers_of(self, name: str) -> tuple[int, ...]:
        """Indices of the nodes reading tensor ``name``."""
        return self.readers.get(name, ())

    def alias_roots(self, sources: Mapping[int, str]) -> dict[str, str]:
        """Tensor -> the tensor whose memory it shares.

        Parameters
        ----------
        sources
            Index of each node whose first output is a view -> the input it is a view of.
        """
        roots: dict[str, str] = {}
        for position in sorted(sources):
            node = self.nodes[position]
            source = sources[position]
            if source and node.output and node.output[0]:
                roots[node.output[0]] = roots.get(source, source)
        return roots


class DataFlow:
    """Which nodes compute on each tensor, looking through free nodes; answers are memoised.

    Parameters
    ----------
    index
        The graph's index.
    transparent
        Free nodes (data movement, folded constants, quantization boundaries, folded affine
        nodes) that the data flow is followed through.
    """

    def __init__(self, index: GraphIndex, transparent: Collection[int]) -> None:
        self.index = index
        self.transparent = frozenset(transparent)
        self._known: dict[str, tuple[frozenset[int], bool]] = {}

    def readers(self, name: str) -> tuple[frozenset[int], bool]:
        """Nodes that compute on tensor ``name``.

        Returns
        -------
        readers
            Non-transparent nodes reached from ``name`` through chains of transparent nodes.
        escapes
            Whether ``name`` (or a transparent node's output derived from it) is a graph output.
        """
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = self._search(name)
        return known

    def _search(self, name: str) -> tuple[frozenset[int], bool]:
        index, transparent = self.index, self.transparent
        found: set[int] = set()
        escapes = False
        pending = [name]
        visited: set[str] = set()
        while pending:
            tensor = pending.pop()
            if tensor in visited:
                continue
            visited.add(tensor)
            escapes = escapes or tensor in index.graph_outputs
            for reader in index.readers.get(tensor, ()):
                if reader in transparent:
                    pending.extend(output for output in index.nodes[reader].output if output)
                else:
                    found.add(reader)
        return frozenset(found), escapes


"""Element-wise nodes merged into one layer by data flow, whatever order the exporter wrote them in.

A vector unit runs a chain of element-wise operations (a squash, a SiLU, a residual ``Add`` and
the ``Relu`` after it) in one pass: operations add up, intermediate results stay in registers.
The rule here depends only on the graph's data flow, not on node order or exporter metadata:

    an element-wise node joins the layer of the element-wise nodes that read its outputs when
    *all* the nodes computing on *each* of its outputs (looking through data movement and other
    free nodes) are element-wise, and no output is a graph output.

So a node whose result a contraction, an unknown operator or the graph's caller reads ends its
layer (a node with several outputs, such as ``DynamicQuantizeLinear``, does not chain two layers
together through one of them), and a layer's inputs and outputs are the tensors that cross its
boundary, each counted once. (Layer fusion across contractions, e.g. a ReLU in a convolution's output stage, is left out:
it would hide the element-wise work the accelerator models price.)

Hand-written: onnxruntime's fusions (``GeluFusion``, ``LayerNormFusion``, ...) replace known
patterns by contrib kernels for its CPU and GPU providers; they neither group arbitrary chains
nor describe the result as work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

from .onnx_graph import DataFlow


@dataclass(frozen=True, kw_only=True)
class GroupBoundary:
    """The tensors an element-wise layer reads and writes.

    Parameters
    ----------
    inputs
        External activations it reads, one per distinct memory (views of one tensor count once).
    outputs
        Tensors it writes that something outside the layer reads, that are graph outputs, or that
        nothing reads.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def elementwise_groups(flow: DataFlow, fusable: Collection[int]) -> list[tuple[int, ...]]:
    """Groups of ``fusable`` node indices merged by the rule of the module docstring.

    Parameters
    ----------
    flow
        The graph's data flow through its free nodes.
    fusable
        Element-wise nodes that may be merged.

    Returns
    -------
    list of tuple of int
        Each group's node indices in graph order; groups ordered by their first node.
    """
    fusable = set(fusable)
    parent = {node: node for node in fusable}

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for producer in fusable:
        joined: set[int] = set()
        for name in flow.index.nodes[producer].output:
            if not name:
                continue
            readers, escapes = flow.readers(name)
            if escapes or not readers or not readers <= fusable:
                joined.clear()
                break
            joined |= readers
        for reader in joined:
            first, second = find(producer), find(reader)
            if first != second:
                parent[max(first, second)] = min(first, second)
    groups: dict[int, list[int]] = {}
    for node in sorted(fusable):
        groups.setdefault(find(node), []).append(node)
    return sorted(tuple(members) for members in groups.values())


def group_boundary(flow: DataFlow, members: tuple[int, ...], *, roots: Mapping[str, str],
                   constants: Collection[str]) -> GroupBoundary:
    """The tensors crossing the boundary of the group ``members``.

    Parameters
    ----------
    flow
        The graph's data flow through its free nodes.
    members
        The group's node indices.
    roots
        Tensor -> the tensor whose memory it shares (views).
    constants
        Tensors known before inference (neither inputs nor outputs: weights are charged apart).
    """
    index = flow.index
    inside = set(members)
    seen_roots: set[str] = set()
    inputs: list[str] = []
    outputs: list[str] = []
    for member in members:
        node = index.nodes[member]
        for name in node.input:
            if not name or name in constants:
                continue
            root = roots.get(name, name)
            if index.producer.get(root) in inside or root in seen_roots:
                continue
            seen_roots.add(root)
            inputs.append(name)
        for name in node.output:
            if not name:
                continue
            readers, escapes = flow.readers(name)
            if escapes or not readers or not readers <= inside:
                outputs.append(name)
    return GroupBoundary(inputs=tuple(inputs), outputs=tuple(outputs))

"""Hardware figures of networks described as blocks: each distinct block traced once, the readings composed.

The figures are those of the ONNX path (:func:`~nni_capsnas.export.export_onnx` then
:func:`hw_estimators.estimate`) for the network the blocks describe: each block is traced on the
meta device into the graph the exporter writes for it (:func:`~nni_capsnas.onnx_tracing.trace_onnx`),
read as a canonical fragment (:mod:`hw_estimators.fragments`), and the fragments are composed
(:mod:`hw_estimators.composition`) and priced layer by layer (:class:`hw_estimators.layer_pricing.LayerPricer`).
Where a canonical rewrite would cross a block boundary, the whole network is traced as one block.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Hashable, Sequence, Union

import torch

from hw_estimators.accelerator import Accelerator
from hw_estimators.composition import Composition, UncleanBoundary, Wire, compose
from hw_estimators.fragments import FragmentReading, read_fragment
from hw_estimators.layer_pricing import LayerPricer, PricedLayers
from hw_estimators.workload import format_unknown_ops

from .blocks import NETWORK_INPUT, Block, BlockNetwork, check_blocks
from .onnx_tracing import trace_onnx

_logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
#: Figures of a network, named as the attributes of :class:`hw_estimators.Estimate`.
FIGURES: tuple[str, ...] = ("energy_mj", "latency_ms", "memory_kib", "weight_memory_kib", "activation_memory_kib",
                            "macs", "params")


class _Bounded(OrderedDict):
    """A dict that forgets its least recently used entries beyond ``limit`` (a cache owned by its estimator)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def recall(self, key: Hashable) -> object:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def remember(self, key: Hashable, value: object) -> None:
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


class BlockCostEstimator:
    """Energy, latency, memory, MACs and parameters of networks given as blocks (:mod:`nni_capsnas.blocks`).

    Parameters
    ----------
    accelerator
        A built-in accelerator name, a TOML file or an :class:`hw_estimators.Accelerator`.
    max_fragments
        Distinct blocks (at their input shapes) whose readings are remembered.

    Attributes
    ----------
    whole_network_reads : int
        Networks read as one block because a canonical rewrite crossed one of their block boundaries.
    """

    def __init__(self, accelerator: Union[str, os.PathLike, Accelerator] = "capsacc", *,
                 max_fragments: int = 20_000) -> None:
        if isinstance(max_fragments, bool) or not isinstance(max_fragments, int) or max_fragments < 1:
            raise ValueError(f"max_fragments must be a positive integer, got {max_fragments!r}")
        self.pricer = LayerPricer(accelerator)
        self._fragments = _Bounded(max_fragments)
        self.whole_network_reads = 0

    @property
    def accelerator(self) -> Accelerator:
        """The accelerator the figures are for."""
        return self.pricer.accelerator

    @property
    def known_fragments(self) -> int:
        """Distinct blocks read so far (and remembered)."""
        return len(self._fragments)

    def fragment(self, block: Block, input_shapes: Sequence[Shape]) -> FragmentReading:
        """The reading of ``block`` taking inputs of ``input_shapes`` (traced on first sight).

        Raises
        ------
        ValueError
            If the block's module cannot be traced with these inputs, or returns more than one tensor.
        """
        return self._priced(block, input_shapes)[0]

    def _priced(self, block: Block, input_shapes: Sequence[Shape]) -> tuple[FragmentReading, PricedLayers]:
        key = (block.key, tuple(tuple(shape) for shape in input_shapes))
        known = self._fragments.recall(key)
        if known is not None:
            return known  # type: ignore[return-value]
        with torch.device("meta"):
            module = block.build()
        traced = trace_onnx(module, input_shapes)
        if traced.unknown_functions:
            raise ValueError(f"{type(module).__name__} calls torch functions the trace cannot write as the exporter "
                             f"does: {format_unknown_ops(traced.unknown_functions)}")
        if len(traced.output_shapes) != 1:
            raise ValueError(f"a block returns one tensor; {type(module).__name__} returns {len(traced.output_shapes)}")
        reading = read_fragment(traced.model, tensors=traced.tensors)
        entry = (reading, self.pricer.price(reading.layers))
        self._fragments.remember(key, entry)
        return entry

    def read(self, blocks: Sequence[Block], input_shape: Sequence[int]) -> Composition:
        """The composition of the network ``blocks`` describe, for one input of ``input_shape`` (batch included)."""
        composition, _ = self._read(check_blocks(blocks), tuple(int(size) for size in input_shape))
        return composition

    def _read(self, blocks: tuple[Block, ...], input_shape: Shape) -> tuple[Composition, list[PricedLayers]]:
        shapes: dict[int, Shape] = {NETWORK_INPUT: input_shape}
        fragments, prices, wiring = [], [], []
        for position, block in enumerate(blocks):
            sources = block.sources(position)
            reading, price = self._priced(block, [shapes[source] for source in sources])
            shapes[position] = reading.outputs[0].shape
            fragments.append(reading)
            prices.append(price)
            wiring.append([Wire(source, 0) for source in sources])
        try:
            return compose(fragments, wiring, [Wire(len(blocks) - 1, 0)]), prices
        except UncleanBoundary as error:
            _logger.debug("reading %d blocks as one network: %s", len(blocks), error)
            self.whole_network_reads += 1
        whole, price = self._priced(Block.of(BlockNetwork, blocks=blocks), [input_shape])
        return compose([whole], [[Wire(NETWORK_INPUT, 0)]], [Wire(0, 0)]), [price]

    def figures(self, blocks: Sequence[Block], input_shape: Sequence[int]) -> dict[str, float]:
        """:data:`FIGURES` of the network ``blocks`` describe.

        Parameters
        ----------
        blocks
            The network (see :mod:`nni_capsnas.blocks`).
        input_shape
            Shape of its input, batch included (batch 1 for per-inference figures).

        Raises
        ------
        ValueError
            If the blocks are malformed or a block cannot be traced.
        """
        return self._figures(check_blocks(blocks), tuple(int(size) for size in input_shape))

    def _figures(self, blocks: tuple[Block, ...], input_shape: Shape) -> dict[str, float]:
        composition, prices = self._read(blocks, input_shape)
        weight_kib = sum(price.weight_bytes for price in prices) / 1024
        activation_kib = self.pricer.activation_bytes(composition.peak_activation_elements,
                                                      composition.peak_activation_bits) / 1024
        return {"energy_mj": float(sum(price.energy_mj for price in prices)),
                "latency_ms": float(sum(price.latency_ms for price in prices)),
                "memory_kib": float(weight_kib + activation_kib), "weight_memory_kib": float(weight_kib),
                "activation_memory_kib": float(activation_kib), "macs": float(composition.macs),
                "params": float(composition.params)}

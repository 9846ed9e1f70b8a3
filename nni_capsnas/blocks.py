"""A network described as blocks, for the pre-training hardware estimate.

A model space that can say which network a sample builds as a list of :class:`Block` s defines::

    def cost_blocks(self, sample) -> Sequence[Block]: ...

The blocks run in order; each reads the outputs of earlier blocks (or the network's input) and
returns one tensor; the last block's output is the network's output. Composed, they compute what
``self.freeze(sample)``'s ``forward`` computes, with the same modules: a block builds the module
the network uses at that place (or a part of the network's own forward, such as a concatenation).
:class:`~nni_capsnas.hardware_cost.SampleCostEstimator` traces each distinct block once and puts
the readings together, so that a new network made of known blocks is estimated in well under a
millisecond instead of an ONNX export of seconds.

Block boundaries should fall where no canonical rewrite of the estimate crosses them (after an
element-wise tail read by a convolution or a product, not between a convolution and its batch
norm, see :mod:`hw_estimators.composition`); the estimator checks every boundary and reads blocks
whose boundary is not clean as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional, Sequence

import torch
from torch import nn

#: :attr:`Block.inputs` entry for the network's input.
NETWORK_INPUT = -1


@dataclass(frozen=True)
class Block:
    """One block: a module factory, its arguments, and the blocks it reads.

    Build it with :meth:`of`. Equal factories and arguments build modules that compute the same
    function, so ``(factory, arguments)`` is the block's :attr:`key` (the input shapes complete it).

    Parameters
    ----------
    factory
        A module class or a function returning a module.
    arguments
        Its keyword arguments as sorted ``(name, value)`` pairs of hashable values.
    inputs
        Indices of the blocks whose outputs it takes, in ``forward`` argument order
        (:data:`NETWORK_INPUT` for the network's input); ``None`` for the block before it (the
        network's input for the first block).
    """

    factory: Callable[..., nn.Module]
    arguments: tuple[tuple[str, Hashable], ...]
    inputs: Optional[tuple[int, ...]] = None

    @classmethod
    def of(cls, factory: Callable[..., nn.Module], /, *, inputs: Optional[Sequence[int]] = None,
           **arguments: Hashable) -> Block:
        """The block ``factory(**arguments)`` reading ``inputs``.

        Raises
        ------
        ValueError
            If an argument is not hashable.
        """
        for name, value in arguments.items():
            try:
                hash(value)
            except TypeError:
                raise ValueError(f"block argument {name} of {getattr(factory, '__qualname__', factory)} must be "
                                 f"hashable, got {type(value).__name__}") from None
        return cls(factory, tuple(sorted(arguments.items())), tuple(inputs) if inputs is not None else None)

    @property
    def key(self) -> Hashable:
        """What determines the block's module: its factory and arguments."""
        return self.factory, self.arguments

    def build(self) -> nn.Module:
        """The block's module (built on the current default device)."""
        return self.factory(**dict(self.arguments))

    def sources(self, position: int) -> tuple[int, ...]:
        """Indices of the blocks (or :data:`NETWORK_INPUT`) that the block at ``position`` reads."""
        if self.inputs is not None:
            return self.inputs
        return (position - 1,) if position > 0 else (NETWORK_INPUT,)


def check_blocks(blocks: Sequence[Block]) -> tuple[Block, ...]:
    """``blocks`` as a tuple, after checking that each reads only earlier blocks or the network input.

    Raises
    ------
    ValueError
        Naming the first block that reads itself, a later block or nothing, or an empty list.
    """
    blocks = tuple(blocks)
    if not blocks:
        raise ValueError("a network needs at least one block, got none")
    for position, block in enumerate(blocks):
        if not isinstance(block, Block):
            raise ValueError(f"block {position} must be a Block, got {type(block).__name__}")
        sources = block.sources(position)
        if not sources or any(not NETWORK_INPUT <= source < position for source in sources):
            raise ValueError(f"block {position} ({getattr(block.factory, '__qualname__', block.factory)}) must read "
                             f"earlier blocks or the network input ({NETWORK_INPUT}), got {sources}")
    return blocks


def network_signature(blocks: Sequence[Block]) -> Hashable:
    """What determines the network ``blocks`` describe: each block's key and the blocks it reads."""
    return tuple((block.key, block.sources(position)) for position, block in enumerate(blocks))


class BlockNetwork(nn.Module):
    """The network the blocks describe, as one module (blocks run in order, wired by their inputs).

    Parameters
    ----------
    blocks
        The blocks (see :func:`check_blocks`).
    """

    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        self.descriptions = check_blocks(blocks)
        self.blocks = nn.ModuleList(block.build() for block in self.descriptions)

    def forward(self, x: torch.Tensor) -> Any:
        outputs: dict[int, Any] = {NETWORK_INPUT: x}
        for position, (description, module) in enumerate(zip(self.descriptions, self.blocks)):
            outputs[position] = module(*(outputs[source] for source in description.sources(position)))
        return outputs[len(self.blocks) - 1]

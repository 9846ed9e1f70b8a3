"""The PyTorch network a NASCaps chromosome describes.

Semantics follow NASCaps' network builder (``nsga/wrapper.py`` of github.com/ehw-fit/nascaps):

- the input is resized by the chromosome's factor (bilinear; NASCaps resized the data set);
- a convolution row is a "same"-padded convolution followed by batch normalisation (no
  activation, as in NASCaps);
- a capsule row that is not last is a layer of primary capsules ("same" padding);
- the last capsule row is class capsules with dynamic routing (3 iterations) over all capsules
  of the previous grid;
- a DeepCaps cell row is a :class:`~nni_capsnas.modules.CapsCell`; the cell before the last row
  has the 3D-routing skip branch;
- the last cell row flattens the last cell's capsules and those of the extra skip connection's
  source cell, concatenates them and routes them to the class capsules.

Departures from NASCaps' Keras code, all deliberate: capsules are squashed one vector at a time
(NASCaps squashed each position's whole channel vector after a primary layer), and the class
capsules read capsules of the dimension the chromosome states (NASCaps reshaped to vectors of
``in_channels`` elements; a convolution row's output counts as ``out_channels`` capsules of
``out_caps_dim``); the decoder is Sabour's fully connected one. None of these change the number
of multiply-accumulates or weights of the votes. As in NASCaps, a convolution's output enters
the first cell as ``C`` capsules of dimension 1 (``ConvertToCaps``), and with ``extra_skip == -1``
the last cell's capsules reach the class capsules twice.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import torch
from torch import nn

from hw_estimators.chromosome import (
    Chromosome, GeneLike, RowType, class_input_capsules, extra_skip_row, parse_chromosome, read_chromosome,
)
from nni_capsnas.modules import CapsCell, ClassCaps, FlattenCaps, PrimaryCaps, ReconstructionDecoder

from .._geometry import same_size

_logger = logging.getLogger(__name__)


class MapToCapsules(nn.Module):
    """``(batch, C, H, W)`` feature map -> ``(batch, C / dim, dim, H, W)`` capsule grid.

    Parameters
    ----------
    dim
        Capsule dimension; 1 (NASCaps' ``ConvertToCaps``) makes every channel a capsule.
    """

    def __init__(self, *, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        return x.reshape(batch, channels // self.dim, self.dim, height, width)


class CapsulesToMap(nn.Module):
    """``(batch, caps, dim, H, W)`` capsule grid -> ``(batch, caps * dim, H, W)`` feature map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, caps, dim, height, width = x.shape
        return x.reshape(batch, caps * dim, height, width)


class NASCapsNetwork(nn.Module):
    """A network built from a NASCaps chromosome (see the module docstring).

    ``forward`` takes images of :attr:`input_shape` and returns the class capsules
    ``(batch, num_classes, class_dim)``.

    Parameters
    ----------
    chromosome
        The parsed chromosome.
    num_classes
        Number of classes (default: the last row's ``out_channels``, as NASCaps overrides it
        with the data set's).
    iterations
        Routing iterations of the class capsules and of the 3D skip branch.
    decoder
        Add a reconstruction decoder (``self.decoder``) for the training loss.
    """

    def __init__(self, *, chromosome: Chromosome, num_classes: Optional[int] = None, iterations: int = 3,
                 decoder: bool = True) -> None:
        super().__init__()
        rows = chromosome.rows
        num_classes = chromosome.num_classes if num_classes is None else num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.chromosome = chromosome
        self.input_shape = chromosome.input_shape
        channels, size, _ = self.input_shape
        self.resize = (nn.Upsample(scale_factor=chromosome.resize, mode="bilinear", align_corners=False)
                       if chromosome.resize > 1 else nn.Identity())
        size *= chromosome.resize
        stages: list[nn.Module] = []
        # the current tensor: a feature map of `channels` channels, or a capsule grid `grid`;
        # a convolution row's map is also viewed as (out_channels, out_caps_dim) capsules
        grid: Optional[tuple[int, int]] = None
        map_view = (channels, 1)
        for index, row in enumerate(rows[:-1]):
            adapter: list[nn.Module] = []
            if row.type in (RowType.CONV, RowType.CAPS) and grid is not None:
                adapter, channels, grid = [CapsulesToMap()], grid[0] * grid[1], None
            elif row.type == RowType.CELL and grid is None:
                adapter, grid = [MapToCapsules(dim=1)], (channels, 1)
            if row.type == RowType.CONV:
                out = row.out_channels * row.out_caps_dim
                layer: nn.Module = nn.Sequential(
                    *adapter, nn.Conv2d(channels, out, row.kernel, stride=row.stride, padding=row.kernel // 2),
                    nn.BatchNorm2d(out))
                channels, map_view = out, (row.out_channels, row.out_caps_dim)
            elif row.type == RowType.CAPS:
                layer = nn.Sequential(*adapter, PrimaryCaps(
                    in_channels=channels, out_caps=row.out_channels, caps_dim=row.out_caps_dim,
                    kernel_size=row.kernel, stride=row.stride, padding=row.kernel // 2))
                grid = (row.out_channels, row.out_caps_dim)
            else:
                layer = nn.Sequential(*adapter, CapsCell(
                    in_caps=grid[0], in_dim=grid[1], out_caps=row.out_channels, out_dim=row.out_caps_dim,
                    kernel_size=row.kernel, stride=row.stride, routing_skip=index == len(rows) - 2,
                    iterations=iterations))
                grid = (row.out_channels, row.out_caps_dim)
            size = same_size(size, row.stride)
            if size != row.out_size:
                raise ValueError(f"chromosome row {index}: out_size {row.out_size} does not match the computed "
                                 f"spatial size {size} (\"same\" padding, stride {row.stride})")
            stages.append(layer)
        self.stages = nn.ModuleList(stages)
        last = rows[-1]
        if last.type == RowType.CONV:
            raise ValueError("the last chromosome row must be capsules (type 1) or a DeepCaps cell (type 2), "
                             "got a convolution (type 0)")
        if grid is None:
            self.to_grid: nn.Module = MapToCapsules(dim=map_view[1])
            grid = map_view
        else:
            self.to_grid = nn.Identity()
        self.flatten = FlattenCaps()
        self.skip_stage = extra_skip_row(chromosome) if chromosome.is_deepcaps else None
        in_caps, in_dim = class_input_capsules(chromosome)
        if not chromosome.is_deepcaps:
            built = (size * size * grid[0], grid[1])
            if built != (in_caps, in_dim):
                raise ValueError(f"chromosome row {len(rows) - 1}: the class capsules read {in_caps} capsules of "
                                 f"dimension {in_dim} (in_size^2 * in_channels, in_caps_dim), but the previous "
                                 f"layers produce {built[0]} of dimension {built[1]}")
        self.class_caps = ClassCaps(in_caps=in_caps, in_dim=in_dim, out_caps=num_classes,
                                    out_dim=last.out_caps_dim, iterations=iterations)
        self.decoder = (ReconstructionDecoder(num_caps=num_classes, caps_dim=last.out_caps_dim,
                                              output_shape=self.input_shape) if decoder else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        if self.skip_stage is None:
            return self.class_caps(self.flatten(self.to_grid(x)))
        capsules = torch.cat([self.flatten(x), self.flatten(outputs[self.skip_stage])], dim=1)
        return self.class_caps(capsules)


def from_chromosome(gene: GeneLike, *, num_classes: Optional[int] = None, iterations: int = 3,
                    decoder: bool = True) -> NASCapsNetwork:
    """Build the network a NASCaps chromosome describes.

    Parameters
    ----------
    gene
        Nested lists as in a ``.chr`` file, or a parsed
        :class:`~hw_estimators.chromosome.Chromosome`.
    num_classes
        Override the last row's ``out_channels``.
    iterations
        Routing iterations (NASCaps: 3).
    decoder
        Add a reconstruction decoder.

    Raises
    ------
    ValueError
        If the chromosome is malformed or its sizes are inconsistent.

    Examples
    --------
    >>> net = from_chromosome([[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8],
    ...                        [1, 14, 32, 8, 9, 2, 7, 10, 16], [-1], [1]])
    >>> net(torch.zeros(2, *net.input_shape)).shape
    torch.Size([2, 10, 16])
    """
    return NASCapsNetwork(chromosome=parse_chromosome(gene), num_classes=num_classes, iterations=iterations,
                          decoder=decoder)


def load_chromosome(path: Union[str, os.PathLike]) -> Chromosome:
    """Read a NASCaps ``.chr`` file (JSON) and validate it.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not JSON or not a valid chromosome; the message names the file and the problem.
    """
    return read_chromosome(path)

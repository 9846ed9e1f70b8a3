"""NASCaps chromosomes: parsing, and the workload NASCaps' own estimator sees in them.

A chromosome is a JSON list: layer rows
``[type, in_size, in_channels, in_caps_dim, kernel, stride, out_size, out_channels, out_caps_dim]``
(type 0 = convolution, 1 = capsule layer: primary capsules, or class capsules when last,
2 = DeepCaps cell: the last one is flatten + class capsules), then ``[extra_skip]`` and
``[input_resize]`` (1 = none, 2 = x2).

:func:`chromosome_workload` re-implements how NASCaps' estimator (``nsga/hw_estimator.py``,
``parse_genotype``, with the layer models of ``hwacc/``) turns the rows into costed layers, so
that ``capsacc`` reproduces its published figures:

- a convolution row is one convolution layer;
- a capsule row that is not last is one primary-capsule (convolution) layer;
- the last capsule row is a class layer followed by five routing "sum" layers;
- a DeepCaps cell is four capsule convolutions: the first reads ``in_caps_dim``-dimensional
  capsules, the others ``out_caps_dim``-dimensional ones (all with the row's ``in_channels``);
  the cell before the last row has three capsule convolutions reading ``in_caps_dim``-dimensional
  capsules plus a 3D convolutional capsule layer (kernel ``k^3``) instead;
- the last cell row is three (routing sum, routing update) pairs followed by a class layer.

NASCaps' formulas per layer type are kept in each layer's explicit
:class:`~hw_estimators.workload.StationaryMapping`; each layer's GEMM view (and so its MACs)
describes the network :func:`search_spaces.nascaps.from_chromosome` builds.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .workload import Layer, StationaryMapping, Workload

ROW_LENGTH = 9
ROW_FIELDS = ("type", "in_size", "in_channels", "in_caps_dim", "kernel", "stride", "out_size", "out_channels",
              "out_caps_dim")
#: Routing "sum" layers NASCaps charges after the class layer of a capsule (CapsNet-style) network.
CAPSNET_ROUTING_SUMS = 5
#: (sum, update) pairs NASCaps charges before the class layer of a DeepCaps-style network.
DEEPCAPS_ROUTING_PAIRS = 3


class RowType(enum.IntEnum):
    """Type of a chromosome row."""

    CONV = 0
    CAPS = 1
    CELL = 2


@dataclass(frozen=True, kw_only=True)
class GeneRow:
    """One layer row of a chromosome (field names as in the module docstring)."""

    type: RowType
    in_size: int
    in_channels: int
    in_caps_dim: int
    kernel: int
    stride: int
    out_size: int
    out_channels: int
    out_caps_dim: int

    def to_list(self) -> list[int]:
        """The row as NASCaps writes it."""
        return [int(getattr(self, name)) for name in ROW_FIELDS]


@dataclass(frozen=True, kw_only=True)
class Chromosome:
    """A parsed NASCaps chromosome.

    Parameters
    ----------
    rows
        Layer rows, at least one.
    extra_skip
        NASCaps' extra skip connection (-1: none); see :func:`extra_skip_row`.
    resize
        Input resize factor (1 or 2).
    """

    rows: tuple[GeneRow, ...]
    extra_skip: int = -1
    resize: int = 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of the images, before the resize."""
        first = self.rows[0]
        size = first.in_size // self.resize
        return (first.in_channels, size, size)

    @property
    def num_classes(self) -> int:
        """Output capsules of the last row."""
        return self.rows[-1].out_channels

    @property
    def is_deepcaps(self) -> bool:
        """Whether the network ends with DeepCaps cells (flatten + class capsules)."""
        return self.rows[-1].type == RowType.CELL

    def to_list(self) -> list[list[int]]:
        """The chromosome as NASCaps writes it."""
        return [row.to_list() for row in self.rows] + [[self.extra_skip], [self.resize]]


GeneLike = Union[Chromosome, Sequence[Sequence[int]]]


def parse_chromosome(gene: GeneLike) -> Chromosome:
    """Validate a chromosome given as nested lists (or return a :class:`Chromosome` as is).

    Raises
    ------
    ValueError
        Naming the row and field that is malformed.
    """
    if isinstance(gene, Chromosome):
        return gene
    if isinstance(gene, (str, bytes)) or not isinstance(gene, Sequence):
        raise ValueError(f"gene must be a list of rows, got {type(gene).__name__}")
    entries = list(gene)
    if len(entries) < 3:
        raise ValueError(f"gene must have at least one layer row plus [extra_skip] and [resize], "
                         f"got {len(entries)} entries")
    for index, entry in enumerate(entries):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
            raise ValueError(f"gene entry {index} must be a list of integers, got {entry!r}")
        for value in entry:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"gene entry {index} must hold integers only, got {list(entry)!r}")
    *layer_entries, skip_entry, resize_entry = entries
    if len(skip_entry) != 1 or len(resize_entry) != 1:
        raise ValueError(f"the last two gene entries must be [extra_skip] and [resize], "
                         f"got {list(skip_entry)!r} and {list(resize_entry)!r}")
    rows = []
    for index, entry in enumerate(layer_entries):
        if len(entry) != ROW_LENGTH:
            raise ValueError(f"gene row {index} must have {ROW_LENGTH} integers {list(ROW_FIELDS)}, "
                             f"got {list(entry)!r}")
        values = dict(zip(ROW_FIELDS, entry))
        if values["type"] not in {t.value for t in RowType}:
            raise ValueError(f"gene row {index}: type must be 0 (conv), 1 (capsules) or 2 (DeepCaps cell), "
                             f"got {values['type']!r}")
        for name in ROW_FIELDS[1:]:
            if values[name] < 1:
                raise ValueError(f"gene row {index}: {name} must be a positive integer, got {values[name]!r}")
        values["type"] = RowType(values["type"])
        rows.append(GeneRow(**values))
    extra_skip, resize = skip_entry[0], resize_entry[0]
    if extra_skip < -1:
        raise ValueError(f"gene extra_skip must be -1 (none) or a layer index >= 0, got {extra_skip!r}")
    if resize not in (1, 2):
        raise ValueError(f"gene resize must be 1 or 2, got {resize!r}")
    if rows[0].in_size % resize:
        raise ValueError(f"gene row 0: in_size {rows[0].in_size} is not divisible by the resize factor {resize}")
    chromosome = Chromosome(rows=tuple(rows), extra_skip=extra_skip, resize=resize)
    if chromosome.is_deepcaps:
        extra_skip_row(chromosome)  # validates the skip
    return chromosome


def read_chromosome(path: Union[str, os.PathLike]) -> Chromosome:
    """Read and validate a ``.chr`` file (JSON).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not JSON or not a valid chromosome.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chromosome file {path} does not exist")
    try:
        gene = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"chromosome file {path} is not JSON: {error}") from error
    try:
        return parse_chromosome(gene)
    except ValueError as error:
        raise ValueError(f"chromosome file {path}: {error}") from error


def extra_skip_row(chromosome: Chromosome) -> int:
    """Index of the cell whose output joins the last cell's output before the class capsules.

    NASCaps (``nsga/wrapper.py``) counts convolution and cell rows from 1; cell row ``r``
    (0-based) is the skip source when ``extra_skip == r + 1``. With ``extra_skip == -1`` the
    source is the last cell itself, whose output then reaches the class capsules twice.

    Raises
    ------
    ValueError
        If the chromosome does not end with DeepCaps cells, if ``extra_skip`` names no cell before
        the class row, or names a convolution row (NASCaps' networks cannot be built then).
    """
    if not chromosome.is_deepcaps:
        raise ValueError("extra_skip applies to chromosomes that end with a DeepCaps cell row (type 2)")
    last_cell = len(chromosome.rows) - 2
    if last_cell < 0 or chromosome.rows[last_cell].type != RowType.CELL:
        raise ValueError("a DeepCaps class row (type 2, last) must follow at least one DeepCaps cell row")
    skip = chromosome.extra_skip
    if skip == -1:
        return last_cell
    row = skip - 1
    if 0 <= row <= last_cell and chromosome.rows[row].type == RowType.CELL:
        return row
    raise ValueError(f"gene extra_skip {skip} must name a DeepCaps cell row r as r + 1 "
                     f"(cells here: {[r + 1 for r in range(last_cell + 1) if chromosome.rows[r].type == RowType.CELL]})"
                     " or be -1")


def class_input_capsules(chromosome: Chromosome) -> tuple[int, int]:
    """``(count, dimension)`` of the capsules the class capsules read, in the built network.

    Capsule (CapsNet-style) networks flatten the previous capsule grid; DeepCaps-style ones
    concatenate the last cell's and the extra skip source's capsules.
    """
    last = chromosome.rows[-1]
    if not chromosome.is_deepcaps:
        return last.in_size * last.in_size * last.in_channels, last.in_caps_dim
    final, source = chromosome.rows[-2], chromosome.rows[extra_skip_row(chromosome)]
    if final.out_caps_dim != source.out_caps_dim:
        raise ValueError(f"extra skip source row {extra_skip_row(chromosome)} has capsules of dimension "
                         f"{source.out_caps_dim}, the last cell {final.out_caps_dim}: they cannot be concatenated")
    count = final.out_size ** 2 * final.out_channels + source.out_size ** 2 * source.out_channels
    return count, final.out_caps_dim


def chromosome_workload(gene: GeneLike) -> Workload:
    """The workload NASCaps' estimator sees in ``gene`` (see the module docstring)."""
    chromosome = parse_chromosome(gene)
    layers: list[Layer] = []
    counters = {RowType.CONV: 0, RowType.CAPS: 0, RowType.CELL: 0}
    last = len(chromosome.rows) - 1
    for index, row in enumerate(chromosome.rows):
        counters[row.type] += 1
        number = counters[row.type]
        if row.type == RowType.CONV:
            layers.append(_conv_layer(f"conv{number}", row, in_caps=row.in_caps_dim, module="Conv2d",
                                      in_size=row.in_size, stride=row.stride))
        elif row.type == RowType.CAPS and index < last:
            layers.append(_conv_layer(f"primary{number}", row, in_caps=row.in_caps_dim, module="PrimaryCaps",
                                      in_size=row.in_size, stride=row.stride))
        elif row.type == RowType.CAPS:
            count, dim = class_input_capsules(chromosome)
            layers.append(_class_layer("class", row, count, dim))
            layers.extend(_routing_layer(f"routing_sum{i}", row, count, step="sum")
                          for i in range(CAPSNET_ROUTING_SUMS))
        elif index < last - 1:
            layers.extend(_cell_layers(f"cell{number}", row, final=False))
        elif index == last - 1:
            layers.extend(_cell_layers(f"cell{number}", row, final=True))
        else:
            count, dim = class_input_capsules(chromosome)
            for i in range(DEEPCAPS_ROUTING_PAIRS):
                layers.append(_routing_layer(f"routing_sum{i}", row, count, step="sum"))
                layers.append(_routing_layer(f"routing_update{i}", row, count, step="update"))
            layers.append(_class_layer("class", row, count, dim))
    peak = max((layer.input_elements + layer.output_elements for layer in layers), default=0)
    return Workload(layers=tuple(layers), peak_activation_elements=peak,
                    params=sum(layer.weights for layer in layers), source="chromosome")


def _nascaps_weights(row: GeneRow, in_caps: int, taps: int) -> int:
    return (row.in_channels * taps + 1) * row.out_channels * row.out_caps_dim * in_caps


def _conv_layer(name: str, row: GeneRow, *, in_caps: int, module: str, in_size: int, stride: int,
                physical_in_channels: Optional[int] = None) -> Layer:
    """A convolution as NASCaps' ConvLayer / PrimaryLayer / CapsLayer models it."""
    taps = row.kernel ** 2
    weights = _nascaps_weights(row, in_caps, taps)
    in_channels = physical_in_channels if physical_in_channels is not None else row.in_channels * in_caps
    out_channels = row.out_channels * row.out_caps_dim
    positions = row.out_size ** 2
    mapping = StationaryMapping(weights=weights, sums_per_output=(taps + 1) * row.in_channels * in_caps,
                                data_per_weight=positions * row.in_channels * in_caps)
    return Layer(name=name, kind="conv", op_type="Conv", module=module, scope=name,
                 detail=f"NASCaps {module}", macs=positions * in_channels * taps * out_channels, weights=weights,
                 input_elements=in_size ** 2 * in_channels, output_elements=positions * out_channels,
                 batch=1, m=positions, k=in_channels * taps, n=out_channels, bias=True,
                 in_channels=in_channels, out_channels=out_channels, kernel=(row.kernel, row.kernel),
                 stride=(stride, stride), out_size=(row.out_size, row.out_size), mapping=mapping)


def _cell_layers(prefix: str, row: GeneRow, *, final: bool) -> list[Layer]:
    """The capsule convolutions of a DeepCaps cell, as NASCaps counts them."""
    inner_caps = row.in_caps_dim if final else row.out_caps_dim
    out_channels = row.out_channels * row.out_caps_dim
    layers = [_conv_layer(f"{prefix}.l1", row, in_caps=row.in_caps_dim, module="ConvCaps2d", in_size=row.in_size,
                          stride=row.stride)]
    names = ("l2", "l3") if final else ("l2", "l3", "skip")
    layers += [_conv_layer(f"{prefix}.{name}", row, in_caps=inner_caps, module="ConvCaps2d", in_size=row.out_size,
                           stride=1, physical_in_channels=out_channels) for name in names]
    if final:
        layers.append(_conv3d_votes_layer(f"{prefix}.skip", row))
    return layers


def _conv3d_votes_layer(name: str, row: GeneRow) -> Layer:
    """NASCaps' ConvCaps3D layer: a k^3 kernel over the capsule grid (routing not charged)."""
    taps = row.kernel ** 3
    weights = _nascaps_weights(row, row.in_caps_dim, taps)
    positions = row.out_size ** 2
    out_channels = row.out_channels * row.out_caps_dim
    images = row.out_channels  # the built network convolves each input capsule type separately
    spatial_taps = row.kernel ** 2
    mapping = StationaryMapping(weights=weights, sums_per_output=(taps + 1) * row.in_channels * row.in_caps_dim,
                                data_per_weight=positions * row.in_channels * row.in_caps_dim)
    return Layer(name=name, kind="capsule_votes", op_type="Conv", module="ConvCaps3d", scope=name,
                 detail="NASCaps ConvCaps3D", macs=images * positions * row.out_caps_dim * spatial_taps * out_channels,
                 weights=weights, input_elements=positions * out_channels,
                 output_elements=images * positions * out_channels, batch=1, m=images * positions,
                 k=row.out_caps_dim * spatial_taps, n=out_channels, bias=True, in_channels=1,
                 out_channels=out_channels, kernel=(row.out_caps_dim, row.kernel, row.kernel),
                 stride=(row.out_caps_dim, 1, 1), out_size=(1, row.out_size, row.out_size), images=images,
                 mapping=mapping)


def _class_layer(name: str, row: GeneRow, count: int, dim: int) -> Layer:
    """NASCaps' ClassLayer: an all-to-all layer with D = 1."""
    taps = row.kernel ** 2
    weights = _nascaps_weights(row, row.in_caps_dim, taps)
    outputs = row.out_channels * row.out_caps_dim
    mapping = StationaryMapping(weights=weights, sums_per_output=(taps + 1) * row.in_channels * row.in_caps_dim,
                                data_per_weight=1)
    return Layer(name=name, kind="capsule_votes", op_type="MatMul", module="ClassCaps", scope=name,
                 detail="NASCaps ClassLayer", macs=count * dim * outputs, weights=weights,
                 input_elements=count * dim, output_elements=count * outputs, batch=count, m=1, k=dim, n=outputs,
                 mapping=mapping)


def _routing_layer(name: str, row: GeneRow, count: int, *, step: str) -> Layer:
    """NASCaps' SumLayer / UpdateLayer (same formula): W = C_in k^2 C_out, S = in_caps_dim, D = 1."""
    weights = row.in_channels * row.kernel ** 2 * row.out_channels
    classes, dim = row.out_channels, row.out_caps_dim
    mapping = StationaryMapping(weights=weights, sums_per_output=row.in_caps_dim, data_per_weight=1)
    votes = count * classes * dim
    if step == "sum":  # s_j = sum_i c_ij u_ij: per class, (1 x count) @ (count x dim)
        view: dict[str, Any] = dict(batch=classes, m=1, k=count, n=dim, output_elements=classes * dim)
    else:  # b_ij += <u_ij, v_j>: per class, (count x dim) @ (dim x 1)
        view = dict(batch=classes, m=count, k=dim, n=1, output_elements=count * classes)
    return Layer(name=name, kind="routing", op_type="Einsum", module="ClassCaps", scope=name,
                 detail=f"NASCaps {'SumLayer' if step == 'sum' else 'UpdateLayer'}", macs=votes, weights=weights,
                 input_elements=votes, mapping=mapping, **view)

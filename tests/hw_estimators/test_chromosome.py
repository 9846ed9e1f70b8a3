"""Parsing NASCaps chromosomes and the layers NASCaps' estimator sees in them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw_estimators import chromosome_workload, parse_chromosome, read_chromosome
from hw_estimators.chromosome import class_input_capsules, extra_skip_row
from .conftest import CAPSNET_GENE, DEEPCAPS_GENE


def test_capsnet_layers() -> None:
    names = [layer.name for layer in chromosome_workload(CAPSNET_GENE).layers]
    assert names == ["conv1", "primary1", "class"] + [f"routing_sum{i}" for i in range(5)]


def test_deepcaps_layers() -> None:
    layers = chromosome_workload(DEEPCAPS_GENE).layers
    names = [layer.name for layer in layers]
    cells = [f"cell{c}.{part}" for c in range(1, 5) for part in ("l1", "l2", "l3", "skip")]
    routing = [f"routing_{step}{i}" for i in range(3) for step in ("sum", "update")]
    assert names == ["conv1", *cells, *routing, "class"]
    kinds = {layer.name: layer.kind for layer in layers}
    assert kinds["cell4.skip"] == "capsule_votes" and kinds["cell3.skip"] == "conv"
    mapping = {layer.name: layer.mapping for layer in layers}
    # the first convolution of a cell reads in_caps_dim capsules, the others out_caps_dim ones ...
    assert mapping["cell2.l1"].weights == (32 * 9 + 1) * 32 * 8 * 4
    assert mapping["cell2.l2"].weights == (32 * 9 + 1) * 32 * 8 * 8
    # ... except in the cell before the class row, where all read in_caps_dim ones
    assert mapping["cell4.l2"].weights == (32 * 9 + 1) * 32 * 8 * 8
    assert mapping["cell4.skip"].weights == (32 * 27 + 1) * 32 * 8 * 8


def test_class_input_capsules() -> None:
    assert class_input_capsules(parse_chromosome(CAPSNET_GENE)) == (14 * 14 * 32, 8)
    # DeepCaps: the last cell (4x4x32) and the extra skip's source, cell 3 (8x8x32)
    deepcaps = parse_chromosome(DEEPCAPS_GENE)
    assert extra_skip_row(deepcaps) == 3
    assert class_input_capsules(deepcaps) == (4 * 4 * 32 + 8 * 8 * 32, 8)
    no_skip = parse_chromosome(DEEPCAPS_GENE[:-2] + [[-1], [2]])
    assert extra_skip_row(no_skip) == 4 and class_input_capsules(no_skip) == (2 * 4 * 4 * 32, 8)


def test_round_trip_and_properties() -> None:
    chromosome = parse_chromosome(DEEPCAPS_GENE)
    assert chromosome.to_list() == DEEPCAPS_GENE
    assert chromosome.input_shape == (3, 32, 32) and chromosome.num_classes == 10 and chromosome.is_deepcaps
    assert parse_chromosome(chromosome) is chromosome


@pytest.mark.parametrize("gene, message", [
    ("[[0]]", "gene must be a list of rows"),
    ([[-1], [1]], "at least one layer row"),
    ([[0, 28, 1, 1, 9, 1, 28, 256], [-1], [1], [1]], "must have 9 integers"),
    ([[3, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [-1], [1]], "type must be 0"),
    ([[0, 28, 1, 1, 0, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [-1], [1]], "kernel must be a positive"),
    ([[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [-1], [3]], "resize must be 1 or 2"),
    ([[0, 28, 1, 1, 9, 1, 28, 2.5, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [-1], [1]], "integers only"),
    ([[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [-1, 2], [1]], "last two gene entries"),
    (DEEPCAPS_GENE[:-2] + [[1], [2]], "extra_skip 1 must name a DeepCaps cell"),
])
def test_malformed_genes(gene, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_chromosome(gene)


def test_read_chromosome(tmp_path: Path) -> None:
    path = tmp_path / "capsnet.chr"
    path.write_text(json.dumps(CAPSNET_GENE), encoding="utf-8")
    assert read_chromosome(path).to_list() == CAPSNET_GENE
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_chromosome(tmp_path / "missing.chr")
    path.write_text("[[0, 1", encoding="utf-8")
    with pytest.raises(ValueError, match="is not JSON"):
        read_chromosome(path)
    path.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="capsnet.chr: gene must be a list"):
        read_chromosome(path)

"""Networks built from NASCaps chromosomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nni_capsnas.modules import CapsCell, ClassCaps, ConvCaps3d, PrimaryCaps
from search_spaces.nascaps import from_chromosome, load_chromosome

CAPSNET_GENE = [[0, 28, 1, 1, 9, 1, 28, 256, 1], [1, 28, 256, 1, 9, 2, 14, 32, 8], [1, 14, 32, 8, 9, 2, 7, 10, 16],
                [-1], [1]]
# DeepCaps' layout, narrowed so the test stays fast
SMALL_DEEPCAPS_GENE = [[0, 16, 3, 1, 3, 1, 16, 16, 1], [2, 16, 4, 4, 3, 2, 8, 4, 4], [2, 8, 4, 4, 3, 2, 4, 4, 8],
                       [2, 4, 4, 8, 3, 2, 2, 4, 8], [2, 2, 4, 8, 2, 1, 1, 10, 16], [3], [2]]


def test_capsnet_chromosome_network() -> None:
    net = from_chromosome(CAPSNET_GENE, decoder=False)
    assert net.input_shape == (1, 28, 28)
    conv, bn = net.stages[0][0], net.stages[0][1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    assert conv.padding == (4, 4) and conv.out_channels == 256  # "same" padding, batch norm after the conv
    primary = net.stages[1][0]
    assert isinstance(primary, PrimaryCaps) and primary.conv.stride == (2, 2) and primary.conv.padding == (4, 4)
    assert isinstance(net.class_caps, ClassCaps)
    assert (net.class_caps.in_caps, net.class_caps.in_dim, net.class_caps.iterations) == (14 * 14 * 32, 8, 3)
    with torch.no_grad():
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10, 16)


def test_deepcaps_chromosome_network_with_resize_and_skip() -> None:
    net = from_chromosome(SMALL_DEEPCAPS_GENE, num_classes=7)
    assert net.input_shape == (3, 8, 8)  # 16 / resize 2
    assert isinstance(net.resize, nn.Upsample) and net.resize.scale_factor == 2
    cells = [stage[-1] for stage in net.stages[1:]]
    assert all(isinstance(cell, CapsCell) for cell in cells)
    assert [isinstance(cell.skip, ConvCaps3d) for cell in cells] == [False, False, True]
    # extra skip 3 = the cell in row 2 (4x4, 4 types): 2*2*4 + 4*4*4 capsules reach the class capsules
    assert net.skip_stage == 2
    assert net.class_caps.in_caps == 2 * 2 * 4 + 4 * 4 * 4 and net.class_caps.out_caps == 7
    assert net.decoder is not None
    with torch.no_grad():
        out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 7, 16)
    assert torch.all(out.norm(dim=-1) < 1)  # squashed class capsules


def test_inconsistent_sizes_are_rejected() -> None:
    gene = [row[:] for row in CAPSNET_GENE]
    gene[1][6] = 13  # a stride-2 "same" convolution of 28 gives 14
    with pytest.raises(ValueError, match="row 1: out_size 13 does not match the computed spatial size 14"):
        from_chromosome(gene)
    with pytest.raises(ValueError, match="last chromosome row must be capsules"):
        from_chromosome([[0, 28, 1, 1, 3, 1, 28, 8, 1], [0, 28, 8, 1, 3, 1, 28, 8, 1], [-1], [1]])
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        from_chromosome(CAPSNET_GENE, num_classes=0)


def test_load_chromosome(tmp_path: Path) -> None:
    path = tmp_path / "net.chr"
    path.write_text(json.dumps(SMALL_DEEPCAPS_GENE), encoding="utf-8")
    assert load_chromosome(path).to_list() == SMALL_DEEPCAPS_GENE
    with pytest.raises(FileNotFoundError):
        load_chromosome(tmp_path / "none.chr")
    path.write_text("not json", encoding="utf-8")
    with pytest.raises(ValueError, match="net.chr is not JSON"):
        load_chromosome(path)

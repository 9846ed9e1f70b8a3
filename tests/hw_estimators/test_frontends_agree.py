"""ONNX front end vs chromosome front end on the networks the two NASCaps chromosomes describe."""

from __future__ import annotations

import pandas as pd
import pytest

from hw_estimators import estimate, estimate_chromosome
from .conftest import CAPSNET_GENE, DEEPCAPS_GENE


def _conv_rows(layers: pd.DataFrame) -> pd.DataFrame:
    return layers[layers.kind == "conv"].reset_index(drop=True)


@pytest.mark.parametrize("fixture, gene, count", [
    ("capsnet_chromosome_export", CAPSNET_GENE, 2),  # conv1 + primary capsules
    ("deepcaps_chromosome_export", DEEPCAPS_GENE, 1 + 4 * 3 + 3),  # stem + 4 cells (the last: 3 2D convs)
])
def test_conv_and_primary_layers_agree_within_one_percent(fixture: str, gene, count: int,
                                                          request: pytest.FixtureRequest) -> None:
    from_onnx = _conv_rows(estimate(request.getfixturevalue(fixture).proto).layers)
    from_gene = _conv_rows(estimate_chromosome(gene).layers)
    assert len(from_onnx) == len(from_gene) == count
    assert list(from_onnx.shape) == list(from_gene.shape)  # same geometry, layer by layer
    for column in ("macs", "cycles", "energy_mj", "latency_ms", "weight_kib"):
        for onnx_value, gene_value in zip(from_onnx[column], from_gene[column]):
            assert onnx_value == pytest.approx(gene_value, rel=0.01), column


def test_capsnet_class_capsules_depart_as_documented(capsnet_chromosome_export) -> None:
    """NASCaps sizes the class layer by (in_channels * k^2 + 1) * ...: 3.3 M weights, not the real 8.0 M."""
    from_onnx = estimate(capsnet_chromosome_export.proto).layers.set_index("kind")
    from_gene = estimate_chromosome(CAPSNET_GENE).layers.set_index("kind")
    assert from_onnx.loc["capsule_votes", "weights"] == 14 * 14 * 32 * 8 * 10 * 16
    assert from_gene.loc["capsule_votes", "weights"] == (32 * 9 * 9 + 1) * 10 * 16 * 8
    # same MACs for the votes and for the routing as a whole, different cost model
    assert from_onnx.loc["capsule_votes", "macs"] == from_gene.loc["capsule_votes", "macs"]
    assert from_onnx.loc["routing", "macs"].sum() == from_gene.loc["routing", "macs"].sum()
    assert from_onnx.loc["routing", "weights"].sum() == 0 < from_gene.loc["routing", "weights"].sum()


def test_deepcaps_3d_skip_departs_as_documented(deepcaps_chromosome_export) -> None:
    """NASCaps charges the 3D skip with a k^3 kernel per capsule pair; the real one shares one small kernel."""
    from_onnx = estimate(deepcaps_chromosome_export.proto).layers
    from_gene = estimate_chromosome(DEEPCAPS_GENE).layers.set_index("name")
    onnx_votes = from_onnx[(from_onnx.module == "ConvCaps3d") & (from_onnx.kind == "capsule_votes")].iloc[0]
    assert onnx_votes["macs"] == from_gene.loc["cell4.skip", "macs"]
    assert onnx_votes["weights"] == 8 * 3 * 3 * 256 + 256
    assert from_gene.loc["cell4.skip", "weights"] == (32 * 27 + 1) * 32 * 8 * 8
    assert from_gene.loc["cell4.skip", "energy_mj"] > 1000 * onnx_votes["energy_mj"]

"""The chromosome front end on ``capsacc`` reproduces NASCaps' published figures."""

from __future__ import annotations

import pytest

from hw_estimators import estimate_chromosome
from .conftest import CAPSNET_GENE, DEEPCAPS_GENE

# (gene, energy mJ, latency ms, weight memory KiB): the anchors of DESIGN.md, then rows of
# NASCaps' chroms/README.md whose published figures match their .chr files.
PUBLISHED = {
    "CapsNet": (CAPSNET_GENE, 88.80, 1.82, 8572),
    "DeepCaps": (DEEPCAPS_GENE, 36.30, 4.29, 9051),
    "NASCaps-MNIST-fbd": ([[0, 28, 1, 1, 3, 1, 28, 32, 8], [2, 28, 32, 8, 5, 2, 14, 32, 4], [2, 14, 32, 4, 5, 2, 7, 32, 8],
                           [2, 7, 32, 8, 5, 2, 4, 32, 8], [2, 4, 32, 8, 4, 1, 4, 10, 8], [-1], [1]],
                          248.50, 4.55, 20770),
    "NASCaps-MNIST-cf9": ([[0, 56, 1, 1, 9, 1, 56, 8, 1], [0, 56, 8, 1, 9, 1, 56, 16, 1], [0, 56, 16, 1, 3, 1, 56, 64, 1],
                           [0, 56, 64, 1, 5, 2, 28, 32, 1], [1, 28, 32, 1, 3, 2, 14, 8, 8], [1, 14, 8, 8, 3, 2, 7, 8, 25],
                           [1, 7, 8, 25, 7, 1, 7, 10, 8], [-1], [2]],
                          1.41, 0.60, 988),
    "NASCaps-FMNIST-aed": ([[0, 56, 1, 1, 9, 2, 28, 64, 1], [1, 28, 64, 1, 5, 1, 28, 16, 8],
                            [1, 28, 16, 8, 5, 2, 14, 32, 14], [1, 14, 32, 14, 14, 1, 14, 10, 8], [-1], [2]],
                           5.60, 1.92, 8776),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_chromosome_reproduces_published_figures(name: str) -> None:
    gene, energy_mj, latency_ms, memory_kib = PUBLISHED[name]
    result = estimate_chromosome(gene, "capsacc")
    assert result.energy_mj == pytest.approx(energy_mj, rel=0.01)
    assert result.latency_ms == pytest.approx(latency_ms, rel=0.01)
    assert result.weight_memory_kib == pytest.approx(memory_kib, rel=0.01)


def test_capsnet_primary_capsules_dominate_energy() -> None:
    """NASCaps' accumulator model puts ~99.9% of CapsNet's energy in the primary capsules."""
    layers = estimate_chromosome(CAPSNET_GENE).layers.set_index("name")
    assert layers.loc["primary1", "energy_mj"] / layers["energy_mj"].sum() > 0.99
    # the primary layer alone draws tens of watts in this model (mW * 1e-3)
    assert layers.loc["primary1", "power_mw"] * 1e-3 > 10


def test_systolic_is_orders_of_magnitude_below_capsacc() -> None:
    capsacc = estimate_chromosome(CAPSNET_GENE, "capsacc")
    systolic = estimate_chromosome(CAPSNET_GENE, "systolic")
    assert systolic.macs == capsacc.macs
    assert 0 < systolic.energy_mj < capsacc.energy_mj / 10

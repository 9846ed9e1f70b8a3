"""Per-layer cycles and energy of small layers, computed by hand; accelerator files."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
import torch

from hw_estimators import (
    Accelerator, CapsAccConfig, Layer, StationaryMapping, estimate, load_accelerator, onnx_workload,
)
from hw_estimators.cost_capsacc import CapsAccModel
from .conftest import small_conv_model

P_PE, P_REG = 0.4815, 0.2303  # mW, NASCaps' 45 nm tables at 3 ns, 25-bit accumulators
ARRAY_POWER = P_PE * 16 * 16


def test_small_conv_on_capsacc_by_hand() -> None:
    row = estimate(small_conv_model(), "capsacc").layers.set_index("name").loc["conv"]
    # W = (C_in k^2 + 1) C_out = 76, S = (k^2 + 1) C_in = 20, D = out^2 C_in = 50
    assert (row["W"], row["S"], row["D"]) == (76, 20, 50)
    cycles = 16 * 1 + 50  # (rows + stages - 1) * ceil(76 / 16 / min(16, 20)) + D
    accumulators = 16 * (20 - 16 + 1)
    power = ARRAY_POWER + accumulators * P_REG
    assert row["cycles"] == cycles
    assert row["power_mw"] == pytest.approx(power)
    assert row["energy_mj"] == pytest.approx(power * cycles * 3e-9)
    assert row["latency_ms"] == pytest.approx(cycles * 3e-6)
    assert row["macs"] == 25 * 4 * 2 * 9


def test_small_float_conv_on_systolic_by_hand() -> None:
    """A float32 graph runs at the file's 32-bit precision: FP32 energies, 4 bytes per element."""
    row = estimate(small_conv_model(), "systolic").layers.set_index("name").loc["conv"]
    # GEMM view m=25, k=18, n=4: 2 k-tiles x 1 n-tile, each 2*16 + 25 + 16 - 2 cycles
    assert row["cycles"] == 2 * (32 + 25 + 14)
    assert (row["bits"], row["weight_bits"], row["activation_bits"], row["output_bits"]) == (32, 32, 32, 32)
    # weights, streamed inputs, outputs (4 bytes each), partial sums (32-bit accumulators), in bytes
    sram = 18 * 4 * 4 + 25 * 18 * 4 + 100 * 4 + 2 * 1 * 100 * 4
    dram = 76 * 4  # the weights, once
    energy_pj = 1800 * (3.7 + 0.9) + sram * 10 / 8 + dram * 2000 / 8
    assert row["sram_bytes"] == sram
    assert row["dram_bytes"] == dram
    assert row["energy_mj"] == pytest.approx(energy_pj * 1e-9)
    assert row["latency_ms"] == pytest.approx(row["cycles"] * 2e-6)


def test_systolic_without_a_float_precision_runs_float_graphs_at_its_native_width(tmp_path: Path) -> None:
    path = tmp_path / "int8_only.toml"
    path.write_text('model = "systolic"\n[parameters]\nprecisions = []\n', encoding="utf-8")
    row = estimate(small_conv_model(), path).layers.set_index("name").loc["conv"]
    sram = 18 * 4 + 25 * 18 + 100 + 2 * 1 * 100 * 4  # 1 byte per element, partial sums at 32 bits
    assert row["bits"] == 8 and row["sram_bytes"] == sram and row["dram_bytes"] == 76
    assert row["energy_mj"] == pytest.approx((1800 * (0.2 + 0.1) + sram * 10 / 8 + 76 * 2000 / 8) * 1e-9)


@pytest.fixture(scope="module")
def small_class_caps() -> onnx.ModelProto:
    from nni_capsnas.export import export_onnx
    from nni_capsnas.modules import ClassCaps

    layer = ClassCaps(in_caps=4, in_dim=2, out_caps=3, out_dim=4, iterations=2)
    return export_onnx(layer, torch.randn(1, 4, 2))


def test_small_capsule_layer_on_capsacc_by_hand(small_class_caps: onnx.ModelProto) -> None:
    layers = estimate(small_class_caps, "capsacc").layers
    votes = layers[layers.kind == "capsule_votes"]
    routing = layers[layers.kind == "routing"]
    assert len(votes) == 1 and len(routing) == 3  # 2 weighted sums + 1 agreement update
    vote = votes.iloc[0]
    # per input capsule: (1 x 2) @ (2 x 12); W = 4 * 2 * 12, S = 2, D = 1
    assert (vote["W"], vote["S"], vote["D"]) == (96, 2, 1)
    assert vote["cycles"] == 16 * 3 + 1  # ceil(96 / 16 / min(16, 2)) = 3 loads
    assert vote["energy_mj"] == pytest.approx((ARRAY_POWER + 16 * P_REG) * 49 * 3e-9)
    assert vote["weights"] == 96 and vote["macs"] == 96
    # in graph order: weighted sum, agreement update, weighted sum
    sums, updates = routing.iloc[[0, 2]], routing.iloc[[1]]
    # s_j: per class, (1 x 4) @ (4 x 4): W = 3 * 4 * 4, S = 4, D = 1
    assert sums.iloc[0][["W", "S", "D", "cycles"]].tolist() == [48, 4, 1, 17]
    # b_ij: per class, (4 x 4) @ (4 x 1): W = 12, S = 4, D = 4 -> 16 accumulators
    update = updates.iloc[0]
    assert update[["W", "S", "D", "cycles", "accumulators"]].tolist() == [12, 4, 4, 20, 16]
    assert update["energy_mj"] == pytest.approx((ARRAY_POWER + 16 * P_REG) * 20 * 3e-9)
    assert set(routing.module) == {"ClassCaps"} and (routing.weights == 0).all()


def test_explicit_mapping_overrides_geometry() -> None:
    model = CapsAccModel(config=CapsAccConfig())
    layer = Layer(name="x", kind="routing", batch=10, m=1, k=100, n=16, macs=16000,
                  mapping=StationaryMapping(weights=5120, sums_per_output=8, data_per_weight=1))
    cost = model.layer_cost(layer)
    assert cost.cycles == 16 * 40 + 1  # ceil(5120 / 16 / 8) = 40
    assert dict(cost.details)["W"] == 5120


def test_custom_accelerator_file(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text('model = "capsacc"\n[parameters]\nrows = 32\ncols = 32\npe_power_mw = 1\n'
                    'register_power_mw = 0\n', encoding="utf-8")
    accelerator = load_accelerator(path)
    assert accelerator.name == "big" and accelerator.config.rows == 32
    row = estimate(small_conv_model(), path).layers.set_index("name").loc["conv"]
    assert row["cycles"] == 32 * 1 + 50
    assert row["energy_mj"] == pytest.approx(32 * 32 * 1.0 * row["cycles"] * 3e-9)


@pytest.mark.parametrize("text, message", [
    ('model = "tpu"', "'model' must be one of"),
    ('model = "capsacc"\n[parameters]\nrowz = 3', "unknown capsacc parameters ['rowz']"),
    ('model = "capsacc"\n[parameters]\nrows = 0', "rows must be a positive integer"),
    ('model = "capsacc"\n[parameters]\nperiod_ns = 7', "give pe_power_mw explicitly"),
    ('model = "systolic"\ncolour = 1', "unknown top-level keys ['colour']"),
    ('model = "systolic"\n[[parameters.precisions]]\nbits = 32\nmult_pj = 1', "precisions[0] must be a table with keys"),
    ('model = "systolic"\n[[parameters.precisions]]\nbits = 8\nmult_pj = 1\nadd_pj = 1\nelementwise_pj = 1',
     "each width may be declared once"),
    ('model = "systolic"\n[[parameters.precisions]]\nbits = 16\nmult_pj = -1\nadd_pj = 1\nelementwise_pj = 1',
     "precision (16 bits) mult_pj must be a non-negative number"),
    ("model = [", "invalid TOML"),
])
def test_bad_accelerator_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_accelerator(path)


def test_unknown_accelerator_name() -> None:
    with pytest.raises(FileNotFoundError, match="neither a built-in accelerator"):
        load_accelerator("tpu-v9")
    with pytest.raises(ValueError, match="accelerator must be"):
        load_accelerator(3)  # type: ignore[arg-type]


def test_builtin_accelerators_are_hashable_and_distinct() -> None:
    capsacc, systolic = load_accelerator("capsacc"), load_accelerator("systolic")
    assert isinstance(capsacc, Accelerator) and capsacc.model == "capsacc" and systolic.model == "systolic"
    assert len({capsacc, systolic, load_accelerator("capsacc")}) == 2
    assert capsacc.to_dict()["parameters"]["period_ns"] == 3.0


def test_workload_of_small_conv_has_no_data_movement_layers() -> None:
    workload = onnx_workload(small_conv_model())
    assert [layer.kind for layer in workload.layers] == ["conv"]
    assert workload.params == 76
    assert workload.peak_activation_elements == 50 + 100

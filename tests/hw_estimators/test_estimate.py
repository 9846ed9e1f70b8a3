"""The Estimate: totals, JSON, caching, host measurement and malformed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from hw_estimators import Estimate, clear_cache, estimate, estimate_chromosome
from hw_estimators.estimate import _estimate_structure
from .conftest import CAPSNET_GENE, small_conv_model


def test_totals_are_sums_of_layers(capsnet_export) -> None:
    result = estimate(capsnet_export.proto)
    layers = result.layers
    assert len(layers) == len(set(layers.name))
    assert result.energy_mj == pytest.approx(layers.energy_mj.sum())
    assert result.latency_ms == pytest.approx(layers.latency_ms.sum())
    assert result.weight_memory_kib == pytest.approx(layers.weight_kib.sum())
    assert result.memory_kib == pytest.approx(result.weight_memory_kib + result.activation_memory_kib)
    assert result.activation_memory_kib > 0
    assert result.macs == layers.macs.sum()
    assert result.host_latency_ms is None


def test_json_round_trip(capsnet_export) -> None:
    result = estimate(capsnet_export.proto, "systolic")
    data = json.loads(result.to_json())
    assert data["accelerator"] == "systolic" and data["source"] == "onnx"
    assert data["energy_mj"] == pytest.approx(result.energy_mj)
    assert len(data["layers"]) == len(result.layers)
    assert {"name", "kind", "cycles", "energy_mj", "dram_bytes"} <= set(data["layers"][0])
    assert "layers" not in result.to_dict(per_layer=False)
    chromosome = json.loads(estimate_chromosome(CAPSNET_GENE).to_json())
    assert chromosome["source"] == "chromosome" and chromosome["layers"][1]["name"] == "primary1"


def test_second_estimate_is_a_cache_hit_and_a_fresh_copy() -> None:
    clear_cache()
    model = small_conv_model()
    first = estimate(model)
    first.layers.loc[:, "energy_mj"] = -1.0  # mutating a result must not poison the cache
    hits = _estimate_structure.cache_info().hits
    second = estimate(model)
    assert _estimate_structure.cache_info().hits == hits + 1
    assert (second.layers.energy_mj > 0).all()
    assert second.energy_mj == pytest.approx(estimate(small_conv_model()).energy_mj)


def test_cache_key_ignores_weight_values_but_not_accelerator() -> None:
    clear_cache()
    model = small_conv_model()
    other = small_conv_model()
    other.graph.initializer[0].raw_data = bytes(len(other.graph.initializer[0].raw_data))
    estimate(model)
    estimate(other)
    assert _estimate_structure.cache_info().hits == 1
    assert estimate(model, "systolic").accelerator == "systolic"
    assert _estimate_structure.cache_info().misses == 2


def test_path_and_bytes_inputs(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(small_conv_model(), path)
    from_path = estimate(path)
    from_bytes = estimate(path.read_bytes())
    assert isinstance(from_path, Estimate)
    assert from_path.energy_mj == from_bytes.energy_mj == estimate(small_conv_model()).energy_mj


def test_external_weight_data_is_not_needed(tmp_path: Path) -> None:
    model = small_conv_model()
    path = tmp_path / "external.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert estimate(path).params == estimate(model).params == 76


def test_host_measurement_refuses_what_onnxruntime_cannot_load() -> None:
    model = small_conv_model()
    model.ir_version = 99
    with pytest.raises(ValueError, match="onnxruntime cannot load it"):
        estimate(model, measure_host=True)


def test_host_latency_is_measured_and_labelled(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(small_conv_model(), path)
    result = estimate(path, measure_host=True, host_runs=3)
    assert result.host_latency_ms is not None and result.host_latency_ms > 0
    note = result.to_dict()["host_latency_note"]
    assert "measured" in note and "not modelled" in note and "3 runs" in note


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"this is plain text, not a protobuf\n", "not a valid ONNX model|not an ONNX model"),
    (bytes(range(256)) * 8, "not a valid ONNX model|not an ONNX model"),
])
def test_malformed_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        estimate(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files(tmp_path: Path, capsnet_export, fraction: float) -> None:
    data = capsnet_export.proto.SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match="model file .*truncated.onnx"):
        estimate(path)


def test_missing_file_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        estimate(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="model must be an onnx.ModelProto.*got int"):
        estimate(42)  # type: ignore[arg-type]


def test_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage\x12")
    with pytest.raises(ValueError) as error:
        estimate(path)
    assert "\n" not in str(error.value)

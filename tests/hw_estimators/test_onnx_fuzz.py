"""Property-based tests: the estimator on random byte mutations of valid ONNX files.

Flips, overwrites, truncations, insertions and deletions of a small convolutional model and of
a small CapsNet (weights stripped, so that most mutations hit the graph): ``estimate`` returns
a valid :class:`Estimate` or raises ``ValueError`` -- never another exception type, never a
hang (hypothesis deadline) -- and ``nni-capsnas estimate`` prints a whole answer (exit 0) or
exactly one error line and nothing else (exit 2).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from hw_estimators import Estimate, clear_cache, estimate
from hw_estimators.model_source import structure
from nni_capsnas.app.cli import main

from .conftest import small_conv_model

SETTINGS = settings(max_examples=1500, deadline=3000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _tiny_capsnet() -> bytes:
    from nni_capsnas.export import export_onnx
    from search_spaces.reference import CapsNet

    torch.manual_seed(0)
    network = CapsNet(input_shape=(1, 8, 8), num_classes=3, conv_channels=4, conv_kernel=3, primary_caps=2,
                      primary_dim=4, primary_kernel=3, primary_stride=1, class_dim=4, iterations=2,
                      decoder=False).eval()
    return structure(export_onnx(network, torch.zeros(1, 1, 8, 8))).SerializeToString()


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    return {"conv": small_conv_model().SerializeToString(), "capsnet": _tiny_capsnet()}


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, list[tuple]]:
    """A seed model name and one to four byte mutations (positions as fractions of the length)."""
    seed = draw(st.sampled_from(["conv", "capsnet"]))
    position = st.floats(min_value=0, max_value=1, exclude_max=True)
    one = st.one_of(
        st.tuples(st.just("flip"), position, st.integers(1, 255)),
        st.tuples(st.just("set"), position, st.integers(0, 255)),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), position, st.integers(1, 16)),
        st.tuples(st.just("duplicate"), position, st.integers(1, 64)),
    )
    return seed, draw(st.lists(one, min_size=1, max_size=4))


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    buffer = bytearray(data)
    for kind, where, *arguments in edits:
        at = int(where * len(buffer)) if buffer else 0
        if kind == "flip" and buffer:
            buffer[at] ^= arguments[0]
        elif kind == "set" and buffer:
            buffer[at] = arguments[0]
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = arguments[0]
        elif kind == "delete":
            del buffer[at:at + arguments[0]]
        elif kind == "duplicate":
            buffer[at:at] = buffer[at:at + arguments[0]]
    return bytes(buffer)


def assert_valid(result: Estimate) -> None:
    assert isinstance(result, Estimate)
    for name in ("energy_mj", "latency_ms", "memory_kib", "weight_memory_kib", "activation_memory_kib"):
        value = getattr(result, name)
        assert isinstance(value, float) and math.isfinite(value) and value >= 0, (name, value)
    assert isinstance(result.macs, int) and result.macs >= 0
    assert isinstance(result.params, int) and result.params >= 0
    json.loads(result.to_json())


def test_the_seeds_are_valid_models(seeds: dict[str, bytes]) -> None:
    for data in seeds.values():
        assert onnx.ModelProto.FromString(data).graph.node
        assert_valid(estimate(data))


@pytest.mark.timeout(300)  # a hang fails here; the deadline catches slow examples
@SETTINGS
@given(mutations())
def test_estimate_returns_a_valid_estimate_or_raises_value_error(seeds: dict[str, bytes],
                                                                 case: tuple[str, list[tuple]]) -> None:
    seed, edits = case
    data = mutate(seeds[seed], edits)
    clear_cache()
    try:
        result = estimate(data, "systolic")
    except ValueError as error:
        assert str(error).strip(), "an empty error message"
        return
    assert_valid(result)


@pytest.mark.timeout(300)
@settings(max_examples=80, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_cli_estimate_prints_an_answer_or_one_error_line(seeds: dict[str, bytes],
                                                         case: tuple[str, list[tuple]]) -> None:
    seed, edits = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(mutate(seeds[seed], edits))
        clear_cache()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["estimate", str(path), "--json"])
        assert sorted(p.name for p in Path(folder).iterdir()) == ["model.onnx"]  # nothing else written
    if status == 0:
        answer = json.loads(out.getvalue())  # one whole JSON document
        assert math.isfinite(answer["energy_mj"]) and answer["energy_mj"] >= 0
    else:
        assert status == 2 and out.getvalue() == "", out.getvalue()
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nni-capsnas estimate: error: "), err.getvalue()


# --- the malformed models the fuzzing found, built directly -------------------------------------


def _einsum_without_equation() -> bytes:
    weight = numpy_helper.from_array(np.zeros((5, 3), np.float32), "w")
    node = helper.make_node("Einsum", ["x", "w"], ["y"], name="votes")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10).SerializeToString()


def _conv_with_float_strides() -> bytes:
    model = small_conv_model()
    attribute = model.graph.node[0].attribute
    del attribute[:]
    attribute.append(helper.make_attribute("strides", 1.0))
    return model.SerializeToString()


def _op_type_not_utf8() -> bytes:
    data = small_conv_model().SerializeToString()
    assert data.count(b"Conv") == 1
    return data.replace(b"Conv", b"C\xffnv")


@pytest.mark.parametrize("build, message", [
    (_einsum_without_equation, "malformed ONNX node 'votes' (Einsum): KeyError"),
    (_conv_with_float_strides, "malformed ONNX node 'conv' (Conv): TypeError"),
    (_op_type_not_utf8, "not UTF-8 text"),
])
def test_malformed_models_raise_value_error_naming_the_problem(build, message: str) -> None:
    clear_cache()
    with pytest.raises(ValueError, match=re.escape(message)):
        estimate(build())

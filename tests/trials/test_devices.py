"""Device settings: spelling, resolution on this machine, refusal, precision, CUDA kernel settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import DEVICES
from trials.devices import (DeviceUnavailableError, autocast, check_device, check_precision, cuda_index,
                            cuda_unavailable_reason, describe_device, device_name, fast_cuda_kernels, grad_scaler,
                            module_device, place_model, resolve_device, wants_cuda)


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_device_settings_are_accepted(spec: str) -> None:
    assert check_device(spec) == spec


@pytest.mark.parametrize("spec", ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", "cuda:0 ", "mps", "", None, 0])
def test_other_device_settings_are_rejected_naming_the_value(spec: object) -> None:
    with pytest.raises(ValueError, match=rf"device must be one of auto, cpu, cuda, cuda:N \(N a GPU index\), "
                                         rf"got {repr(spec).replace('(', '').replace(')', '')}"):
        check_device(spec)


def test_precisions() -> None:
    assert [check_precision(p) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, got 'fp64'"):
        check_precision("fp64")


def test_cuda_settings_are_recognised() -> None:
    assert [wants_cuda(s) for s in ("auto", "cpu", "cuda", "cuda:3")] == [False, False, True, True]
    assert [cuda_index(s) for s in ("auto", "cuda", "cuda:3")] == [None, None, 3]


def test_cpu_and_auto_resolve_on_any_machine() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert cuda_unavailable_reason("auto") is None and cuda_unavailable_reason("cpu") is None


def test_a_gpu_index_beyond_the_machine_is_refused() -> None:
    with pytest.raises(DeviceUnavailableError, match="device 'cuda:9999' "):
        resolve_device("cuda:9999")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of CUDA on a machine without it")
def test_cuda_without_a_gpu_is_refused_with_the_reason() -> None:
    with pytest.raises(DeviceUnavailableError, match=r"device 'cuda' needs a CUDA GPU, but this machine has none "
                                                     r"that PyTorch can use \(torch .*is_available\(\) is False"):
        resolve_device("cuda")


@pytest.mark.cuda
def test_cuda_resolves_to_the_first_visible_gpu() -> None:
    assert resolve_device("cuda") == torch.device("cuda", 0) == resolve_device("cuda:0")
    assert device_name(resolve_device("cuda")) == "cuda:0"
    assert torch.cuda.get_device_name(0) in describe_device(resolve_device("cuda"))


def test_device_names_and_descriptions() -> None:
    assert device_name(torch.device("cpu")) == "cpu"
    assert device_name(torch.device("cuda")) == "cuda:0" and device_name(torch.device("cuda", 2)) == "cuda:2"
    assert describe_device(torch.device("cpu")) == f"cpu ({torch.get_num_threads()} threads)"


@pytest.mark.parametrize("device", DEVICES)
def test_module_device_follows_the_parameters(device: str) -> None:
    model = nn.Linear(2, 2).to(device)
    assert module_device(model).type == device
    assert module_device(nn.ReLU()) == torch.device("cpu")  # nothing to move


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                              ("fp16", torch.float16)])
def test_autocast_computes_matrix_products_in_the_precision(device: str, precision: str,
                                                           dtype: torch.dtype) -> None:
    a, b = torch.rand(4, 4, device=device), torch.rand(4, 4, device=device)
    with autocast(torch.device(device), precision):
        assert (a @ b).dtype == dtype
    assert grad_scaler(torch.device(device), precision).is_enabled() == (precision == "fp16")


@pytest.mark.parametrize("device", DEVICES)
def test_fast_cuda_kernels_change_cuda_settings_only_inside_the_block(device: str) -> None:
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)
    with fast_cuda_kernels(torch.device(device)):
        inside = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)
    assert inside == (("high", True) if device == "cuda" else before)
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark) == before


@pytest.mark.parametrize("device", DEVICES)
def test_place_model_moves_the_model_and_sets_kernel_layouts(device: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    placed = place_model(model, torch.device(device))
    assert placed is model and all(p.device.type == device for p in model.parameters())
    # CUDA: 4-D kernels channels-last (cuDNN's NHWC kernels); CPU: the model's own layouts
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last) == (device == "cuda")
    assert model[0].weight.is_contiguous() == (device == "cpu")
    assert model[2].weight.is_contiguous()

"""Where training runs: device settings (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and precisions.

A device setting is checked twice: its spelling wherever it is written down (configuration
files, :class:`trials.training.TrainConfig`, command-line flags), and whether this machine has
it when training is about to start (:func:`resolve_device`). ``auto`` is CUDA's first visible
GPU when there is one, else the CPU; inside an NNI trial that NNI gave GPUs to
(``CUDA_VISIBLE_DEVICES``), it is the first of *those*.

Precision (``fp32``, ``bf16``, ``fp16``) selects automatic mixed precision
(:func:`torch.autocast`) on the training device; ``fp16`` also scales the loss
(:class:`torch.amp.GradScaler`).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator, Optional

import torch
from torch import nn

#: The spellings of a device setting (``cuda:N`` with any index).
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")
#: Training precisions: float32 everywhere (TF32 matrix products on CUDA), or autocast to bfloat16 / float16.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CUDA_INDEX = re.compile(r"cuda:(\d{1,4})")


class DeviceUnavailableError(ValueError):
    """A device setting that names hardware this machine does not have."""


def check_device(spec: object) -> str:
    """Return ``spec`` if it is a valid device setting, else raise ``ValueError`` naming it.

    Parameters
    ----------
    spec
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (N a GPU index).
    """
    if isinstance(spec, str) and (spec in ("auto", "cpu", "cuda") or _CUDA_INDEX.fullmatch(spec)):
        return spec
    raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} (N a GPU index), got {spec!r}")


def check_precision(precision: object) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError`` naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision  # type: ignore[return-value]


def wants_cuda(spec: str) -> bool:
    """Whether a (valid) device setting insists on CUDA (``cuda``, ``cuda:N``)."""
    return check_device(spec).startswith("cuda")


def cuda_index(spec: str) -> Optional[int]:
    """The GPU index of ``cuda:N`` (``None`` for the other settings)."""
    match = _CUDA_INDEX.fullmatch(check_device(spec))
    return int(match.group(1)) if match else None


def _visible_devices_note() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if visible is None else f", CUDA_VISIBLE_DEVICES={visible!r}"


def cuda_unavailable_reason(spec: str) -> Optional[str]:
    """Why this machine cannot train on ``spec``; ``None`` when it can (always for ``auto``, ``cpu``)."""
    if not wants_cuda(spec):
        return None
    if not torch.cuda.is_available():
        return f"{spec!r} needs a CUDA GPU, but this machine has none that PyTorch can use " \
               f"(torch {torch.__version__}, torch.cuda.is_available() is False{_visible_devices_note()})"
    index = cuda_index(spec)
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        return f"{spec!r} names GPU {index}, but PyTorch sees {count} GPU(s), cuda:0..cuda:{count - 1}" \
               f"{_visible_devices_note()}"
    return None


def resolve_device(spec: str = "auto") -> torch.device:
    """The :class:`torch.device` a setting means on this machine.

    Raises
    ------
    ValueError
        If ``spec`` is not a device setting.
    DeviceUnavailableError
        If it asks for a GPU this machine does not have.
    """
    reason = cuda_unavailable_reason(spec)
    if reason is not None:
        raise DeviceUnavailableError(f"device {reason}")
    if spec == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cuda":
        return torch.device("cuda", 0)
    return torch.device(spec)


def device_name(device: torch.device) -> str:
    """``"cpu"`` or ``"cuda:N"``: a device as trials report it."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else 0}"
    return device.type


def describe_device(device: torch.device) -> str:
    """A device for logs: ``cuda:0 (NVIDIA H100 80GB HBM3, CUDA_VISIBLE_DEVICES='3')`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"{device_name(device)} ({torch.cuda.get_device_name(device)}{_visible_devices_note()})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters (or buffers) are; the CPU for a module without any."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """Automatic mixed precision for ``precision`` on ``device`` (a no-op context for ``fp32``)."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str = "fp32") -> torch.amp.GradScaler:
    """Loss scaling for ``fp16`` training (float16's range loses small gradients); disabled otherwise."""
    return torch.amp.GradScaler(device.type, enabled=check_precision(precision) == "fp16")


@contextlib.contextmanager
def fast_cuda_kernels(device: torch.device) -> Iterator[None]:
    """On CUDA: TF32 matrix products and cuDNN's autotuner for the block; settings restored after.

    TF32 keeps float32's range with a 10-bit mantissa in matrix products and convolutions (as
    NVIDIA's Ampere+ libraries do by default for convolutions); the autotuner picks the fastest
    cuDNN algorithm for each convolution shape once. Nothing changes on other devices.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` (in place); on CUDA its 4-D kernels go channels-last.

    cuDNN's tensor-core convolutions read and write NHWC; with channels-last kernels the
    convolutions' outputs stay channels-last and no layout conversion runs between layers.
    On the CPU the model's own layouts are kept (the row-GEMM primary capsules choose theirs).
    """
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model

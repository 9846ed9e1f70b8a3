"""Refuse a search whose GPU settings this machine cannot honour, before anything starts.

Configuration validation (:mod:`.config`) checks how the device settings are written, on any
machine (``report`` and ``retrain`` read a search's configuration wherever they run). This
module checks them against *this* machine, where that machine is the one that trains:

- ``training.device`` asking for CUDA: for local searches (the trials run here) and for the
  one-shot phase of E2RNAS (it trains the supernet in this process, whatever the platform);
- ``training_service.trial_gpu_number`` (and ``gpu_indices``) for local searches: NNI's trial
  keeper collects the GPUs with NVML when the experiment starts; on a machine without them the
  manager shuts down at once ("Training srevice initialize failed: Error: TaskScheduler: Failed
  to collect GPU info" in ``nnimanager.log``) and the driver fails with a connection error.

Remote workers' GPUs are not visible from here; a worker without the GPUs asked for fails its
trials with the device error in their logs.
"""

from __future__ import annotations

import torch

from trials.devices import cuda_unavailable_reason, wants_cuda

from .config import ConfigError, SearchConfig, is_one_shot


def check_devices_available(config: SearchConfig) -> None:
    """Raise :class:`ConfigError` naming the setting if this machine cannot train as ``config`` says.

    Raises
    ------
    ConfigError
        ``training.device`` asks for a GPU this machine lacks (local or one-shot searches), or
        ``training_service.trial_gpu_number`` / ``gpu_indices`` ask for GPUs a local search
        does not have.
    """
    section = config.training_service
    local = section.platform == "local"
    device = config.training.device
    if local and section.trial_gpu_number:
        _check_scheduled_gpus(config)
        if wants_cuda(device):
            return  # cuda:N counts the trial's own GPUs, checked against trial_gpu_number by the config
    if local or is_one_shot(config):
        reason = cuda_unavailable_reason(device)
        if reason is not None:
            where = "" if local else " (the E2RNAS supernet trains on this machine)"
            raise ConfigError(f"training.device: {reason}{where}")


def _check_scheduled_gpus(config: SearchConfig) -> None:
    section, name = config.training_service, "training_service"
    wanted = section.trial_gpu_number or 0
    if not torch.cuda.is_available():
        raise ConfigError(f"{name}.trial_gpu_number: NNI would give each trial {wanted} GPU(s), but this machine has "
                          "no GPU that PyTorch can use (torch.cuda.is_available() is False); leave the key out to "
                          "train on the CPU")
    count = torch.cuda.device_count()
    indices = section.gpu_indices if section.gpu_indices is not None else list(range(count))
    for position, index in enumerate(indices):
        if index >= count:
            raise ConfigError(f"{name}.gpu_indices[{position}]: GPU {index} does not exist; this machine has "
                              f"{count} GPU(s), 0..{count - 1}")
    if wanted > len(indices):
        raise ConfigError(f"{name}.trial_gpu_number: each trial would need {wanted} GPUs, but NNI may use only "
                          f"{len(indices)} here ({indices})")

"""Shared fixtures: data locations, seeds, and quiet NNI warnings."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Iterator

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
#: ``@pytest.mark.parametrize("device", DEVICES)``: a test on the CPU and, where there is a GPU, its CUDA twin.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip on machines without a CUDA GPU (each has a CPU twin that runs)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (its CPU twin runs the same code with device='cpu')")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_quiet_one_thread() -> Iterator[None]:
    """Seeded, quiet, and one intra-op thread: on 2 shared cores, two threads run many times slower."""
    from nni_capsnas.quiet import silence_known_warnings

    silence_known_warnings()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def isolated_nni(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep NNI's manifest and the manager's files under ``tmp_path``, one thread per trial.

    The Python side keeps its manifest in ``~/nni-experiments`` (bound at import time), the
    node.js manager in ``os.homedir()``: both are redirected. Trials and child processes
    inherit the environment.
    """
    from nni.tools.nnictl import config_utils

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(config_utils.Experiments.__init__, "__defaults__", (str(home / "nni-experiments"),))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return home


@pytest.fixture(scope="session")
def mnist_t10k_dir() -> Path:
    """The official MNIST test split: $NNI_CAPSNAS_MNIST_T10K or ../shared/data/mnist-t10k."""
    folder = Path(os.environ.get("NNI_CAPSNAS_MNIST_T10K", REPO_ROOT.parent / "shared" / "data" / "mnist-t10k"))
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST test split not found in {folder}; set NNI_CAPSNAS_MNIST_T10K")
    return folder


@pytest.fixture(scope="session")
def nascaps_hw_dir() -> Path:
    """NASCaps' published synthesis tables (../shared/data/nascaps-hw)."""
    return REPO_ROOT.parent / "shared" / "data" / "nascaps-hw"


@pytest.fixture()
def free_port() -> int:
    """A TCP port that was free a moment ago, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

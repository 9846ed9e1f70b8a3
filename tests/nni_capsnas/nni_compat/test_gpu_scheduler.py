"""NNI's GPU scheduler, with and without ``gpu_scheduler.js``.

NNI's own ``TaskScheduler`` runs in NNI's bundled node.js; the GPUs it sees come from NNI's
unit-test hook (``UnitTestHelpers.mockGpuInfo``), which replaces its NVML query, so the
scheduling decisions are NNI's code on a machine of the given size.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nni_node
import pytest

from nni_capsnas.nni_compat.node_preloads import GPU_SCHEDULER_SCRIPT, preload_path

NODE_DIR = Path(nni_node.__path__[0])

#: Schedules the trials of argv[2] (JSON list of [trial, gpus, release_before]) on argv[1] idle GPUs.
SCHEDULE = r"""
global.nniUnitTest = true;
require('common/globals/unittest');
const { TaskScheduler, UnitTestHelpers } = require('common/trial_keeper/task_scheduler/scheduler');
const gpus = Number(process.argv[2]);
UnitTestHelpers.mockGpuInfo({ success: true, gpuNumber: gpus, processes: [],
                              gpus: [...Array(gpus).keys()].map(index => ({ index })) });
(async () => {
  const scheduler = new TaskScheduler();
  await scheduler.init();
  const answers = [];
  for (const [trial, wanted, release] of JSON.parse(process.argv[3])) {
    if (release) { await scheduler.release('experiment', release); }
    const env = await scheduler.schedule('experiment', trial, wanted, {});
    answers.push(env === null ? null : env.CUDA_VISIBLE_DEVICES);
  }
  process.stdout.write(JSON.stringify(answers));
})();
"""


def _schedule(tmp_path: Path, gpus: int, requests: list, patched: bool) -> list:
    script = tmp_path / "schedule.js"
    script.write_text(SCHEDULE, encoding="utf-8")
    environment = {**os.environ, "NODE_PATH": f"{NODE_DIR}{os.pathsep}{NODE_DIR / 'node_modules'}"}
    environment.pop("NODE_OPTIONS", None)
    if patched:
        environment["NODE_OPTIONS"] = f"--require {preload_path(GPU_SCHEDULER_SCRIPT)}"
    result = subprocess.run([str(NODE_DIR / "node"), str(script), str(gpus), json.dumps(requests)], cwd=NODE_DIR,
                            env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nni_alone_never_schedules_every_gpu(tmp_path: Path) -> None:
    """NNI's bound (gpuNumber >= GPUs): one GPU and one GPU per trial is refused, again and again."""
    assert _schedule(tmp_path, 1, [["a", 1, None], ["a", 1, None]], patched=False) == [None, None]
    assert _schedule(tmp_path, 2, [["a", 2, None]], patched=False) == [None]


@pytest.mark.parametrize("gpus, requests, expected", [
    # one GPU, one per trial: the first trial gets it, the next waits until it is released
    (1, [["a", 1, None], ["b", 1, None], ["b", 1, "a"]], ["0", None, "0"]),
    # two GPUs, two per trial
    (2, [["a", 2, None], ["b", 2, None]], ["0,1", None]),
    # what NNI scheduled before is unchanged: fewer GPUs than the machine has, shared GPUs, too many
    (2, [["a", 1, None], ["b", 1, None], ["c", 1, None]], ["0", "1", None]),
    (1, [["a", 0.5, None], ["b", 0.5, None], ["c", 0.5, None]], ["0", "0", None]),
    (1, [["a", 2, None]], [None]),
])
def test_the_preload_lets_a_trial_have_every_gpu(tmp_path: Path, gpus: int, requests: list, expected: list) -> None:
    assert _schedule(tmp_path, gpus, requests, patched=True) == expected

"""Waiting for submitted models without NNI's ``wait_models`` hang."""

from __future__ import annotations

import time
from typing import Sequence

from nni.nas.execution import ExecutionEngine
from nni.nas.space import ExecutableModelSpace


def wait_for_models(engine: ExecutionEngine, models: Sequence[ExecutableModelSpace], *,
                    poll_seconds: float = 1.0) -> None:
    """Wait until every model finished, or NNI's manager will start no more trials.

    A model submitted in the instant the manager reached its trial budget is never run, and
    NNI 3.0's ``wait_models`` would wait for it forever; engines without a manager (the
    sequential engine) use ``wait_models`` itself.
    """
    manager = getattr(engine, "nodejs_binding", None)
    if manager is None:
        engine.wait_models(*models)
        return
    while not all(model.status.completed() for model in models):
        if manager.get_status() in ("DONE", "STOPPED", "ERROR"):
            return
        time.sleep(poll_seconds)

"""``FixedSamples``: an NNI strategy that trains a given list of architectures as trials.

A one-shot search (E2RNAS, DARTS) ends with derived architectures that still need their real
accuracy, robustness and hardware cost: this strategy hands them to NNI's experiment manager
as ordinary trials, so they show in the web UI and the experiment database, and ``report``,
``view`` and ``retrain`` treat them like any multi-trial search's.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from nni.nas.strategy.base import Strategy

from .waiting import wait_for_models

_logger = logging.getLogger(__name__)


class FixedSamples(Strategy):
    """Train each of ``samples`` once, in order.

    Parameters
    ----------
    samples
        Architectures as ``{label: value}`` dicts (what ``export_top_models(formatter="dict")``
        returns); more can be set later through :attr:`samples` before the run starts.
    """

    def __init__(self, samples: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__()
        self.samples: list[dict[str, Any]] = [dict(sample) for sample in samples]
        self._submitted = 0

    def extra_repr(self) -> str:
        return f"samples={len(self.samples)}"

    def _run(self) -> None:
        if not self.samples:
            raise ValueError("FixedSamples has no architecture to train: set samples before the run")
        pending = []
        for sample in self.samples[self._submitted:]:
            if not self.wait_for_resource():
                _logger.warning("the trial budget ran out after %d of %d architectures",
                                self._submitted, len(self.samples))
                break
            model = self.model_space.freeze(sample)
            self.engine.submit_models(model)
            pending.append(model)
            self._submitted += 1
        wait_for_models(self.engine, pending)

    def state_dict(self) -> dict:
        return {"samples": self.samples, "submitted": self._submitted}

    def load_state_dict(self, state_dict: dict) -> None:
        self.samples = [dict(sample) for sample in state_dict.get("samples", self.samples)]
        self._submitted = int(state_dict.get("submitted", 0))

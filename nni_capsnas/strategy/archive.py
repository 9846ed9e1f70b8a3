"""Every architecture a search has considered, with its outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from .objectives import Objectives
from .pareto import feasible_front

Key = tuple[int, ...]

RUNNING, TRAINED, FAILED, REJECTED = "running", "trained", "failed", "rejected"
PENALTY = 1e12  # objective value given to failed and rejected architectures


@dataclass
class Evaluation:
    """Outcome of one architecture.

    Attributes
    ----------
    sample
        NNI sample (label -> value).
    status
        ``running``, ``trained``, ``failed`` (trial failed or reported unusable metrics) or
        ``rejected`` (broke a hardware budget before training; never became a trial).
    metrics
        Reported metrics (trained), or the pre-training estimate (rejected).
    reason
        Why it failed or was rejected.
    """

    sample: dict[str, Any]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""


class Archive:
    """Architectures by gene vector: de-duplication, outcomes, pymoo arrays, Pareto front."""

    def __init__(self) -> None:
        self._entries: dict[Key, Evaluation] = {}

    def __contains__(self, key: Key) -> bool:
        return tuple(key) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, key: Key) -> Evaluation:
        return self._entries[tuple(key)]

    def items(self) -> Iterator[tuple[Key, Evaluation]]:
        return iter(self._entries.items())

    def count(self, status: str) -> int:
        return sum(1 for e in self._entries.values() if e.status == status)

    def record(self, key: Key, evaluation: Evaluation) -> None:
        self._entries[tuple(int(k) for k in key)] = evaluation

    def forget(self, key: Key) -> None:
        """Drop one architecture (e.g. submitted but never run)."""
        self._entries.pop(tuple(key), None)

    def forget_running(self) -> int:
        """Drop architectures still marked running (e.g. after a crash); returns how many."""
        running = [k for k, e in self._entries.items() if e.status == RUNNING]
        for key in running:
            del self._entries[key]
        return len(running)

    def objective_arrays(self, keys: list[Key], objectives: Objectives) -> tuple[np.ndarray, np.ndarray]:
        """pymoo's ``F`` (minimised objectives) and ``G`` (<= 0 feasible) for ``keys``.

        ``G``'s first column flags failure; the others are the constraints' relative excess.
        """
        n_obj, n_con = len(objectives.names), len(objectives.constraints)
        F = np.full((len(keys), n_obj), PENALTY)
        G = np.zeros((len(keys), 1 + n_con))
        for row, key in enumerate(keys):
            entry = self[key]
            violations = objectives.violations(entry.metrics)
            G[row, 1:] = [violations.get(name, 0.0) for name in objectives.constraints]
            if entry.status == TRAINED:
                F[row] = objectives.to_minimisation(entry.metrics)
            elif entry.status != REJECTED:
                G[row, 0] = 1.0
        return F, G

    def front(self, objectives: Objectives) -> list[tuple[Key, Evaluation]]:
        """Non-dominated trained architectures that satisfy every constraint."""
        trained = [(k, e) for k, e in self._entries.items() if e.status == TRAINED]
        return [trained[i] for i in feasible_front([e.metrics for _, e in trained], objectives)]

    def state_dict(self) -> list[dict[str, Any]]:
        """Plain lists and dicts (safe for ``torch.load(weights_only=True)``)."""
        return [{"key": list(key), **asdict(entry)} for key, entry in self._entries.items()]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self._entries = {}
        for item in state:
            item = dict(item)
            key = tuple(int(k) for k in item.pop("key"))
            self._entries[key] = Evaluation(**item)

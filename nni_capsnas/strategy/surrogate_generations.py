"""Generations chosen by a surrogate: a random first generation, then :class:`SurrogateProposer` batches."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping, Optional

import numpy as np

from .archive import TRAINED, Archive, Key
from .surrogate_search import Proposal, SurrogateProposer, rank_correlation

_logger = logging.getLogger(__name__)

#: Trained architectures a surrogate needs before it proposes (fewer: random architectures are drawn).
MIN_TRAINED = 4


class SurrogateGenerations:
    """Asks the surrogate for each generation; the first (``population_size``) is random.

    Parameters
    ----------
    archive
        The search's archive.
    upper_bounds
        Largest index of every gene.
    exact
        Metrics known before training of an architecture (``None`` without an estimator).
    proposer
        Chooses each batch.
    population_size, offspring_size
        Size of the random first generation and of every later one.
    seed
        Seed of the generator behind the pool and the random generation.
    """

    def __init__(self, *, archive: Archive, upper_bounds: np.ndarray,
                 exact: Callable[[Key], Optional[Mapping[str, float]]], proposer: SurrogateProposer,
                 population_size: int, offspring_size: int, seed: int) -> None:
        self.archive = archive
        self.upper_bounds = np.asarray(upper_bounds, dtype=int)
        self.exact = exact
        self.proposer = proposer
        self.population_size = population_size
        self.offspring_size = offspring_size
        self.rng = np.random.default_rng(seed)
        #: The generation asked and not yet told (kept in checkpoints, so a resume finishes it).
        self._proposal: Optional[Proposal] = None
        self._pool_size = 0
        self._taus: list[float] = []

    def ask(self) -> Optional[list[Key]]:
        if self._proposal is not None:  # resumed in the middle of a generation: finish it first
            return self._proposal.keys
        trained = [(key, entry.metrics) for key, entry in self.archive.items() if entry.status == TRAINED]
        known = {key for key, _ in self.archive.items()}
        if len(trained) < MIN_TRAINED:
            wanted = max(self.population_size - len(trained), self.offspring_size)
            self._proposal = Proposal(self._random(known, wanted))
        else:
            self._proposal = self.proposer.propose(trained, known, self.exact, self.upper_bounds,
                                                   self.offspring_size, self.rng)
        self._pool_size = self._proposal.pool_size
        return self._proposal.keys or None

    def tell(self) -> None:
        """Compare the surrogate's predictions for the generation just trained with the outcomes."""
        proposal, self._proposal = self._proposal, None
        if proposal is None or not proposal.predicted:
            return
        names = next(iter(proposal.predicted.values())).keys()
        for name in names:
            pairs = [(predicted[name], self.archive[key].metrics[name]) for key, predicted in proposal.predicted.items()
                     if key in self.archive and self.archive[key].status == TRAINED]
            tau = rank_correlation([p for p, _ in pairs], [a for _, a in pairs])
            if tau is not None:
                self._taus.append(tau)

    def log_fields(self) -> dict[str, Any]:
        """Pool size and the surrogate's rank correlation on trials it had not seen."""
        fields: dict[str, Any] = {"pool": self._pool_size}
        if self._taus:
            fields["kendall_tau"] = self._taus[-1]
            fields["kendall_tau_mean"] = float(np.mean(self._taus))
        return fields

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the generator's state, the generation in progress and its predictions."""
        pending = None
        if self._proposal is not None:
            pending = {"keys": [list(key) for key in self._proposal.keys], "pool_size": self._proposal.pool_size,
                       "predicted": [[list(key), dict(values)] for key, values in self._proposal.predicted.items()]}
        return {"surrogate_rng_state": json.dumps(self.rng.bit_generator.state), "kendall_taus": list(self._taus),
                "pending_generation": pending}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("surrogate_rng_state"):
            self.rng.bit_generator.state = json.loads(state["surrogate_rng_state"])
        self._taus = [float(t) for t in state.get("kendall_taus") or []]
        pending = state.get("pending_generation")
        self._proposal = None if not pending else Proposal(
            [tuple(int(g) for g in key) for key in pending["keys"]],
            {tuple(int(g) for g in key): dict(values) for key, values in pending["predicted"]},
            int(pending["pool_size"]))

    def _random(self, known: set[Key], count: int) -> list[Key]:
        """Up to ``count`` distinct random architectures the search has not seen."""
        chosen: dict[Key, None] = {}
        for _ in range(100 * count):
            if len(chosen) >= count:
                break
            key = tuple(int(v) for v in self.rng.integers(0, self.upper_bounds + 1))
            if key not in known:
                chosen.setdefault(key, None)
        return list(chosen)

"""Initial population of distinct integer vectors."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from pymoo.core.sampling import Sampling


class DistinctIntegerSampling(Sampling):
    """Uniformly random integer vectors within the bounds, all different when the space allows.

    pymoo's ``IntegerRandomSampling`` may draw duplicates, which duplicate elimination then
    drops, leaving a first generation smaller than asked in small spaces.
    """

    def _do(self, problem: Any, n_samples: int, random_state: Optional[np.random.Generator] = None,
            **kwargs: Any) -> np.ndarray:
        rng = random_state if random_state is not None else np.random.default_rng()
        lower, upper = np.asarray(problem.xl, dtype=int), np.asarray(problem.xu, dtype=int)
        capacity = int(np.prod((upper - lower + 1).astype(object)))
        wanted = min(n_samples, capacity)
        chosen: dict[tuple[int, ...], None] = {}
        for _ in range(100 * n_samples):
            if len(chosen) >= wanted:
                break
            chosen.setdefault(tuple(int(v) for v in rng.integers(lower, upper + 1)), None)
        return np.array(list(chosen), dtype=float)

"""Mutation for integer-encoded categorical genes."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from pymoo.core.mutation import Mutation


class ResampleMutation(Mutation):
    """Give each gene, with probability ``gene_probability``, a different value drawn uniformly.

    At least one gene always changes, so an offspring never equals the parent it came from
    (the polynomial mutation meant for real numbers barely moves small integer ranges,
    which starves a small categorical space of new individuals).

    Parameters
    ----------
    gene_probability
        Chance that each gene is resampled; default ``1 / number of genes``.
    """

    def __init__(self, *, gene_probability: Optional[float] = None) -> None:
        super().__init__()
        if gene_probability is not None and not 0 < gene_probability <= 1:
            raise ValueError(f"gene_probability must be in (0, 1], got {gene_probability!r}")
        self.gene_probability = gene_probability

    def _do(self, problem: Any, X: np.ndarray, random_state: Optional[np.random.Generator] = None,
            **kwargs: Any) -> np.ndarray:
        rng = random_state if random_state is not None else np.random.default_rng()
        X = np.array(X, dtype=float, copy=True)
        lower, upper = np.asarray(problem.xl, dtype=int), np.asarray(problem.xu, dtype=int)
        mutable_genes = np.flatnonzero(upper > lower)
        if len(mutable_genes) == 0:
            return X
        probability = self.gene_probability or 1.0 / len(mutable_genes)
        for row in X:
            chosen = [g for g in mutable_genes if rng.random() < probability]
            if not chosen:
                chosen = [rng.choice(mutable_genes)]
            for gene in chosen:
                current = int(round(row[gene]))
                others = [v for v in range(lower[gene], upper[gene] + 1) if v != current]
                row[gene] = rng.choice(others)
        return X

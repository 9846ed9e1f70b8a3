"""Surrogate models of the objectives no estimator answers before training (accuracy, ...).

A surrogate maps a candidate's inputs (its gene indices, plus the log10 of the hardware metrics
known before training) to a predicted value and an uncertainty. The default is a Gaussian
process (:class:`GaussianProcessSurrogate`): ``benchmarks/surrogate_choice.py`` measured the
rank correlation (Kendall's tau) of predicted and true accuracy on held-out architectures after
25-200 training points, and the Gaussian process ranked best or tied-best on both benchmark spaces
(cnn-864, measured accuracy: 0.45-0.59 against 0.37-0.56 for extra trees, 0.41-0.59 for a random
forest; nascaps-124k: 0.68-0.78 against 0.44-0.72), also among the most accurate architectures,
where a search spends its trainings; it fits in 20 ms to 1.5 s at 200 points on 2 cores. Extra
trees (:class:`ExtraTreesSurrogate`) are the faster alternative. Tables: docs/benchmarks.md.
"""

from __future__ import annotations

import warnings
from typing import Optional, Protocol

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel


class Surrogate(Protocol):
    """What the surrogate-assisted search needs of a model."""

    def fit(self, genes: np.ndarray, values: np.ndarray, *, seed: int) -> None:
        """Fit on integer gene vectors ``(n, n_genes)`` and their values ``(n,)``."""

    def predict(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted values and their uncertainty (standard deviation), each ``(n,)``."""


class ExtraTreesSurrogate:
    """Extra trees (Geurts et al. 2006) on gene indices; uncertainty = spread of the trees.

    Parameters
    ----------
    n_estimators
        Trees in the ensemble.
    min_samples_leaf
        Smallest leaf (larger: smoother predictions).
    """

    def __init__(self, *, n_estimators: int = 100, min_samples_leaf: int = 1) -> None:
        if n_estimators < 2:
            raise ValueError(f"n_estimators must be >= 2 (the uncertainty is the trees' spread), got {n_estimators}")
        if min_samples_leaf < 1:
            raise ValueError(f"min_samples_leaf must be >= 1, got {min_samples_leaf}")
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self._model: Optional[ExtraTreesRegressor] = None

    def __repr__(self) -> str:
        return f"ExtraTreesSurrogate(n_estimators={self.n_estimators}, min_samples_leaf={self.min_samples_leaf})"

    def fit(self, genes: np.ndarray, values: np.ndarray, *, seed: int) -> None:
        genes, values = np.asarray(genes, dtype=float), np.asarray(values, dtype=float)
        if genes.ndim != 2 or len(genes) != len(values) or len(values) < 2:
            raise ValueError(f"need at least 2 gene vectors with one value each, got genes {genes.shape} and "
                             f"values {values.shape}")
        self._model = ExtraTreesRegressor(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                          random_state=seed, n_jobs=1).fit(genes, values)

    def predict(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._model is None:
            raise RuntimeError("the surrogate has not been fitted")
        genes = np.asarray(genes, dtype=float)
        per_tree = np.stack([tree.predict(genes) for tree in self._model.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)


class GaussianProcessSurrogate:
    """A Gaussian process (Matern 5/2 plus white noise, inputs standardised); uncertainty = its
    posterior standard deviation. Smoother than trees, slower to fit (about a second at 200
    points on 2 cores)."""

    def __init__(self) -> None:
        self._model: Optional[GaussianProcessRegressor] = None
        self._mean: Optional[np.ndarray] = None
        self._scale: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return "GaussianProcessSurrogate()"

    def fit(self, genes: np.ndarray, values: np.ndarray, *, seed: int) -> None:
        genes, values = np.asarray(genes, dtype=float), np.asarray(values, dtype=float)
        if genes.ndim != 2 or len(genes) != len(values) or len(values) < 2:
            raise ValueError(f"need at least 2 gene vectors with one value each, got genes {genes.shape} and "
                             f"values {values.shape}")
        self._mean, spread = genes.mean(axis=0), genes.std(axis=0)
        self._scale = np.where(spread > 0, spread, 1.0)
        kernel = ConstantKernel() * Matern(length_scale=np.ones(genes.shape[1]), nu=2.5) + WhiteKernel()
        self._model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)
        with warnings.catch_warnings():  # length scales at their bounds: harmless for ranking
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._model.fit((genes - self._mean) / self._scale, values)

    def predict(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._model is None:
            raise RuntimeError("the surrogate has not been fitted")
        mean, std = self._model.predict((np.asarray(genes, dtype=float) - self._mean) / self._scale, return_std=True)
        return mean, std

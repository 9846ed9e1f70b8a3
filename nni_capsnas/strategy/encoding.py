"""Integer encoding of an NNI model space's labelled choices, for genetic algorithms."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from nni.mutable import Categorical, Mutable, MutableAnnotation


class SampleCodec:
    """Turns NNI samples into integer vectors and back.

    Every label of ``space.simplify()`` becomes one gene: the index of its value among the
    candidates. Only categorical labels can be encoded.

    Parameters
    ----------
    mutables
        ``model_space.simplify()``: label -> mutable.
    """

    def __init__(self, mutables: Mapping[str, Mutable]) -> None:
        self.labels: list[str] = []
        self.values: list[list[Any]] = []
        for label, mutable in mutables.items():
            if isinstance(mutable, MutableAnnotation):
                continue
            if not isinstance(mutable, Categorical):
                raise ValueError(
                    f"label {label!r} is a {type(mutable).__name__}; NSGA2 encodes only categorical "
                    "choices (nni.choice)")
            self.labels.append(str(label))
            self.values.append(list(mutable.values))
        if not self.labels:
            raise ValueError("the model space has no categorical choices to search")

    @property
    def upper_bounds(self) -> np.ndarray:
        """Largest index of every gene."""
        return np.array([len(v) - 1 for v in self.values], dtype=int)

    @property
    def space_size(self) -> int:
        """Number of distinct vectors (before the space's own constraints)."""
        return int(np.prod([len(v) for v in self.values], dtype=object))

    def decode(self, vector: Sequence[int]) -> dict[str, Any]:
        """The NNI sample (label -> value) of an integer vector."""
        if len(vector) != len(self.labels):
            raise ValueError(f"vector must have {len(self.labels)} genes, got {len(vector)}")
        sample = {}
        for label, values, index in zip(self.labels, self.values, vector):
            index = int(index)
            if not 0 <= index < len(values):
                raise ValueError(f"gene {label!r} must be in [0, {len(values) - 1}], got {index}")
            sample[label] = values[index]
        return sample

    def encode(self, sample: Mapping[str, Any]) -> tuple[int, ...]:
        """The integer vector of an NNI sample."""
        vector = []
        for label, values in zip(self.labels, self.values):
            if label not in sample:
                raise ValueError(f"sample lacks label {label!r}")
            if sample[label] not in values:
                raise ValueError(f"label {label!r} must be one of {values}, got {sample[label]!r}")
            vector.append(values.index(sample[label]))
        return tuple(vector)

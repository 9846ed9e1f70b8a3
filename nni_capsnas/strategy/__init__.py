"""Search strategies that plug into NNI's experiment manager."""

from .nsga2 import NSGA2

__all__ = ["NSGA2"]

"""NNI model spaces and reference networks built from :mod:`nni_capsnas.modules`."""

from .capsnet_space import CapsNetSpace
from .reference import CapsNet, DeepCaps, capsnet, deepcaps

__all__ = ["CapsNet", "CapsNetSpace", "DeepCaps", "capsnet", "deepcaps"]

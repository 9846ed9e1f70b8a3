"""NNI model spaces and reference networks built from :mod:`nni_capsnas.modules`."""

from .capsnet_space import CapsNetSpace
from .cnn_space import CNNPlan, CNNSpace
from .nascaps_space import NASCapsPlan, NASCapsSpace
from .reference import CapsNet, DeepCaps, capsnet, deepcaps

__all__ = ["CNNPlan", "CNNSpace", "CapsNet", "CapsNetSpace", "DeepCaps", "NASCapsPlan", "NASCapsSpace",
           "capsnet", "deepcaps"]

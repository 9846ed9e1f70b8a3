"""Capsule layers as NNI mutable modules (every argument may be an ``nni.choice``)."""

from ._checks import check_positive
from .caps_cell import CapsCell
from .capsule_ops import capsule_length, class_scores, mask_capsules
from .class_caps import ClassCaps
from .class_logits import CAPSULE_LOGITS, DEFAULT_CAPSULE_LOGITS, check_capsule_logits, class_logits
from .conv_caps2d import ConvCaps2d
from .conv_caps3d import ConvCaps3d
from .decoder import ReconstructionDecoder
from .flatten_caps import FlattenCaps
from .margin_loss import MarginLoss
from .oneshot import MixedCapsOperation, capsule_oneshot_hooks
from .primary_caps import PrimaryCaps
from .routing import dynamic_routing
from .squash import squash

__all__ = [
    "CAPSULE_LOGITS", "DEFAULT_CAPSULE_LOGITS", "CapsCell", "ClassCaps", "check_positive", "ConvCaps2d",
    "ConvCaps3d", "FlattenCaps", "MarginLoss", "MixedCapsOperation", "PrimaryCaps", "ReconstructionDecoder",
    "capsule_length", "capsule_oneshot_hooks", "check_capsule_logits", "class_logits", "class_scores",
    "dynamic_routing", "mask_capsules", "squash",
]

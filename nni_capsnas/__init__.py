"""nni-capsnas: hardware-aware NAS for capsule networks and CNNs, as an NNI 3.0 plugin."""

__version__ = "0.1.0"

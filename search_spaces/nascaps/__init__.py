"""NASCaps (Marchisio et al., ICCAD 2020): networks from chromosomes."""

from .chromosome import CapsulesToMap, MapToCapsules, NASCapsNetwork, from_chromosome, load_chromosome

__all__ = ["CapsulesToMap", "MapToCapsules", "NASCapsNetwork", "from_chromosome", "load_chromosome"]

"""NASCaps' 45 nm synthesis results: power of a processing element and of a register.

The tables ``data/pe.json.gz`` and ``data/mem.json.gz`` were published with NASCaps
(github.com/ehw-fit/nascaps, MIT licence, see ``data/README.md``). Powers are in mW.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from importlib import resources
from typing import Any

_PE_TABLE = "pe.json.gz"
_REGISTER_TABLE = "mem.json.gz"


@functools.lru_cache(maxsize=4)
def _load(table: str) -> dict[str, dict[str, Any]]:
    """The parsed table ``table`` from the package data (cached: the files never change)."""
    with resources.files("hw_estimators").joinpath("data", table).open("rb") as handle:
        with gzip.open(handle, "rt", encoding="utf-8") as text:
            return json.load(text)


def _as_int_period(period_ns: float) -> int:
    if float(period_ns) != int(period_ns):
        raise ValueError(f"period_ns must be a whole number of nanoseconds for the synthesis tables, got {period_ns!r}")
    return int(period_ns)


def pe_power_mw(*, period_ns: float, pe_width: int, pe_stages: int, accumulator_bits: int) -> float:
    """Power of one processing element (multiplier + adder tree + accumulator), in mW.

    Parameters
    ----------
    period_ns
        Clock period in ns (the table holds 1, 2, 3 and 4 ns).
    pe_width
        Inputs multiplied and summed per PE per cycle (the table's ``ninputs``).
    pe_stages
        Pipeline stages of a PE (1 or 2).
    accumulator_bits
        Output (accumulator) width; the table holds 25 bits.

    Raises
    ------
    ValueError
        If the table has no single, finite entry for this configuration.
    """
    period = _as_int_period(period_ns)
    matches = [entry for key, entry in _load(_PE_TABLE).items()
               if "_same" not in key and entry["period"] == period and entry["nout"] == accumulator_bits
               and entry["stages"] == pe_stages and entry["ninputs"] == pe_width]
    if len(matches) != 1:
        raise ValueError(
            f"pe.json.gz has {len(matches)} entries for period_ns={period_ns}, pe_width={pe_width}, "
            f"pe_stages={pe_stages}, accumulator_bits={accumulator_bits}; expected exactly one "
            "(the table covers periods 1-4 ns, 25-bit accumulators, 1-2 stages): give pe_power_mw explicitly")
    power = float(matches[0]["pdk45_pwr"])
    if not math.isfinite(power):
        raise ValueError(
            f"pe.json.gz has no power figure for period_ns={period_ns}, pe_width={pe_width}, pe_stages={pe_stages} "
            "(synthesis failed to meet timing): give pe_power_mw explicitly")
    return power


def register_power_mw(*, period_ns: float, bits: int) -> float:
    """Power of one ``bits``-wide register clocked every ``period_ns`` ns, in mW.

    Raises
    ------
    ValueError
        If the table has no entry for this configuration.
    """
    key = f"p{_as_int_period(period_ns):02d}_b{int(bits):02d}"
    table = _load(_REGISTER_TABLE)
    if key not in table:
        raise ValueError(f"mem.json.gz has no entry {key!r} for period_ns={period_ns}, bits={bits}; "
                         f"available: {sorted(table)}: give register_power_mw explicitly")
    return float(table[key]["pdk45_pwr"])

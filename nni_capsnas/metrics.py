"""The metric registry: every metric a search can report, optimise, constrain, tabulate or plot.

One entry per metric, read by the trial evaluator (what a trial reports), the strategies
(objective directions, the hardware metrics known before training, E2RNAS' resource terms),
configuration validation, the report and its plots. A new objective is one new entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

#: Where a metric's value comes from.
TRIAL = "trial"            # measured by training / attacking the network in the trial
ESTIMATOR = "estimator"    # modelled by the hardware estimator from the network alone (known before training)
HOST = "host"              # measured on the machine that ran the trial (onnxruntime on its CPU)
SOURCES = (TRIAL, ESTIMATOR, HOST)
DIRECTIONS = ("max", "min")


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes
    ----------
    name
        Key in the trials' metric dict, the config and the report's columns.
    direction
        ``"max"`` or ``"min"``: which way is better.
    unit
        Unit as shown after values (``""`` for counts and fractions).
    label
        Human-readable name for plot axes and tables.
    source
        :data:`TRIAL`, :data:`ESTIMATOR` or :data:`HOST`.
    log_scale
        Whether differences are relative (costs spanning decades): plots, hypervolumes and
        surrogate-guided selection compare its logarithm.
    """

    name: str
    direction: str
    unit: str
    label: str
    source: str
    log_scale: bool = False

    @property
    def axis_label(self) -> str:
        """``label (unit)`` for plots."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def known_before_training(self) -> bool:
        """Whether the hardware estimator answers it from the architecture alone."""
        return self.source == ESTIMATOR


METRICS: Mapping[str, Metric] = {metric.name: metric for metric in (
    Metric("accuracy", "max", "", "held-out accuracy", TRIAL),
    Metric("robust_accuracy", "max", "", "robust accuracy (attacked held-out split)", TRIAL),
    Metric("energy_mj", "min", "mJ", "energy per inference", ESTIMATOR, log_scale=True),
    Metric("latency_ms", "min", "ms", "latency per inference", ESTIMATOR, log_scale=True),
    Metric("memory_kib", "min", "KiB", "memory", ESTIMATOR, log_scale=True),
    Metric("macs", "min", "MACs", "multiply-accumulates", ESTIMATOR, log_scale=True),
    Metric("params", "min", "", "parameters", ESTIMATOR, log_scale=True),
    Metric("host_latency_ms", "min", "ms", "measured CPU latency (onnxruntime)", HOST, log_scale=True),
    Metric("train_seconds", "min", "s", "training time", TRIAL, log_scale=True),
)}

#: NNI's main metric (the web UI's curve): a copy of one of the metrics above.
DEFAULT_KEY = "default"
#: Not a metric: where the trial trained (``"cpu"``, ``"cuda:0"``), a string beside the metrics in its dict.
DEVICE_KEY = "device"
#: What a search optimises unless told otherwise.
DEFAULT_OBJECTIVES: Mapping[str, str] = {"accuracy": "max", "energy_mj": "min", "latency_ms": "min",
                                         "memory_kib": "min"}
#: Metrics the hardware estimator answers (``network_cost``, ``SampleCostEstimator``).
ESTIMATOR_METRICS: tuple[str, ...] = tuple(name for name, m in METRICS.items() if m.source == ESTIMATOR)


def metric(name: str) -> Metric:
    """The registry entry of ``name``.

    Raises
    ------
    ValueError
        Naming the metric and the known ones.
    """
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}") from None


def check_directions(directions: Mapping[str, str], *, known_only: bool = False,
                     owner: str = "objectives") -> dict[str, str]:
    """Validate ``{metric: "max" | "min"}``; returns a plain copy.

    Parameters
    ----------
    directions
        Objectives as the user wrote them.
    known_only
        Also require every metric to be in the registry (or ``default``): for searches whose
        trials run the project's evaluator, which reports only registry metrics.
    owner
        How the mapping is named in messages (e.g. ``strategy.objectives``).

    Raises
    ------
    ValueError
        Naming the first bad entry.
    """
    if not directions:
        raise ValueError(f"{owner} must name at least one metric")
    for name, direction in directions.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"{owner}.{name}: must be 'max' or 'min', got {direction!r}")
        if known_only and name != DEFAULT_KEY and name not in METRICS:
            raise ValueError(f"{owner}.{name}: unknown metric; expected one of {', '.join(METRICS)}")
    return dict(directions)


def axis_label(name: str) -> str:
    """Plot label of a metric (its name when it is not in the registry)."""
    entry: Optional[Metric] = METRICS.get(name)
    return entry.axis_label if entry is not None else name


def is_log_scale(name: str) -> bool:
    """Whether metric ``name`` is compared on a log scale (``False`` when it is not in the registry)."""
    entry: Optional[Metric] = METRICS.get(name)
    return entry is not None and entry.log_scale

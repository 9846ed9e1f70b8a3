"""Resource costs of a differentiable supernet as functions of its architecture probabilities.

NNI's ``penalty=`` has no effect in NNI 3.0 (its probabilities are floats); the costs here are
tensors that carry gradients to the architecture parameters ``alpha``.

Two estimators:

:class:`ExpectedParams` (exact, module-local)
    The expected parameter count, ``E[params] = sum over modules of E[params(module)]`` by
    linearity of expectation. A module whose size depends on searched labels is a supernet
    module, and its expectation is enumerated over *its own* labels only, with their
    probabilities multiplied (labels independent, as DARTS' softmaxes are):

    - ``LayerChoice`` (``DifferentiableMixedLayer``): ``sum_k p_k E[params(candidate_k)]``;
    - mutable arguments (any ``MixedOperation``, NNI's convolutions and linear layers and the
      capsule layers of :mod:`nni_capsnas.modules.oneshot`): ``sum_configs prod p * params``,
      the parameters of the layer built with that configuration;
    - ``Repeat``: ``sum_i P(depth > i) E[params(block_i)]``;
    - NNI ``Cell`` (``DifferentiableMixedCell``): every edge's operations weighted by the edge's
      softmax (including its "none" slot) — the DARTS relaxation E2RNAS uses. For cells this is
      the expectation over the *supernet relaxation*, not over the architecture DARTS derives
      (which keeps the top two edges per node).

    For spaces without cells it equals the expectation of the parameter count of
    ``space.freeze(sample)`` over samples drawn from the architecture distribution (tested
    against brute-force enumeration and against NNI's ``NumParamsProfiler`` +
    ``expression_expectation``, which do not handle capsule layers or cells).

:class:`ExpectedLabelCost` with a :class:`HardwareCostTable` (first-order, label-level)
    Energy, latency, memory or MACs from the hardware estimator are properties of whole
    networks. They are estimated once, before the search, for a reference architecture (each
    label at its first value) and for every single-label change of it; then
    ``E[cost] ~= cost(ref) + sum_label sum_v p_label(v) (cost(ref | label=v) - cost(ref))``.
    This is exact when the cost is additive over labels (true of per-layer sums whose layers
    each depend on one label) and at every architecture differing from the reference in one
    label; interactions between labels (e.g. capsule count x capsule dimension in one layer)
    are linearised around the reference. It needs one architecture parameter per label, so it
    is not available for NNI cells (whose parameters are per edge): use ``params`` there.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn
from nni.mutable import Categorical, CategoricalMultiple
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import (
    DifferentiableMixedCell, DifferentiableMixedLayer, DifferentiableMixedRepeat, MixedOpDifferentiablePolicy,
)
from nni.nas.oneshot.pytorch.supermodule.operation import MixedOperation

from ..hardware_cost import SampleCostEstimator
from ..metrics import ESTIMATOR_METRICS
from ..nni_compat.supernet import (architecture_logits, is_architecture_parameter, label_softmax,
                                   traverse_all_options)

_logger = logging.getLogger(__name__)

#: Metrics a :class:`HardwareCostTable` provides: the estimator's, but ``params``, whose expectation
#: :class:`ExpectedParams` computes exactly.
HARDWARE_METRICS: tuple[str, ...] = tuple(name for name in ESTIMATOR_METRICS if name != "params")

Term = Callable[[], torch.Tensor]


@dataclass
class _Expectation:
    """``constant + sum(term() for term in terms)``."""

    constant: float = 0.0
    terms: list[Term] = field(default_factory=list)

    def add(self, other: _Expectation) -> None:
        self.constant += other.constant
        self.terms.extend(other.terms)

    def value(self) -> torch.Tensor:
        total = torch.tensor(self.constant, dtype=torch.float64)
        for term in self.terms:
            total = total + term().to(torch.float64)
        return total


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _config_params(operation: MixedOperation, sample: Mapping[str, Any]) -> int:
    """Parameters of ``operation``'s layer built with ``sample`` (on the meta device, no memory)."""
    arguments = dict(operation.init_arguments)
    for name, expression in operation.mutable_arguments.items():
        arguments[name] = expression.freeze(dict(sample))
    with torch.device("meta"):
        return _count(operation.bound_type(**arguments))


class ExpectedParams:
    """Expected parameter count of a differentiable supernet (see the module docstring).

    The structure is analysed once at construction (one small layer built per configuration of
    each mixed operation, on the meta device); each call is a few tensor operations.

    Parameters
    ----------
    supernet
        The model space after a differentiable strategy's ``mutate_model`` (DARTS, E2RNAS).
    """

    def __init__(self, supernet: nn.Module) -> None:
        self._arch_ids: set[int] = set()
        for module in supernet.modules():
            if isinstance(module, BaseSuperNetModule) and hasattr(module, "arch_parameters"):
                self._arch_ids.update(id(p) for p in module.arch_parameters())
        self._seen: set[int] = set()
        self._expectation = self._module(supernet)
        _logger.debug("expected parameters: constant %d, %d probability-weighted terms",
                      self._expectation.constant, len(self._expectation.terms))

    @property
    def constant(self) -> float:
        """Parameters that do not depend on the architecture."""
        return self._expectation.constant

    def __call__(self) -> torch.Tensor:
        """``E[params]`` as a float64 scalar tensor, differentiable w.r.t. the architecture parameters."""
        return self._expectation.value()

    # -- structure -------------------------------------------------------------------------

    def _own(self, module: nn.Module) -> float:
        total = 0
        for parameter in module.parameters(recurse=False):
            if id(parameter) in self._arch_ids or id(parameter) in self._seen:
                continue
            self._seen.add(id(parameter))
            total += parameter.numel()
        return float(total)

    def _module(self, module: nn.Module) -> _Expectation:
        if isinstance(module, DifferentiableMixedLayer):
            return self._mixed_layer(module)
        if isinstance(module, DifferentiableMixedCell):
            return self._mixed_cell(module)
        if isinstance(module, DifferentiableMixedRepeat):
            return self._mixed_repeat(module)
        if isinstance(module, MixedOperation):
            return self._mixed_operation(module)
        result = _Expectation(self._own(module))
        for child in module.children():
            result.add(self._module(child))
        return result

    def _weighted(self, alpha: torch.Tensor, softmax: Callable, branches: Sequence[_Expectation]) -> Term:
        def term() -> torch.Tensor:
            probs = softmax(alpha)
            total = probs.new_zeros(())
            for k, branch in enumerate(branches):
                total = total + probs[k] * branch.value().to(probs.dtype)
            return total
        return term

    def _mixed_layer(self, module: DifferentiableMixedLayer) -> _Expectation:
        branches = [self._module(module[name]) for name in module.names]
        weighted = self._weighted(architecture_logits(module), label_softmax(module), branches)
        return _Expectation(self._own(module), [weighted])

    def _mixed_cell(self, module: DifferentiableMixedCell) -> _Expectation:
        result = _Expectation()
        for name, child in module.named_children():
            if name != "ops" and not is_architecture_parameter(name):
                result.add(self._module(child))
        softmax = label_softmax(module)
        for i, node_ops in enumerate(module.ops, start=module.num_predecessors):
            for j, edge in enumerate(node_ops):
                branches = [self._module(op) for op in edge.values()]  # the "none" slot, if any, costs 0
                alpha = architecture_logits(module)[f"{module.label}/{i}_{j}"]
                result.terms.append(self._weighted(alpha, softmax, branches))
        return result

    def _mixed_repeat(self, module: DifferentiableMixedRepeat) -> _Expectation:
        blocks = [self._module(block) for block in module.blocks]
        alphas, softmax, depth = architecture_logits(module), label_softmax(module), module.depth_choice

        def term() -> torch.Tensor:
            weights = {label: softmax(alpha) for label, alpha in alphas.items()}
            distribution = traverse_all_options(depth, weights=weights)
            total = torch.zeros((), dtype=torch.float64)
            for index, block in enumerate(blocks):
                survive = sum(prob for value, prob in distribution if value > index)
                total = total + survive * block.value()
            return total

        return _Expectation(self._own(module), [term])

    def _mixed_operation(self, module: MixedOperation) -> _Expectation:
        if not isinstance(getattr(module, "sampling_policy", None), MixedOpDifferentiablePolicy):
            raise ValueError(f"{type(module).__name__} is not a differentiable mixed operation; "
                             "ExpectedParams needs a supernet built by DARTS-like strategies")
        for parameter in module.parameters():
            self._seen.add(id(parameter))
        labels = [(label, mutable) for label, mutable in module.simplify().items()]
        for label, mutable in labels:
            if not isinstance(mutable, Categorical):
                raise ValueError(f"label {label!r} of {type(module).__name__} is {type(mutable).__name__}; "
                                 "only categorical choices have an expected size")
        table = []
        for indices in itertools.product(*(range(len(m.values)) for _, m in labels)):
            sample = {label: m.values[i] for (label, m), i in zip(labels, indices)}
            table.append((indices, float(_config_params(module, sample))))
        alphas, softmax = architecture_logits(module), label_softmax(module)

        def term() -> torch.Tensor:
            probs = [softmax(alphas[label]) for label, _ in labels]
            total = probs[0].new_zeros(()) if probs else torch.zeros(())
            for indices, count in table:
                weight = torch.stack([p[i] for p, i in zip(probs, indices)]).prod() if probs else 1.0
                total = total + weight * count
            return total

        if not labels:
            return _Expectation(table[0][1])
        return _Expectation(0.0, [term])


# --- hardware costs: label-level, first order -----------------------------------------------


def _label_values(mutable: Any, label: str) -> list[Any]:
    if isinstance(mutable, CategoricalMultiple):
        if mutable.n_chosen != 1:
            raise ValueError(f"label {label!r} chooses {mutable.n_chosen} of several inputs; label-level "
                             "hardware costs handle categorical labels and single-input choices only")
        return [[value] for value in mutable.values]
    if isinstance(mutable, Categorical):
        return list(mutable.values)
    raise ValueError(f"label {label!r} is a {type(mutable).__name__}; label-level hardware costs handle "
                     "categorical labels only")


@dataclass(frozen=True)
class HardwareCostTable:
    """Whole-network hardware estimates of a reference architecture and its one-label changes.

    Attributes
    ----------
    reference
        The reference sample (every label at its first value).
    base
        Metrics of the reference architecture.
    variants
        ``variants[label][k]``: metrics with ``label`` set to its ``k``-th value.
    accelerator
        Accelerator the estimates are for.
    """

    reference: dict[str, Any]
    base: dict[str, float]
    variants: dict[str, list[dict[str, float]]]
    accelerator: str

    @classmethod
    def estimate(cls, space: Any, *, input_shape: Sequence[int], accelerator: str = "capsacc",
                 labels: Optional[Sequence[str]] = None) -> HardwareCostTable:
        """Export and estimate ``1 + sum(values - 1)`` frozen networks of ``space``.

        Parameters
        ----------
        space
            An NNI model space (not yet mutated into a supernet, or one whose ``freeze`` still
            builds plain networks).
        input_shape
            ``(channels, height, width)`` of one image.
        accelerator
            Accelerator name or file for :func:`hw_estimators.estimate`.
        labels
            Labels to vary (default: every label of the space).
        """
        mutables = space.simplify()
        estimator = SampleCostEstimator(space, input_shape, accelerator=accelerator)
        values = {label: _label_values(mutable, label) for label, mutable in mutables.items()}
        reference = {label: options[0] for label, options in values.items()}
        base = dict(estimator(reference))
        variants: dict[str, list[dict[str, float]]] = {}
        for label in (labels if labels is not None else list(values)):
            if label not in values:
                raise ValueError(f"label {label!r} is not a label of the space; labels: {sorted(values)}")
            variants[label] = [dict(estimator({**reference, label: value})) for value in values[label]]
        _logger.info("hardware cost table on %s: %d networks estimated", accelerator,
                     1 + sum(len(v) - 1 for v in variants.values()))
        return cls(reference, base, variants, accelerator)


class ExpectedLabelCost:
    """First-order expected hardware cost (see the module docstring).

    Parameters
    ----------
    table
        The estimates.
    metric
        One of :data:`HARDWARE_METRICS`.
    alphas
        Architecture parameter of each label (logits over its values, in order).
    softmax
        Turns logits into probabilities (default ``softmax(dim=-1)``).
    """

    def __init__(self, table: HardwareCostTable, *, metric: str, alphas: Mapping[str, torch.Tensor],
                 softmax: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        if metric not in HARDWARE_METRICS:
            raise ValueError(f"metric must be one of {HARDWARE_METRICS}, got {metric!r}")
        self.metric = metric
        self.base = float(table.base[metric])
        self._probabilities = softmax or (lambda alpha: torch.softmax(alpha, dim=-1))
        self._deltas: list[tuple[torch.Tensor, torch.Tensor]] = []
        for label, variants in table.variants.items():
            deltas = torch.tensor([v[metric] - self.base for v in variants], dtype=torch.float64)
            if bool((deltas == 0).all()):
                continue
            if label not in alphas:
                raise ValueError(f"label {label!r} changes {metric} but has no architecture parameter; "
                                 "label-level costs need one parameter per label (NNI cells have per-edge "
                                 "parameters: use the 'params' metric for cell spaces)")
            if alphas[label].numel() != len(variants):
                raise ValueError(f"architecture parameter of {label!r} has {alphas[label].numel()} entries for "
                                 f"{len(variants)} values")
            self._deltas.append((alphas[label], deltas))

    def __call__(self) -> torch.Tensor:
        """Expected cost as a float64 scalar tensor, on the architecture parameters' device."""
        device = self._deltas[0][0].device if self._deltas else torch.device("cpu")
        total = torch.tensor(self.base, dtype=torch.float64, device=device)
        for index, (alpha, deltas) in enumerate(self._deltas):
            if deltas.device != alpha.device:  # the supernet moved (to a GPU): the table follows it, once
                deltas = deltas.to(alpha.device)
                self._deltas[index] = (alpha, deltas)
            total = total + (self._probabilities(alpha).to(torch.float64) * deltas).sum()
        return total

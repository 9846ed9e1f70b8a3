"""One-shot (weight-sharing) versions of the capsule layers.

NNI's one-shot strategies replace every module that has mutable arguments by a
``MixedOperation``. :class:`MixedCapsOperation` does this generically for any capsule
layer: it owns one *super-kernel* (the layer built with the largest value of every
mutable argument) and runs a concrete configuration by

1. building (once, cached) a template layer of that configuration,
2. slicing the super-kernel's tensors to the template's shapes (the first capsules and,
   within each, the first dimensions; other axes by prefix; convolution kernels from
   their centre, as NNI's ``MixedConv2d``),
3. slicing the input to the sizes the configuration reads, and
4. calling the template with the sliced tensors through ``torch.func.functional_call``.

Differentiable strategies (DARTS, GumbelDARTS) mix the outputs of every configuration,
zero-padded to a common shape, with the product of the architecture probabilities of
the labels involved; path-sampling strategies (RandomOneShot, ENAS) run the sampled one.
Padding with zeros is exact for capsules: a zero capsule casts zero votes.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn
from torch.func import functional_call
from nni.mutable import MutableExpression
from nni.nas.nn.pytorch import ParametrizedModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import MixedOpDifferentiablePolicy
from nni.nas.oneshot.pytorch.supermodule.operation import MixedOperation

from ..nni_compat.supernet import architecture_logits, label_softmax

from .caps_cell import CapsCell
from .class_caps import ClassCaps
from .conv_caps2d import ConvCaps2d
from .conv_caps3d import ConvCaps3d
from .primary_caps import PrimaryCaps

Config = dict[str, Any]


class _SuperKernel(nn.Module):
    """End of the mixed operations' MRO: builds the largest layer as ``self.kernel``."""

    bound_type: ClassVar[type[ParametrizedModule]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kernel = self.bound_type(**kwargs)


def _slice_to(tensor: torch.Tensor, shape: torch.Size, centered: tuple[int, ...]) -> torch.Tensor:
    """Slice ``tensor`` down to ``shape``: prefixes, or centred windows on ``centered`` dims."""
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape)):
        if want > have:
            raise ValueError(f"cannot slice dimension {dim} of size {have} to {want}")
        start = (have - want) // 2 if dim in centered else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


def capsule_axes(module: nn.Module) -> dict[str, dict[int, tuple[int, int]]]:
    """Every parameter axis of ``module`` (and its submodules) that holds (capsules, dim) pairs."""
    axes: dict[str, dict[int, tuple[int, int]]] = {}
    for prefix, submodule in module.named_modules():
        if hasattr(submodule, "capsule_axes"):
            for name, layout in submodule.capsule_axes().items():
                axes[f"{prefix}.{name}" if prefix else name] = layout
    return axes


def _slice_capsule_axis(tensor: torch.Tensor, axis: int, have: tuple[int, int],
                        want: tuple[int, int]) -> torch.Tensor:
    """Keep the first ``want`` (capsules, dim) of an axis laid out as ``have``."""
    shape = tensor.shape
    grouped = tensor.reshape(*shape[:axis], have[0], have[1], *shape[axis + 1:])
    index = [slice(None)] * grouped.dim()
    index[axis], index[axis + 1] = slice(0, want[0]), slice(0, want[1])
    return grouped[tuple(index)].reshape(*shape[:axis], want[0] * want[1], *shape[axis + 1:])


def _pad_to(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad ``tensor`` at the end of every dimension up to ``shape``."""
    if tuple(tensor.shape) == shape:
        return tensor
    padding: list[int] = []
    for have, want in zip(reversed(tensor.shape), reversed(shape)):
        padding += [0, want - have]
    return nn.functional.pad(tensor, padding)


class MixedCapsOperation(MixedOperation, _SuperKernel):
    """Weight-sharing supernet version of a capsule layer (see the module docstring).

    Subclasses set ``bound_type`` (the layer class), ``argument_list`` (the arguments that
    may be mutable) and ``input_dims`` (input tensor dimension sized by an argument).
    """

    input_dims: ClassVar[dict[str, int]] = {}

    def super_init_argument(self, name: str, value_choice: MutableExpression) -> Any:
        return max(value_choice.grid())

    def __post_init__(self) -> None:
        self._templates: dict[tuple, nn.Module] = {}

    @classmethod
    def mutate(cls, module: nn.Module, name: str, memo: dict, mutate_kwargs: dict) -> Any:
        if type(module) is not cls.bound_type or not module.simplify():
            return None
        return super().mutate(module, name, memo, mutate_kwargs)

    def _template(self, config: Config) -> nn.Module:
        key = tuple(sorted(config.items()))
        if key not in self._templates:
            self._templates[key] = self.bound_type(**config).to(
                device=self.kernel_device(), dtype=self.kernel_dtype())
        return self._templates[key]

    def kernel_device(self) -> torch.device:
        return next(self.kernel.parameters()).device

    def kernel_dtype(self) -> torch.dtype:
        return next(self.kernel.parameters()).dtype

    def _sliced_tensors(self, template: nn.Module) -> dict[str, torch.Tensor]:
        """The super-kernel's tensors cut to the template's shapes.

        Axes holding (capsules, dim) pairs keep the first capsules and, within each, the
        first dimensions, so a capsule of a small configuration is the same capsule of the
        super-kernel (matching the zero-padding of outputs); other axes keep a prefix, and
        convolution kernels their centre.
        """
        source = dict(itertools.chain(self.kernel.named_parameters(), self.kernel.named_buffers()))
        super_axes, template_axes = capsule_axes(self.kernel), capsule_axes(template)
        sliced = {}
        for name, target in itertools.chain(template.named_parameters(), template.named_buffers()):
            tensor = source[name]
            for axis, want in template_axes.get(name, {}).items():
                tensor = _slice_capsule_axis(tensor, axis, super_axes[name][axis], want)
            owner = template.get_submodule(name.rpartition(".")[0])
            is_kernel = isinstance(owner, nn.modules.conv._ConvNd) and name.endswith("weight")
            centered = (target.dim() - 2, target.dim() - 1) if is_kernel else ()
            sliced[name] = _slice_to(tensor, target.shape, centered)
        return sliced

    def _output_labels(self) -> set[str]:
        """Labels of the arguments that shape the output (not only the input's size)."""
        labels: set[str] = set()
        for name, expression in self.mutable_arguments.items():
            if name not in self.input_dims:
                labels.update(expression.simplify())
        return labels

    def _full_config(self, sample: dict[str, Any]) -> Config:
        """Arguments for ``sample``; input sizes missing from it stay at their maximum.

        In a differentiable supernet the input already is the probability-weighted mix of
        the upstream candidates, zero-padded to the largest: reading it whole is exact.
        """
        config = dict(self.init_arguments)
        for name, expression in self.mutable_arguments.items():
            if name in self.input_dims and not set(expression.simplify()) <= set(sample):
                config[name] = self.super_init_argument(name, expression)
            else:
                config[name] = expression.freeze(sample)
        return config

    def weighted_configs(self) -> Iterator[tuple[Config, Any]]:
        """Configurations to run and their weights (probabilities, or 1 when sampled)."""
        if isinstance(self.sampling_policy, MixedOpDifferentiablePolicy):
            labels = [(label, mutable) for label, mutable in self.simplify().items()
                      if label in self._output_labels()]
            logits, softmax = architecture_logits(self), label_softmax(self)
            probs = [softmax(logits[label]) for label, _ in labels]
            for indices in itertools.product(*(range(len(m.values)) for _, m in labels)):
                sample = {label: m.values[i] for (label, m), i in zip(labels, indices)}
                weight = torch.stack([p[i] for p, i in zip(probs, indices)]).prod()
                yield self._full_config(sample), weight
        else:
            config = dict(self.init_arguments)
            config.update({name: self.forward_argument(name) for name in self.mutable_arguments})
            yield config, 1.0

    def run_config(self, config: Config, x: torch.Tensor) -> torch.Tensor:
        """Output of the layer with configuration ``config``, sharing the super-kernel."""
        template = self._template(config)
        index = [slice(None)] * x.dim()
        for argument, dim in self.input_dims.items():
            index[dim] = slice(0, config[argument])
        return functional_call(template, self._sliced_tensors(template), (x[tuple(index)],))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, weights = [], []
        for config, weight in self.weighted_configs():
            outputs.append(self.run_config(config, x))
            weights.append(weight)
        if len(outputs) == 1:
            return outputs[0]
        shape = tuple(max(sizes) for sizes in zip(*(o.shape for o in outputs)))
        return sum(w * _pad_to(o, shape) for w, o in zip(weights, outputs))

    def freeze_weight(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        template = self._template(kwargs)
        return {name: t.detach().clone() for name, t in self._sliced_tensors(template).items()}


class MixedPrimaryCaps(MixedCapsOperation):
    """Supernet :class:`PrimaryCaps`: searches capsule types, dimensions and kernels."""

    bound_type = PrimaryCaps
    argument_list = ["in_channels", "out_caps", "caps_dim", "kernel_size", "stride", "padding"]
    input_dims = {"in_channels": 1}


class MixedClassCaps(MixedCapsOperation):
    """Supernet :class:`ClassCaps`: searches input/output sizes and routing iterations."""

    bound_type = ClassCaps
    argument_list = ["in_caps", "in_dim", "out_caps", "out_dim", "iterations"]
    input_dims = {"in_caps": 1, "in_dim": 2}


class MixedConvCaps2d(MixedCapsOperation):
    """Supernet :class:`ConvCaps2d`."""

    bound_type = ConvCaps2d
    argument_list = ["in_caps", "in_dim", "out_caps", "out_dim", "kernel_size", "stride"]
    input_dims = {"in_caps": 1, "in_dim": 2}


class MixedConvCaps3d(MixedCapsOperation):
    """Supernet :class:`ConvCaps3d`."""

    bound_type = ConvCaps3d
    argument_list = ["in_caps", "in_dim", "out_caps", "out_dim", "kernel_size", "iterations"]
    input_dims = {"in_caps": 1, "in_dim": 2}


class MixedCapsCell(MixedCapsOperation):
    """Supernet :class:`CapsCell`."""

    bound_type = CapsCell
    argument_list = ["in_caps", "in_dim", "out_caps", "out_dim", "kernel_size", "stride",
                     "routing_skip", "iterations"]
    input_dims = {"in_caps": 1, "in_dim": 2}


MIXED_CAPSULE_OPERATIONS: tuple[type[MixedCapsOperation], ...] = (
    MixedPrimaryCaps, MixedClassCaps, MixedConvCaps2d, MixedConvCaps3d, MixedCapsCell,
)


def capsule_oneshot_hooks(strategy: Any) -> list[Callable]:
    """Mutation hooks that make capsule layers work in NNI's one-shot strategies.

    Return this from a model space's ``extra_oneshot_hooks(strategy)`` classmethod. The
    hooks serve every strategy whose mixed operations take a ``mixed_op_sampling`` policy
    (DARTS, GumbelDARTS, RandomOneShot, ENAS); Proxyless handles only ``LayerChoice``.
    """
    return [operation.mutate for operation in MIXED_CAPSULE_OPERATIONS]

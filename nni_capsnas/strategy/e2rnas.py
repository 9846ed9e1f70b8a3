"""E2RNAS: effective, efficient and robust one-shot search with multiple-gradient descent.

Zhang, Yue et al., "Effective, Efficient and Robust Neural Architecture Search" (arXiv
2011.09820). A first-order DARTS search whose architecture step treats several upper-level
objectives on the validation batch separately:

- ``clean``: the upper-level loss on the clean batch: the evaluator's training loss
  (``upper_loss="training"``: cross-entropy for logits, margin + reconstruction for capsule
  networks) or cross-entropy on the class logits (``upper_loss="cross_entropy"``: the logits,
  or the capsule lengths mapped to logits by ``capsule_logits``, by default their log-odds, see
  :mod:`nni_capsnas.modules.class_logits`: a softmax over raw lengths is nearly uniform);
- ``adversarial``: the same loss on adversarial images from an injected ``adversary``
  (e.g. ``functools.partial(trials.attacks.fgsm, epsilon=0.1, random_start=True)``);
- one term per :class:`~nni_capsnas.strategy.resource.ResourceConstraint`: the expected
  parameter count or hardware cost under the architecture distribution
  (:mod:`nni_capsnas.strategy.expected_cost`), turned into a loss by its constraint mode.

The gradients of the objectives w.r.t. the architecture parameters are combined with MGDA
(:mod:`nni_capsnas.strategy.mgda`): the weights are the min-norm point of the normalised
gradients' convex hull, and the update is ``sum_i w_i grad L_i`` of the raw losses (as in
Sener & Koltun's and E2RNAS' code; ``combine="raw"``), or the min-norm point of the
normalised gradients itself (``combine="normalized"``), so that an objective with a large
gradient (a resource term, typically) does not dominate the direction through its scale.
Objectives whose gradient is exactly zero (a satisfied ``max`` budget) sit out the solve with
weight 0, otherwise their zero vector would *be* the min-norm point and stop the search. The
weight step is DARTS' (optionally mixing in an adversarial loss).

If the adversary accepts an ``input_gradient`` keyword (as :func:`trials.attacks.fgsm` does),
it receives the gradient of the clean upper-level loss w.r.t. the images, computed in the same
backward pass as the clean objective's architecture gradient: FGSM then costs no extra
forward/backward pass (E2RNAS' own shortcut). For capsule networks prefer
``upper_loss="cross_entropy"`` then: the margin loss is flat (zero input gradient) for
confidently classified images, so an FGSM step along its gradient leaves them unperturbed and
the adversarial objective degenerates into a copy of the clean one.

What the search shows: every architecture step records (:class:`ArchitectureStepRecord`) the
objective values, MGDA weights, expected costs, the supernet's accuracy on the clean and the
adversarial batch of the architecture-step split (the epoch's running accuracy goes to the
progress bar and, per epoch, to the log), and, per label, the cosine between the clean and the
adversarial objective's architecture gradients (near 1: the adversarial objective only repeats
the clean one). At the end of the search the probability margin of every label's exported
value is logged, with a warning for each near-tie (:mod:`nni_capsnas.strategy.choice_margin`).

NNI's ``penalty=`` is not used (it has no effect in NNI 3.0).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from torch import nn
from nni.nas.nn.pytorch import Cell
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS

from nni_capsnas.modules import DEFAULT_CAPSULE_LOGITS, check_capsule_logits, class_logits

from ..nni_compat.supernet import architecture_parameters
from .choice_margin import NEAR_TIE_MARGIN, check_near_tie_margin, choice_margins, log_choice_margins
from .expected_cost import ExpectedLabelCost, ExpectedParams, HardwareCostTable
from .mgda import NORMALIZATIONS, min_norm_weights, normalize_gradients
from .resource import ResourceConstraint

_logger = logging.getLogger(__name__)

#: Upper-level losses: the evaluator's training loss, or cross-entropy on the class scores.
UPPER_LOSSES: tuple[str, ...] = ("training", "cross_entropy")
#: What the MGDA weights combine: the raw gradients or the normalised ones.
COMBINE_MODES: tuple[str, ...] = ("raw", "normalized")

#: ``adversary(model, images, labels) -> adversarial images``.
Adversary = Callable[..., torch.Tensor]
ResourceSpec = Union[ResourceConstraint, Mapping[str, Any]]


@dataclass
class ArchitectureStepRecord:
    """What one architecture step did and saw.

    Attributes
    ----------
    epoch, step
        Training epoch and batch index.
    losses, weights
        Value and MGDA weight of every objective.
    expected
        Expected cost of every resource objective.
    accuracy
        The supernet's accuracy on this step's clean batch (``"clean"``) and on its adversarial
        images (``"adversarial"``).
    epoch_accuracy
        Running accuracy of the epoch so far, on the same images.
    cosines
        Per architecture label (and ``"all"`` for the whole vector): cosine between the clean
        and the adversarial objective's architecture gradients (nan where either is zero).
    """

    epoch: int
    step: int
    losses: dict[str, float]
    weights: dict[str, float]
    expected: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    epoch_accuracy: dict[str, float] = field(default_factory=dict)
    cosines: dict[str, float] = field(default_factory=dict)


@dataclass
class _ResourceTerm:
    name: str
    constraint: ResourceConstraint
    expectation: Callable[[], torch.Tensor]


def _accepts_input_gradient(adversary: Optional[Adversary]) -> bool:
    if adversary is None:
        return False
    try:
        return "input_gradient" in inspect.signature(adversary).parameters
    except (TypeError, ValueError):
        return False


def _flat(gradients: Sequence[Optional[torch.Tensor]], parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).to(torch.float64)
                      for g, p in zip(gradients, parameters)])


def _cosine(first: torch.Tensor, second: torch.Tensor) -> float:
    norms = float(first.norm() * second.norm())
    return min(max(float(first @ second) / norms, -1.0), 1.0) if norms > 0 else float("nan")


def label_cosines(first: torch.Tensor, second: torch.Tensor, labels: Sequence[str],
                  sizes: Sequence[int]) -> dict[str, float]:
    """Cosine between two flat architecture gradients, per label (slices of ``sizes``) and ``"all"``."""
    cosines, offset = {}, 0
    for label, size in zip(labels, sizes):
        cosines[label] = _cosine(first[offset:offset + size], second[offset:offset + size])
        offset += size
    cosines["all"] = _cosine(first, second)
    return cosines


@contextlib.contextmanager
def _recorded_outputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of ``model``'s forward passes inside the block."""
    outputs: list[torch.Tensor] = []
    handle = model.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


def _correct(output: torch.Tensor, labels: torch.Tensor) -> int:
    return int((class_logits(output).argmax(dim=1) == labels).sum())


class E2RNASLightningModule(DartsLightningModule):
    """The search loop of :class:`E2RNAS` (see the module docstring).

    Parameters
    ----------
    training_module
        The evaluator's Lightning module.
    adversary
        ``adversary(model, images, labels) -> images``, or ``None`` for no adversarial objective.
    resources
        Resource terms (built by :class:`E2RNAS`).
    gradient_normalization
        ``"l2"``, ``"loss"``, ``"loss+"`` or ``"none"``.
    upper_loss
        ``"training"`` or ``"cross_entropy"``.
    capsule_logits
        How capsule lengths become logits for ``"cross_entropy"`` (see
        :mod:`nni_capsnas.modules.class_logits`).
    combine
        ``"raw"`` or ``"normalized"`` gradients combined with the MGDA weights.
    weight_adversarial
        Fraction of adversarial loss in the weight step (0: clean training).
    near_tie_margin
        Warn at the end of the search about every label whose exported value leads the
        runner-up by less than this probability.
    arc_learning_rate, gradient_clip_val, log_prob_every_n_step, warmup_epochs
        As for NNI's DARTS.
    """

    def __init__(self, training_module: pl.LightningModule, *, adversary: Optional[Adversary] = None,
                 resources: Sequence[_ResourceTerm] = (), gradient_normalization: str = "l2",
                 upper_loss: str = "training", capsule_logits: str = DEFAULT_CAPSULE_LOGITS, combine: str = "raw",
                 weight_adversarial: float = 0.0, near_tie_margin: float = NEAR_TIE_MARGIN,
                 arc_learning_rate: float = 3.0e-4,
                 gradient_clip_val: Optional[float] = None, log_prob_every_n_step: int = 10,
                 warmup_epochs: int = 0) -> None:
        super().__init__(training_module, arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val,
                         log_prob_every_n_step=log_prob_every_n_step, warmup_epochs=warmup_epochs, penalty=None)
        self.adversary = adversary
        self.resources = list(resources)
        self.gradient_normalization = gradient_normalization
        self.upper_loss = upper_loss
        self.capsule_logits = capsule_logits
        self.combine = combine
        self.weight_adversarial = weight_adversarial
        self.near_tie_margin = near_tie_margin
        self._shares_input_gradient = _accepts_input_gradient(adversary)
        self.records: list[ArchitectureStepRecord] = []
        #: ``{"clean" / "adversarial": [correct, images]}`` of the current epoch's architecture steps
        self._epoch_counts: dict[str, list[int]] = {}
        self._ordered_alphas: Optional[list[nn.Parameter]] = None
        self._ordered_labels: Optional[list[str]] = None

    # -- helpers ---------------------------------------------------------------------------

    def ordered_arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters in a fixed order (module order, first occurrence)."""
        if self._ordered_alphas is None:
            wanted = {id(p) for p in self.arch_parameters()}
            ordered, seen = [], set()
            for _, parameter in self.named_parameters(remove_duplicate=False):
                if id(parameter) in wanted and id(parameter) not in seen:
                    seen.add(id(parameter))
                    ordered.append(parameter)
            self._ordered_alphas = ordered
        return self._ordered_alphas

    def _training_loss(self, images: torch.Tensor, labels: torch.Tensor, batch_idx: int) -> torch.Tensor:
        result = self.training_module.training_step((images, labels), batch_idx)
        return result["loss"] if isinstance(result, dict) else result

    def ordered_labels(self) -> list[str]:
        """The label of each of :meth:`ordered_arch_parameters` (``"alpha_<i>"`` where NNI names none)."""
        if self._ordered_labels is None:
            by_id = {id(parameter): label for label, parameter in architecture_parameters(self.model).items()}
            self._ordered_labels = [by_id.get(id(alpha), f"alpha_{index}")
                                    for index, alpha in enumerate(self.ordered_arch_parameters())]
        return self._ordered_labels

    def _upper_loss(self, images: torch.Tensor, labels: torch.Tensor,
                    batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The upper-level loss of a batch and the supernet's output on it."""
        if self.upper_loss == "cross_entropy":
            output = self.model(images)
            return nn.functional.cross_entropy(class_logits(output, self.capsule_logits), labels), output
        with _recorded_outputs(self.model) as outputs:
            loss = self._training_loss(images, labels, batch_idx)
        return loss, outputs[0]

    def _count(self, name: str, output: torch.Tensor, labels: torch.Tensor) -> float:
        """Add a batch to the epoch's accuracy counts; return the batch's accuracy."""
        correct = _correct(output.detach(), labels)
        counts = self._epoch_counts.setdefault(name, [0, 0])
        counts[0] += correct
        counts[1] += len(labels)
        return correct / len(labels)

    def _running_accuracy(self) -> dict[str, float]:
        return {name: correct / total for name, (correct, total) in self._epoch_counts.items() if total}

    def _objective_names(self) -> list[str]:
        names = ["clean"] + (["adversarial"] if self.adversary is not None else [])
        return names + [term.name for term in self.resources]

    # -- the architecture step -------------------------------------------------------------

    def architecture_step(self, batch: Any, batch_idx: int) -> ArchitectureStepRecord:
        """Compute every objective's gradient, solve MGDA and set the architecture gradients."""
        alphas = self.ordered_arch_parameters()
        images, labels = batch
        probe = images.detach().requires_grad_(self._shares_input_gradient)
        clean, output = self._upper_loss(probe, labels, 2 * batch_idx)
        accuracy = {"clean": self._count("clean", output, labels)}
        targets = list(alphas) + ([probe] if self._shares_input_gradient else [])
        gradients = torch.autograd.grad(clean, targets, allow_unused=True)
        losses, vectors = [clean.detach()], [_flat(gradients[:len(alphas)], alphas)]
        cosines: dict[str, float] = {}
        if self.adversary is not None:
            extra = {"input_gradient": gradients[-1]} if self._shares_input_gradient else {}
            adversarial_images = self.adversary(self.model, images.detach(), labels, **extra)
            adversarial, output = self._upper_loss(adversarial_images.detach(), labels, 2 * batch_idx)
            accuracy["adversarial"] = self._count("adversarial", output, labels)
            losses.append(adversarial.detach())
            vectors.append(_flat(torch.autograd.grad(adversarial, alphas, allow_unused=True), alphas))
            cosines = label_cosines(vectors[0], vectors[1], self.ordered_labels(), [a.numel() for a in alphas])
        expected: dict[str, float] = {}
        for term in self.resources:
            value = term.expectation()
            loss = term.constraint.loss(value)
            expected[term.name] = value.item()
            losses.append(loss.detach())
            if loss.requires_grad:
                vectors.append(_flat(torch.autograd.grad(loss, alphas, allow_unused=True), alphas))
            else:
                vectors.append(torch.zeros(sum(a.numel() for a in alphas), dtype=torch.float64))
        # MGDA solves a tiny system (objectives x architecture parameters): on the CPU, whatever the device
        matrix = torch.stack([vector.cpu() for vector in vectors])
        loss_values = torch.stack([value.to("cpu", torch.float64) for value in losses])
        active = torch.nonzero(matrix.norm(dim=1) > 0).flatten()
        weights = torch.zeros(len(vectors), dtype=torch.float64)
        combined = matrix
        if active.numel():
            normalized = normalize_gradients(matrix[active], loss_values[active],
                                             normalization=self.gradient_normalization)
            weights[active] = min_norm_weights(normalized)
            if self.combine == "normalized":
                combined = torch.zeros_like(matrix)
                combined[active] = normalized
        direction = weights @ combined
        offset = 0
        for alpha in alphas:
            size = alpha.numel()
            alpha.grad = direction[offset:offset + size].view_as(alpha).to(alpha.device, alpha.dtype).clone()
            offset += size
        names = self._objective_names()
        record = ArchitectureStepRecord(
            epoch=int(self.trainer.current_epoch) if self._trainer is not None else 0, step=batch_idx,
            losses={name: float(value) for name, value in zip(names, loss_values)},
            weights={name: float(w) for name, w in zip(names, weights)}, expected=expected, accuracy=accuracy,
            epoch_accuracy=self._running_accuracy(), cosines=cosines)
        self.records.append(record)
        self._log_record(record, batch_idx)
        return record

    def _log_record(self, record: ArchitectureStepRecord, batch_idx: int) -> None:
        metrics = {f"e2rnas/loss/{name}": value for name, value in record.losses.items()}
        metrics.update({f"e2rnas/weight/{name}": value for name, value in record.weights.items()})
        metrics.update({f"e2rnas/expected/{name}": value for name, value in record.expected.items()})
        metrics.update({f"e2rnas/accuracy/{name}": value for name, value in record.accuracy.items()})
        metrics.update({f"e2rnas/cosine/{name}": value for name, value in record.cosines.items()})
        if self._trainer is not None:
            self.log_dict(metrics)
            self.log_dict({f"arch_{'acc' if name == 'clean' else 'adv_acc'}": value
                           for name, value in record.epoch_accuracy.items()}, prog_bar=True)
        level = logging.INFO if batch_idx % self.log_prob_every_n_step == 0 else logging.DEBUG
        _logger.log(level, "architecture step %d (epoch %d): losses %s, MGDA weights %s, expected %s, "
                    "accuracy %s, clean/adversarial gradient cosines %s",
                    record.step, record.epoch,
                    {k: round(v, 5) for k, v in record.losses.items()},
                    {k: round(v, 4) for k, v in record.weights.items()},
                    {k: round(v, 4) for k, v in record.expected.items()},
                    {k: round(v, 3) for k, v in record.accuracy.items()},
                    {k: round(v, 3) for k, v in record.cosines.items()})

    # -- what the search shows at epoch and search ends ----------------------------------------

    def on_train_epoch_start(self) -> Any:
        self._epoch_counts = {}
        return super().on_train_epoch_start()

    def on_train_epoch_end(self) -> Any:
        accuracy = self._running_accuracy()
        if accuracy:
            _logger.info("epoch %d: supernet accuracy on the architecture-step split: %s",
                         self.trainer.current_epoch,
                         ", ".join(f"{name} {value:.3f}" for name, value in accuracy.items()))
            self.log_dict({f"e2rnas/epoch_accuracy/{name}": value for name, value in accuracy.items()})
        return super().on_train_epoch_end()

    def on_train_end(self) -> Any:
        log_choice_margins(choice_margins(self.export_probs()), self.near_tie_margin)
        return super().on_train_end()

    # -- one training step -----------------------------------------------------------------

    def _weight_step_loss(self, batch: Any, batch_idx: int) -> Any:
        result = self.training_module.training_step(batch, 2 * batch_idx + 1)
        if self.weight_adversarial > 0 and self.adversary is not None:
            images, labels = batch
            clean = result["loss"] if isinstance(result, dict) else result
            adversarial_images = self.adversary(self.model, images.detach(), labels).detach()
            adversarial = self._training_loss(adversarial_images, labels, 2 * batch_idx + 1)
            mixed = (1 - self.weight_adversarial) * clean + self.weight_adversarial * adversarial
            result = {**result, "loss": mixed} if isinstance(result, dict) else mixed
        return result

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        arc_optim = self.architecture_optimizers()
        if not isinstance(arc_optim, torch.optim.Optimizer):
            raise TypeError(f"expected one architecture optimizer, found {arc_optim!r}")
        if self.warmup_epochs == 0 or self.trainer.current_epoch >= self.warmup_epochs:
            self.resample()
            arc_optim.zero_grad()
            self.architecture_step(batch["val"], batch_idx)
            arc_optim.step()
        self.resample()
        loss_and_metrics = self._weight_step_loss(batch["train"], batch_idx)
        weight_loss = loss_and_metrics["loss"] if isinstance(loss_and_metrics, dict) else loss_and_metrics
        self.advance_optimization(weight_loss, batch_idx, self.gradient_clip_val)
        self.advance_lr_schedulers(batch_idx)
        if batch_idx % self.log_prob_every_n_step == 0:
            self.log_probs(self.export_probs())
        return loss_and_metrics


class E2RNAS(DARTS):
    """E2RNAS one-shot strategy (see the module docstring): DARTS with an MGDA architecture step.

    Use it like NNI's DARTS: ``NasExperiment(space, lightning_evaluator, E2RNAS(...)).run()``,
    then ``exp.export_top_models(formatter="dict")`` and ``space.freeze(sample)`` to retrain.

    Parameters
    ----------
    adversary
        ``adversary(model, images, labels) -> adversarial images`` for the adversarial
        objective (e.g. ``functools.partial(trials.attacks.fgsm, epsilon=0.1,
        random_start=True)``), or ``None`` to leave that objective out.
    resources
        Resource objectives: :class:`ResourceConstraint` objects or mappings with keys
        ``metric``, ``target``, ``mode``.
    gradient_normalization
        MGDA gradient normalisation: ``"l2"``, ``"loss"``, ``"loss+"`` or ``"none"``.
    upper_loss
        Loss of the clean and adversarial objectives: ``"training"`` (the evaluator's
        ``training_step`` loss, as DARTS) or ``"cross_entropy"`` on the class logits (logits, or
        capsule lengths mapped by ``capsule_logits``; recommended for capsule networks with a
        gradient-sharing adversary, see the module docstring).
    capsule_logits
        How ``"cross_entropy"`` turns capsule lengths into logits: a key of
        :data:`nni_capsnas.modules.CAPSULE_LOGITS` (``"log_odds"`` by default). Give the
        adversary the same (``capsule_logits=`` of :mod:`trials.attacks`).
    combine
        ``"raw"``: the update is ``sum_i w_i grad L_i`` (Sener & Koltun, E2RNAS);
        ``"normalized"``: the min-norm point of the normalised gradients.
    input_shape
        ``(channels, height, width)``, needed for hardware metrics; default: the space's
        ``input_shape`` attribute.
    accelerator
        Accelerator of the hardware metrics.
    weight_adversarial
        Fraction in [0, 1] of adversarial loss in the weight (lower-level) step; needs an
        adversary when positive.
    near_tie_margin
        At the end of the search every label's exported value and its probability lead over
        the runner-up are logged; a lead below this probability is warned about as a near-tie.
    arc_learning_rate, gradient_clip_val, log_prob_every_n_step, warmup_epochs, mutation_hooks
        As for NNI's :class:`~nni.nas.strategy.DARTS`.
    """

    def __init__(self, *, adversary: Optional[Adversary] = None, resources: Sequence[ResourceSpec] = (),
                 gradient_normalization: str = "l2", upper_loss: str = "training",
                 capsule_logits: str = DEFAULT_CAPSULE_LOGITS, combine: str = "raw",
                 input_shape: Optional[Sequence[int]] = None,
                 accelerator: str = "capsacc", weight_adversarial: float = 0.0,
                 near_tie_margin: float = NEAR_TIE_MARGIN,
                 arc_learning_rate: float = 3.0e-4, gradient_clip_val: Optional[float] = None,
                 log_prob_every_n_step: int = 10, warmup_epochs: int = 0,
                 mutation_hooks: Optional[list] = None) -> None:
        super().__init__(arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val,
                         log_prob_every_n_step=log_prob_every_n_step, warmup_epochs=warmup_epochs,
                         penalty=None, mutation_hooks=mutation_hooks)
        if adversary is not None and not callable(adversary):
            raise ValueError(f"adversary must be callable(model, images, labels) or None, got {adversary!r}")
        if gradient_normalization not in NORMALIZATIONS:
            raise ValueError(f"gradient_normalization must be one of {NORMALIZATIONS}, got {gradient_normalization!r}")
        if upper_loss not in UPPER_LOSSES:
            raise ValueError(f"upper_loss must be one of {UPPER_LOSSES}, got {upper_loss!r}")
        check_capsule_logits(capsule_logits)
        self.near_tie_margin = check_near_tie_margin(near_tie_margin)
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        if isinstance(weight_adversarial, bool) or not isinstance(weight_adversarial, (int, float)) \
                or not 0 <= weight_adversarial <= 1:
            raise ValueError(f"weight_adversarial must be a number in [0, 1], got {weight_adversarial!r}")
        if weight_adversarial > 0 and adversary is None:
            raise ValueError("weight_adversarial > 0 needs an adversary, got adversary=None")
        if isinstance(resources, (ResourceConstraint, Mapping)):
            raise ValueError("resources must be a sequence of constraints, got a single one; wrap it in a list")
        self.resources = [r if isinstance(r, ResourceConstraint) else ResourceConstraint.from_mapping(r)
                          for r in resources]
        if input_shape is not None:
            shape = tuple(int(s) for s in input_shape)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"input_shape must be (channels, height, width) of positive sizes, "
                                 f"got {input_shape!r}")
            input_shape = shape
        self.adversary = adversary
        self.gradient_normalization = gradient_normalization
        self.upper_loss = upper_loss
        self.capsule_logits = capsule_logits
        self.combine = combine
        self.input_shape = input_shape
        self.accelerator = accelerator
        self.weight_adversarial = float(weight_adversarial)
        self._resource_terms: list[_ResourceTerm] = []

    def extra_repr(self) -> str:
        return (f"adversary={self.adversary!r}, resources={self.resources!r}, "
                f"gradient_normalization={self.gradient_normalization!r}, upper_loss={self.upper_loss!r}, "
                f"capsule_logits={self.capsule_logits!r}, combine={self.combine!r}, "
                f"arc_learning_rate={self.arc_learning_rate}")

    def _hardware_table(self, model: nn.Module) -> Optional[HardwareCostTable]:
        if all(r.metric == "params" for r in self.resources):
            return None
        if any(isinstance(m, Cell) for m in model.modules()):
            raise ValueError("hardware metrics (energy_mj, latency_ms, memory_kib, macs) need one architecture "
                             "parameter per label; NNI cells have per-edge parameters: use metric 'params' "
                             "for cell spaces")
        shape = self.input_shape or getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError("hardware metrics need input_shape=(channels, height, width): the model space "
                             "has no input_shape attribute")
        return HardwareCostTable.estimate(model, input_shape=tuple(shape), accelerator=self.accelerator)

    def mutate_model(self, model: Any) -> Any:
        table = self._hardware_table(model)
        supernet = super().mutate_model(model)
        live = {id(p) for m in supernet.modules() if hasattr(m, "arch_parameters") and m is not supernet
                for p in m.arch_parameters()}
        alphas = {label: alpha for label, alpha in self._arch_parameters.items() if id(alpha) in live}
        names: dict[str, int] = {}
        self._resource_terms = []
        params: Optional[ExpectedParams] = None
        for constraint in self.resources:
            if constraint.metric == "params":
                params = params or ExpectedParams(supernet)
                expectation: Callable[[], torch.Tensor] = params
            else:
                assert table is not None
                expectation = ExpectedLabelCost(table, metric=constraint.metric, alphas=alphas)
            count = names.get(constraint.metric, 0)
            names[constraint.metric] = count + 1
            name = constraint.metric if count == 0 else f"{constraint.metric}_{count}"
            self._resource_terms.append(_ResourceTerm(name, constraint, expectation))
        return supernet

    def expected_costs(self) -> dict[str, float]:
        """Current expected cost of every resource objective (after ``mutate_model``)."""
        return {term.name: term.expectation().item() for term in self._resource_terms}

    def configure_oneshot_module(self, training_module: pl.LightningModule) -> E2RNASLightningModule:
        return E2RNASLightningModule(
            training_module, adversary=self.adversary, resources=self._resource_terms,
            gradient_normalization=self.gradient_normalization, upper_loss=self.upper_loss,
            capsule_logits=self.capsule_logits, combine=self.combine, weight_adversarial=self.weight_adversarial,
            near_tie_margin=self.near_tie_margin,
            arc_learning_rate=self.arc_learning_rate, gradient_clip_val=self.gradient_clip_val,
            log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs)

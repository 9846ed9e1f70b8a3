"""NSGA-II as an NNI strategy: a surrogate (or pymoo) proposes, NNI trains, hardware budgets filter first."""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from nni.nas.execution import ExecutionEngine
from nni.nas.execution.event import FinalMetricEvent, ModelEventType
from nni.nas.space import ExecutableModelSpace, ModelStatus
from nni.nas.strategy.base import Strategy
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.operators.crossover.ux import UniformCrossover

from .archive import FAILED, REJECTED, RUNNING, TRAINED, Archive, Evaluation, Key
from .encoding import SampleCodec
from .evolution_generations import EvolutionGenerations
from .mutation import ResampleMutation
from .objective_scale import ObjectiveScale
from .objectives import Objectives
from .surrogate import ExtraTreesSurrogate, GaussianProcessSurrogate, Surrogate
from .surrogate_generations import SurrogateGenerations
from .surrogate_search import SurrogateProposer, SurrogateSettings
from .waiting import wait_for_models

_logger = logging.getLogger(__name__)

HardwareEstimator = Callable[[dict[str, Any]], Mapping[str, float]]
#: Surrogates by name (``surrogate=`` and the configuration's ``strategy.options.surrogate``).
SURROGATES: dict[str, Callable[[], Surrogate]] = {"extra-trees": ExtraTreesSurrogate,
                                                  "gaussian-process": GaussianProcessSurrogate}

#: NNI trial statuses (last event in its database) of trials that will still run or finish.
IN_FLIGHT = frozenset({"WAITING", "RUNNING", "ADD_RESUMED", "ADD_CUSTOMIZED"})
#: Statuses of trials stopped by a user or by an early-stopping rule: not a verdict on the architecture.
CANCELLED = frozenset({"USER_CANCELED", "USER_TO_CANCEL", "EARLY_STOPPED"})


class NSGA2(Strategy):
    """Multi-objective architecture search: NSGA-II (Deb et al. 2002) as in NASCaps, surrogate-assisted.

    Individuals are integer vectors over the space's labelled choices. Architectures already
    seen are never trained again; architectures whose estimated hardware cost breaks a
    ``constraints`` bound are rejected in this process before any training; the rest become
    NNI trials, which report a metric dict (``default``, ``accuracy``, ``energy_mj``, ...);
    failed trials become infeasible individuals and never enter the front.

    With a ``surrogate`` (the default), each generation after a random first one fits the
    surrogate on the trained architectures, screens a pool of thousands of candidates with the
    objectives ``hardware_estimator`` answers exactly and the predicted rest, and trains the
    ``offspring_size`` candidates with the best optimistic hypervolume gain (see
    :mod:`~nni_capsnas.strategy.surrogate_search`). With ``surrogate=None`` pymoo's NSGA-II
    proposes every generation, as NASCaps ran it.

    Parameters
    ----------
    population_size
        Size of the first generation (and, without a surrogate, individuals kept per generation).
    offspring_size
        New individuals per generation (default: ``population_size``).
    objectives
        Metric name -> ``"max"`` or ``"min"``. Default: accuracy max; energy_mj,
        latency_ms and memory_kib min.
    constraints
        Metric name -> upper bound, e.g. ``{"energy_mj": 50}``. Bounds on metrics that
        ``hardware_estimator`` returns are enforced before training (on the whole candidate
        pool with a surrogate); all are enforced on the reported metrics.
    crossover, mutation
        pymoo operators on the integer genes of the plain NSGA-II (default: uniform crossover
        and :class:`~nni_capsnas.strategy.mutation.ResampleMutation`).
    hardware_estimator
        Callable from an NNI sample to metrics known before training (e.g.
        :class:`~nni_capsnas.hardware_cost.SampleCostEstimator`): used for the constraint check
        and, with a surrogate, as exact objectives. Without it every objective is predicted.
    surrogate
        ``"gaussian-process"`` (default: :class:`~nni_capsnas.strategy.surrogate.GaussianProcessSurrogate`),
        ``"extra-trees"``, any object with the :class:`~nni_capsnas.strategy.surrogate.Surrogate`
        methods, or ``None`` (or ``"none"``) for the plain NSGA-II.
    pool_size
        Candidates screened per surrogate generation.
    optimism
        Standard deviations of the surrogate's uncertainty added in the hopeful direction when
        ranking candidates (0: the predicted mean).
    cost_aware
        Rank candidates by hypervolume gain per expected training second (predicted from the
        trials' ``train_seconds``; plain gain when trials do not report it). On by default: it
        reaches each front quality in about half the training time (docs/benchmarks.md).
    max_stalled_generations
        Stop after this many consecutive generations that produced no new trial (the
        space, or its feasible part, is exhausted).
    seed
        Seed of every random choice. The generators' states are checkpointed (pymoo's with its
        population, ranks and crowding distances), so a stopped and resumed search proposes
        the same architectures as an uninterrupted one.

    Attributes
    ----------
    on_generation_end
        Callables run after every generation (the experiment checkpoints there).
    trial_history
        Optional callable returning the experiment's finished trials (records with
        ``trial_id``, ``status``, ``sample``, ``metrics``); read every generation, so trials
        NNI ran outside this strategy's view (resumed after a restart) are adopted.
    """

    def __init__(self, *, population_size: int = 16, offspring_size: Optional[int] = None,
                 objectives: Optional[Mapping[str, str]] = None,
                 constraints: Optional[Mapping[str, float]] = None,
                 crossover: Optional[Crossover] = None, mutation: Optional[Mutation] = None,
                 hardware_estimator: Optional[HardwareEstimator] = None,
                 surrogate: Union[str, Surrogate, None] = "gaussian-process", pool_size: int = 2000,
                 optimism: float = 1.0, cost_aware: bool = True,
                 max_stalled_generations: int = 5, seed: int = 0) -> None:
        super().__init__()
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if offspring_size is not None and offspring_size < 1:
            raise ValueError(f"offspring_size must be >= 1, got {offspring_size}")
        if max_stalled_generations < 1:
            raise ValueError(f"max_stalled_generations must be >= 1, got {max_stalled_generations}")
        self.population_size = population_size
        self.offspring_size = offspring_size or population_size
        self.objectives = Objectives(objectives, constraints)
        self.crossover = crossover or UniformCrossover(prob=0.9)
        self.mutation = mutation or ResampleMutation()
        self.hardware_estimator = hardware_estimator
        self.surrogate_factory = _surrogate_factory(surrogate)
        self.surrogate_settings = SurrogateSettings(pool_size=pool_size, optimism=optimism, cost_aware=cost_aware)
        self.max_stalled_generations = max_stalled_generations
        self.seed = seed
        self.archive = Archive()
        self.generation = 0
        self.scale = ObjectiveScale(self.objectives)
        self._generations: Optional[Union[EvolutionGenerations, SurrogateGenerations]] = None
        self._generations_state: dict[str, Any] = {}
        self._exact_cache: dict[Key, Optional[dict[str, float]]] = {}
        self._codec: Optional[SampleCodec] = None
        self._reported: dict[int, dict[str, Any]] = {}
        self._models: dict[Key, ExecutableModelSpace] = {}
        self._lock = threading.Lock()
        self.on_generation_end: list[Callable[[], None]] = []
        self.trial_history: Optional[Callable[[], Iterable[Any]]] = None

    def extra_repr(self) -> str:
        surrogate = self.surrogate_factory() if self.surrogate_factory is not None else None
        return (f"population_size={self.population_size}, offspring_size={self.offspring_size}, "
                f"objectives={self.objectives.directions}, constraints={self.objectives.constraints}, "
                f"surrogate={surrogate!r}, seed={self.seed}")

    # --- NNI hooks -------------------------------------------------------------------------

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        self._codec = SampleCodec(model_space.simplify())
        engine.register_model_event_callback(ModelEventType.FinalMetric, self._on_final_metric)
        return model_space

    def _cleanup(self) -> None:
        self.engine.unregister_model_event_callback(ModelEventType.FinalMetric, self._on_final_metric)

    def _on_final_metric(self, event: FinalMetricEvent) -> None:
        """Keep the raw metric dict (NNI itself keeps only ``default``)."""
        metric = event.metric
        if isinstance(metric, Mapping):
            if "default" not in metric and isinstance(metric, dict):
                # NNI's own handler raises in its listener thread without 'default' (and the
                # experiment hangs): give it the first objective instead.
                first = self.objectives.names[0]
                metric["default"] = metric.get(first, float("nan"))
                _logger.warning("trial metric lacks 'default'; using %r for NNI", first)
            reported = dict(metric)
        else:
            reported = {"default": metric}
        with self._lock:
            self._reported[id(event.model)] = reported

    def _run(self) -> None:
        try:
            self._search()
        finally:
            front = self.pareto_front()
            _logger.info("Pareto front after %d generations: %d architectures", self.generation, len(front))
            for member in front:
                _logger.info("  front member %s: %s", member["sample"],
                             ", ".join(f"{name} {member[name]:.4g}" for name in self.objectives.names))

    def _search(self) -> None:
        generations = self._require_generations()
        if self.generation:
            _logger.info("resuming at generation %d with %d architectures in the archive", self.generation,
                         len(self.archive))
        stalled = 0
        while True:
            keys = generations.ask()
            if not keys:
                _logger.info("no new architecture to propose (the space is exhausted); stopping")
                return
            submitted, budget_left = self._evaluate_generation(keys)
            if not budget_left:
                _logger.info("trial budget exhausted after generation %d", self.generation)
                return
            if self.trial_history is not None:
                self.adopt_trials(self.trial_history())
            generations.tell()
            self.generation += 1
            self._log_generation(submitted, generations.log_fields())
            for hook in self.on_generation_end:
                hook()
            stalled = 0 if submitted else stalled + 1
            if stalled >= self.max_stalled_generations:
                _logger.info("no new architecture to train in %d generations: the (feasible) space is "
                             "exhausted; stopping", stalled)
                return

    def load_state_dict(self, state_dict: dict) -> None:
        self.archive.load_state_dict(state_dict["archive"])
        running = self.archive.count(RUNNING)
        if running:
            _logger.info("%d architectures were training at the checkpoint: NNI resumes those trials and "
                         "their results are adopted when they finish", running)
        self.generation = int(state_dict["generation"])
        self.scale.load_state_dict(state_dict.get("hypervolume_box") or {})
        self._generations_state = {key: value for key, value in state_dict.items()
                                   if key not in ("archive", "generation", "hypervolume_box", "seed")}
        if self._generations is not None:
            self._generations.load_state_dict(self._generations_state)

    def adopt_trials(self, records: Iterable[Any]) -> int:
        """Record what NNI knows of trials (``status``, ``sample``, ``metrics``) that the archive lacks.

        Called on resume with the experiment's database, which may be ahead of the
        checkpoint, and after every generation. Finished trials are recorded as trained or
        failed; trials still in flight (NNI runs again the trials a crash cut short) are
        recorded as running, so their architectures are not proposed a second time; trials
        cancelled while the archive had them running are forgotten, so they can be proposed
        again. Returns how many records changed the archive.
        """
        codec = self._require_codec()
        adopted = 0
        for record in records:
            try:
                key = codec.encode(record.sample)
            except ValueError:
                continue
            known = self.archive[key].status if key in self.archive else None
            if known in (TRAINED, FAILED):
                continue
            if record.status in IN_FLIGHT:
                if known is None:
                    self.archive.record(key, Evaluation(dict(record.sample), RUNNING))
                    adopted += 1
                continue
            if record.status in CANCELLED:
                if known == RUNNING:
                    self.archive.forget(key)
                    adopted += 1
                continue
            if record.status not in ("SUCCEEDED", "FAILED", "SYS_CANCELED"):
                continue
            metrics = {k: _plain(v) for k, v in (record.metrics or {}).items()}
            missing = self.objectives.missing(metrics)
            if record.status == "SUCCEEDED" and not missing:
                self.archive.record(key, Evaluation(dict(record.sample), TRAINED, metrics))
            else:
                reason = f"trial {record.trial_id} ended {record.status.lower()}"
                self.archive.record(key, Evaluation(dict(record.sample), FAILED, metrics, reason))
            adopted += 1
        if adopted:
            _logger.info("adopted %d trials from the experiment database", adopted)
        return adopted

    def state_dict(self) -> dict:
        generations = self._generations.state_dict() if self._generations is not None else self._generations_state
        return {"archive": self.archive.state_dict(), "generation": self.generation,
                "hypervolume_box": self.scale.state_dict(), **generations, "seed": self.seed}

    def list_models(self, sort: bool = True, limit: Optional[int] = None) -> Iterator[ExecutableModelSpace]:
        """The Pareto front (``sort=True``, by ``default`` descending) or every trained model."""
        if not sort:
            yield from super().list_models(sort=False, limit=limit)
            return
        front = sorted(self.archive.front(self.objectives),
                       key=lambda item: float(item[1].metrics.get("default", 0.0)), reverse=True)
        for key, entry in front[:limit]:
            yield self._models.get(key) or self.model_space.freeze(entry.sample)

    # --- results ---------------------------------------------------------------------------

    def pareto_front(self) -> list[dict[str, Any]]:
        """Non-dominated, constraint-satisfying trained architectures with all their metrics."""
        return [{"sample": dict(entry.sample), **entry.metrics} for _, entry in self.archive.front(self.objectives)]

    # --- internals -------------------------------------------------------------------------

    def _require_generations(self) -> Union[EvolutionGenerations, SurrogateGenerations]:
        """The source of generations, built once the space is known (and given any checkpointed state)."""
        if self._generations is None:
            codec = self._require_codec()
            if self.surrogate_factory is None:
                self._generations = EvolutionGenerations(
                    archive=self.archive, objectives=self.objectives, upper_bounds=codec.upper_bounds,
                    population_size=self.population_size, offspring_size=self.offspring_size,
                    crossover=self.crossover, mutation=self.mutation, seed=self.seed,
                    train=self._evaluate_generation)
            else:
                proposer = SurrogateProposer(self.scale, self.surrogate_factory, self.surrogate_settings)
                self._generations = SurrogateGenerations(
                    archive=self.archive, upper_bounds=codec.upper_bounds, exact=self._exact_metrics,
                    proposer=proposer, population_size=self.population_size, offspring_size=self.offspring_size,
                    seed=self.seed)
            self._generations.load_state_dict(self._generations_state)
        return self._generations

    def _exact_metrics(self, key: Key) -> Optional[dict[str, float]]:
        """What ``hardware_estimator`` answers for an architecture before training (cached)."""
        if self.hardware_estimator is None:
            return None
        if key not in self._exact_cache:
            estimate = self.hardware_estimator(self._require_codec().decode(key))
            self._exact_cache[key] = {name: float(value) for name, value in estimate.items()
                                      if isinstance(value, (int, float)) and not isinstance(value, bool)}
        return self._exact_cache[key]

    def _require_codec(self) -> SampleCodec:
        if self._codec is None:
            raise RuntimeError("NSGA2 has not been initialised by an NNI experiment")
        return self._codec

    def _evaluate_generation(self, keys: list[Key]) -> tuple[int, bool]:
        """Train what is new; returns (trials submitted, whether budget remained)."""
        pending: list[tuple[Key, ExecutableModelSpace]] = []
        budget_left = True
        for key in dict.fromkeys(keys):
            if key in self.archive:
                continue
            sample = self._require_codec().decode(key)
            if self._reject_before_training(key, sample):
                continue
            if not self.wait_for_resource():
                budget_left = False
                break
            model = self.model_space.freeze(sample)
            self.archive.record(key, Evaluation(sample, RUNNING))
            self._models[key] = model
            self.engine.submit_models(model)
            pending.append((key, model))
        if pending:
            wait_for_models(self.engine, [model for _, model in pending])
        for key, model in pending:
            self._record_outcome(key, model)
        if budget_left and not self.engine.budget_available():
            budget_left = False
        return len(pending), budget_left

    def _reject_before_training(self, key: Key, sample: dict[str, Any]) -> bool:
        if self.hardware_estimator is None or not self.objectives.constraints:
            return False
        estimate = dict(self.hardware_estimator(sample))
        broken = {name: excess for name, excess in self.objectives.violations(estimate).items() if excess > 0}
        if not broken:
            return False
        reason = ", ".join(f"{name} {estimate[name]:.4g} > {self.objectives.constraints[name]:.4g}"
                           for name in broken)
        self.archive.record(key, Evaluation(sample, REJECTED, estimate, reason))
        _logger.info("rejected before training (%s): %s", reason, sample)
        return True

    def _record_outcome(self, key: Key, model: ExecutableModelSpace) -> None:
        with self._lock:
            metrics = self._reported.pop(id(model), None)
        sample = dict(model.sample or self._require_codec().decode(key))
        if not model.status.completed():
            self.archive.forget(key)
            _logger.info("not trained (the trial budget ran out first): %s", sample)
            return
        if model.status != ModelStatus.Trained or metrics is None:
            reason = f"trial ended with status {model.status.value}" + ("" if metrics else " and no final metric")
            self.archive.record(key, Evaluation(sample, FAILED, metrics or {}, reason))
            _logger.warning("trial failed (%s): %s", reason, sample)
            return
        missing = self.objectives.missing(metrics)
        if missing:
            reason = f"final metric lacks usable {', '.join(missing)}"
            self.archive.record(key, Evaluation(sample, FAILED, metrics, reason))
            _logger.warning("trial unusable (%s): %s", reason, sample)
            return
        self.archive.record(key, Evaluation(sample, TRAINED, {k: _plain(v) for k, v in metrics.items()}))

    def _log_generation(self, submitted: int, extra: Mapping[str, Any]) -> None:
        """One line per generation; the hypervolume is inside a box fixed at the first generation."""
        front = self.archive.front(self.objectives)
        trained = [e for _, e in self.archive.items() if e.status == TRAINED]
        hv = 0.0
        if front:
            if not self.scale.is_fixed:
                self.scale.fix(self.scale.points([e.metrics for e in trained]))
            hv = self.scale.hypervolume(self.scale.points([e.metrics for _, e in front]))
        details = "".join(f", {name} {value:.3f}" if isinstance(value, float) else f", {name} {value}"
                          for name, value in extra.items())
        _logger.info("generation %d: %d new trials, %d trained, %d failed, %d rejected before training, "
                     "front size %d, hypervolume %.4f%s", self.generation, submitted, len(trained),
                     self.archive.count(FAILED), self.archive.count(REJECTED), len(front), hv, details)


def _surrogate_factory(surrogate: Union[str, Surrogate, None]) -> Optional[Callable[[], Surrogate]]:
    """A factory of fresh surrogates for the ``surrogate`` argument."""
    if surrogate is None or surrogate == "none":
        return None
    if isinstance(surrogate, str):
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, 'none', None or a surrogate object, "
                             f"got {surrogate!r}")
        return SURROGATES[surrogate]
    if not (callable(getattr(surrogate, "fit", None)) and callable(getattr(surrogate, "predict", None))):
        raise ValueError(f"surrogate must have fit() and predict() methods, got {type(surrogate).__name__}")
    return lambda: copy.deepcopy(surrogate)


def _plain(value: Any) -> Any:
    """Numbers as Python floats (checkpoint-safe); anything else unchanged."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value

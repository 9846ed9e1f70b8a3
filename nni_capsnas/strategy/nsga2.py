"""NSGA-II as an NNI strategy: pymoo proposes, NNI trains, hardware budgets filter first."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np
from nni.nas.execution import ExecutionEngine
from nni.nas.execution.event import FinalMetricEvent, ModelEventType
from nni.nas.space import ExecutableModelSpace, ModelStatus
from nni.nas.strategy.base import Strategy
from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.evaluator import Evaluator
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.problems.static import StaticProblem

from .archive import FAILED, REJECTED, RUNNING, TRAINED, Archive, Evaluation, Key
from .encoding import SampleCodec
from .mutation import ResampleMutation
from .sampling import DistinctIntegerSampling
from .waiting import wait_for_models
from .objectives import Objectives
from .pareto import normalised_hypervolume

_logger = logging.getLogger(__name__)

HardwareEstimator = Callable[[dict[str, Any]], Mapping[str, float]]

#: NNI trial statuses (last event in its database) of trials that will still run or finish.
IN_FLIGHT = frozenset({"WAITING", "RUNNING", "ADD_RESUMED", "ADD_CUSTOMIZED"})
#: Statuses of trials stopped by a user or by an early-stopping rule: not a verdict on the architecture.
CANCELLED = frozenset({"USER_CANCELED", "USER_TO_CANCEL", "EARLY_STOPPED"})


class NSGA2(Strategy):
    """Multi-objective architecture search with pymoo's NSGA-II (Deb et al. 2002), as in NASCaps.

    Individuals are integer vectors over the space's labelled choices. Each generation,
    pymoo proposes offspring; architectures already seen are answered from the archive (never
    trained twice); architectures whose estimated hardware cost breaks a ``constraints`` bound
    are rejected in this process before any training; the rest become NNI trials. Trials
    report a metric dict (``default``, ``accuracy``, ``energy_mj``, ...); failed trials become
    infeasible individuals and never enter the front.

    Parameters
    ----------
    population_size
        Individuals kept per generation (and size of the first generation).
    offspring_size
        New individuals per generation (default: ``population_size``).
    objectives
        Metric name -> ``"max"`` or ``"min"``. Default: accuracy max; energy_mj,
        latency_ms and memory_kib min.
    constraints
        Metric name -> upper bound, e.g. ``{"energy_mj": 50}``. Bounds on metrics that
        ``hardware_estimator`` returns are enforced before training; all are enforced on
        the reported metrics.
    crossover, mutation
        pymoo operators on the integer genes (default: uniform crossover and
        :class:`~nni_capsnas.strategy.mutation.ResampleMutation`).
    hardware_estimator
        Callable from an NNI sample to estimated metrics (e.g. ``{"energy_mj": ...}``),
        used for the pre-training check.

    Attributes
    ----------
    on_generation_end
        Callables run after every generation (the experiment checkpoints there).
    trial_history
        Optional callable returning the experiment's finished trials (records with
        ``trial_id``, ``status``, ``sample``, ``metrics``); read every generation, so trials
        NNI ran outside this strategy's view (resumed after a restart) are adopted.
    max_stalled_generations
        Stop after this many consecutive generations that produced no new trial (the
        space, or its feasible part, is exhausted).
    seed
        Seed of pymoo's random generator. The generator's state is checkpointed with the
        population (its ranks and crowding distances included), so a stopped and resumed
        search proposes the same architectures as an uninterrupted one.
    """

    def __init__(self, *, population_size: int = 16, offspring_size: Optional[int] = None,
                 objectives: Optional[Mapping[str, str]] = None,
                 constraints: Optional[Mapping[str, float]] = None,
                 crossover: Optional[Crossover] = None, mutation: Optional[Mutation] = None,
                 hardware_estimator: Optional[HardwareEstimator] = None,
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
        self.max_stalled_generations = max_stalled_generations
        self.seed = seed
        self.archive = Archive()
        self.generation = 0
        self._population: Optional[list[list[int]]] = None
        #: pymoo's survival ranks and crowding distances of ``_population`` (tournaments read them).
        self._population_rank: Optional[list[int]] = None
        self._population_crowding: Optional[list[float]] = None
        #: pymoo's bit-generator state at the end of the last generation, as JSON (128-bit integers).
        self._rng_state: Optional[str] = None
        self._codec: Optional[SampleCodec] = None
        self._reported: dict[int, dict[str, Any]] = {}
        self._models: dict[Key, ExecutableModelSpace] = {}
        self._lock = threading.Lock()
        self.on_generation_end: list[Callable[[], None]] = []
        self.trial_history: Optional[Callable[[], Iterable[Any]]] = None

    def extra_repr(self) -> str:
        return (f"population_size={self.population_size}, offspring_size={self.offspring_size}, "
                f"objectives={self.objectives.directions}, constraints={self.objectives.constraints}, "
                f"seed={self.seed}")

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
        algorithm = self._make_algorithm()
        stalled = 0
        while True:
            population = algorithm.ask()
            if population is None or len(population) == 0:
                _logger.info("NSGA-II cannot produce new offspring (the space is exhausted); stopping")
                return
            keys = [tuple(int(g) for g in x) for x in population.get("X")]
            submitted, budget_left = self._evaluate_generation(keys)
            if not budget_left:
                _logger.info("trial budget exhausted after generation %d", self.generation)
                return
            if self.trial_history is not None:
                self.adopt_trials(self.trial_history())
            self._evaluate_population(algorithm, population)
            algorithm.tell(infills=population)
            self.generation += 1
            self._remember(algorithm)
            self._log_generation(submitted)
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
        self._population = state_dict.get("population")
        self._population_rank = state_dict.get("population_rank")
        self._population_crowding = state_dict.get("population_crowding")
        self._rng_state = state_dict.get("rng_state")

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
        return {"archive": self.archive.state_dict(), "generation": self.generation,
                "population": self._population, "population_rank": self._population_rank,
                "population_crowding": self._population_crowding, "rng_state": self._rng_state,
                "seed": self.seed}

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

    def _make_algorithm(self) -> PymooNSGA2:
        codec = self._require_codec()
        sampling: Any = DistinctIntegerSampling()
        if self._population:
            sampling = np.array(self._population, dtype=float)
            _logger.info("resuming at generation %d with %d architectures in the archive",
                         self.generation, len(self.archive))
        problem = Problem(n_var=len(codec.labels), n_obj=len(self.objectives.names),
                          n_ieq_constr=1 + len(self.objectives.constraints),
                          xl=np.zeros(len(codec.labels)), xu=codec.upper_bounds, vtype=int)
        algorithm = PymooNSGA2(pop_size=self.population_size, n_offsprings=self.offspring_size,
                               sampling=sampling, crossover=self.crossover, mutation=self.mutation,
                               eliminate_duplicates=True)
        algorithm.setup(problem, termination=("n_gen", 10 ** 9), seed=self.seed)
        if self._population:
            self._restore(algorithm)
        return algorithm

    def _remember(self, algorithm: PymooNSGA2) -> None:
        """Keep what the next generation depends on: population, ranks, crowding, generator state."""
        population = algorithm.pop
        self._population = [list(map(int, x)) for x in population.get("X")]
        self._population_rank = [int(rank) for rank in population.get("rank")]
        self._population_crowding = [float(distance) for distance in population.get("crowding")]
        self._rng_state = json.dumps(algorithm.random_state.bit_generator.state)

    def _restore(self, algorithm: PymooNSGA2) -> None:
        """Put a fresh pymoo NSGA-II where the checkpointed one was at the end of its last generation.

        pymoo initialises from the saved population (its first ask/tell, answered from the
        archive); then the saved order, ranks, crowding distances and generator state replace
        what that re-initialisation computed, so the next offspring are the ones an
        uninterrupted search would have proposed.
        """
        initial = algorithm.ask()
        keys = [tuple(int(g) for g in x) for x in initial.get("X")]
        self._evaluate_generation(keys)  # normally nothing to train: survivors are in the archive
        self._evaluate_population(algorithm, initial)
        algorithm.tell(infills=initial)
        if self._population_rank is None or self._rng_state is None:
            _logger.info("the checkpoint holds no generator state (an older release): the search continues "
                         "with different random choices than an uninterrupted one")
            return
        population = Population.new(X=np.array(self._population, dtype=float))
        self._evaluate_population(algorithm, population)
        population.set("rank", np.array(self._population_rank), "crowding", np.array(self._population_crowding))
        algorithm.pop = population
        algorithm.random_state.bit_generator.state = json.loads(self._rng_state)

    def _evaluate_population(self, algorithm: PymooNSGA2, population: Population) -> None:
        """Give pymoo the archive's objective and constraint values of ``population``."""
        keys = [tuple(int(g) for g in x) for x in population.get("X")]
        F, G = self.archive.objective_arrays(keys, self.objectives)
        Evaluator().eval(StaticProblem(algorithm.problem, F=F, G=G), population)

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

    def _log_generation(self, submitted: int) -> None:
        front = self.archive.front(self.objectives)
        trained = [e for _, e in self.archive.items() if e.status == TRAINED]
        hv = 0.0
        if front:
            all_points = np.stack([self.objectives.to_minimisation(e.metrics) for e in trained])
            points = np.stack([self.objectives.to_minimisation(e.metrics) for _, e in front])
            ideal, worst = all_points.min(axis=0), all_points.max(axis=0)
            hv = normalised_hypervolume(points, ideal, worst + 0.1 * (worst - ideal) + 1e-12)
        _logger.info("generation %d: %d new trials, %d trained, %d failed, %d rejected before training, "
                     "front size %d, hypervolume %.4f", self.generation, submitted, len(trained),
                     self.archive.count(FAILED), self.archive.count(REJECTED), len(front), hv)


def _plain(value: Any) -> Any:
    """Numbers as Python floats (checkpoint-safe); anything else unchanged."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value

"""Generations proposed by pymoo's NSGA-II (Deb et al. 2002), as NASCaps ran it.

pymoo proposes offspring from its population; the archive answers their objectives. The
state kept between generations (population, survival ranks and crowding distances, and the
generator's state) makes a stopped and resumed search propose exactly what an uninterrupted one
would have.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Optional

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.evaluator import Evaluator
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.problems.static import StaticProblem

from .archive import Archive, Key
from .objectives import Objectives
from .sampling import DistinctIntegerSampling

_logger = logging.getLogger(__name__)


class EvolutionGenerations:
    """pymoo's NSGA-II, asked for one generation at a time.

    Parameters
    ----------
    archive, objectives
        The search's archive (objective values of every architecture) and objectives.
    upper_bounds
        Largest index of every gene.
    population_size, offspring_size, crossover, mutation, seed
        pymoo's settings.
    train
        Trains architectures the archive lacks (used on resume, when a survivor is unknown).
    """

    def __init__(self, *, archive: Archive, objectives: Objectives, upper_bounds: np.ndarray, population_size: int,
                 offspring_size: int, crossover: Crossover, mutation: Mutation, seed: int,
                 train: Callable[[list[Key]], Any]) -> None:
        self.archive = archive
        self.objectives = objectives
        self.upper_bounds = upper_bounds
        self.population_size = population_size
        self.offspring_size = offspring_size
        self.crossover = crossover
        self.mutation = mutation
        self.seed = seed
        self.train = train
        self.population: Optional[list[list[int]]] = None
        #: pymoo's survival ranks and crowding distances of ``population`` (tournaments read them).
        self.population_rank: Optional[list[int]] = None
        self.population_crowding: Optional[list[float]] = None
        #: pymoo's bit-generator state at the end of the last generation, as JSON (128-bit integers).
        self.rng_state: Optional[str] = None
        self._algorithm: Optional[PymooNSGA2] = None
        self._asked: Optional[Population] = None

    def ask(self) -> Optional[list[Key]]:
        """The next generation's architectures (``None``: pymoo cannot produce new ones)."""
        if self._algorithm is None:
            self._algorithm = self._make_algorithm()
        population = self._algorithm.ask()
        if population is None or len(population) == 0:
            return None
        self._asked = population
        return [tuple(int(g) for g in x) for x in population.get("X")]

    def tell(self) -> None:
        """Give pymoo the archive's outcomes of the last generation asked."""
        if self._algorithm is None or self._asked is None:
            raise RuntimeError("tell() without ask()")
        self._evaluate(self._asked)
        self._algorithm.tell(infills=self._asked)
        self._remember()

    def log_fields(self) -> dict[str, Any]:
        return {}

    # --- checkpoint ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"population": self.population, "population_rank": self.population_rank,
                "population_crowding": self.population_crowding, "rng_state": self.rng_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.population = state.get("population")
        self.population_rank = state.get("population_rank")
        self.population_crowding = state.get("population_crowding")
        self.rng_state = state.get("rng_state")

    # --- internals -------------------------------------------------------------------------

    def _make_algorithm(self) -> PymooNSGA2:
        sampling: Any = DistinctIntegerSampling()
        if self.population:
            sampling = np.array(self.population, dtype=float)
        problem = Problem(n_var=len(self.upper_bounds), n_obj=len(self.objectives.names),
                          n_ieq_constr=1 + len(self.objectives.constraints),
                          xl=np.zeros(len(self.upper_bounds)), xu=self.upper_bounds, vtype=int)
        algorithm = PymooNSGA2(pop_size=self.population_size, n_offsprings=self.offspring_size,
                               sampling=sampling, crossover=self.crossover, mutation=self.mutation,
                               eliminate_duplicates=True)
        algorithm.setup(problem, termination=("n_gen", 10 ** 9), seed=self.seed)
        if self.population:
            self._restore(algorithm)
        return algorithm

    def _remember(self) -> None:
        """Keep what the next generation depends on: population, ranks, crowding, generator state."""
        population = self._algorithm.pop
        self.population = [list(map(int, x)) for x in population.get("X")]
        self.population_rank = [int(rank) for rank in population.get("rank")]
        self.population_crowding = [float(distance) for distance in population.get("crowding")]
        self.rng_state = json.dumps(self._algorithm.random_state.bit_generator.state)

    def _restore(self, algorithm: PymooNSGA2) -> None:
        """Put a fresh pymoo NSGA-II where the checkpointed one was at the end of its last generation.

        pymoo initialises from the saved population (its first ask/tell, answered from the
        archive); then the saved order, ranks, crowding distances and generator state replace
        what that re-initialisation computed, so the next offspring are the ones an
        uninterrupted search would have proposed.
        """
        initial = algorithm.ask()
        self.train([tuple(int(g) for g in x) for x in initial.get("X")])  # normally all in the archive
        self._evaluate(initial, algorithm)
        algorithm.tell(infills=initial)
        if self.population_rank is None or self.rng_state is None:
            _logger.info("the checkpoint holds no generator state (an older release): the search continues "
                         "with different random choices than an uninterrupted one")
            return
        population = Population.new(X=np.array(self.population, dtype=float))
        self._evaluate(population, algorithm)
        population.set("rank", np.array(self.population_rank), "crowding", np.array(self.population_crowding))
        algorithm.pop = population
        algorithm.random_state.bit_generator.state = json.loads(self.rng_state)

    def _evaluate(self, population: Population, algorithm: Optional[PymooNSGA2] = None) -> None:
        """Give pymoo the archive's objective and constraint values of ``population``."""
        algorithm = algorithm or self._algorithm
        keys = [tuple(int(g) for g in x) for x in population.get("X")]
        F, G = self.archive.objective_arrays(keys, self.objectives)
        Evaluator().eval(StaticProblem(algorithm.problem, F=F, G=G), population)

"""The DEAP engine's selection equals DEAP's own ``selNSGA2(nd="log")``, order included."""

from __future__ import annotations

import numpy as np
import pytest
from deap import tools

from eqsearch.engines.deap import _fitness_class, _Individual, nsga2_select, pareto_fronts


def population(objectives: int, seed: int, size: int = 300) -> list[_Individual]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 5, size=(size, objectives)).astype(np.float64)
    values[size // 2 :] = values[: size - size // 2]  # every fitness at least twice
    fitness = _fitness_class(objectives)
    return [_Individual([row], fitness(tuple(v))) for row, v in enumerate(values.tolist())]


@pytest.mark.parametrize("objectives", [2, 3, 4])
@pytest.mark.parametrize("count", [1, 40, 150, 300])
def test_fronts_and_selection_equal_deaps_log_sort(objectives: int, count: int) -> None:
    individuals = population(objectives, seed=objectives * 7 + count)
    expected = tools.sortLogNondominated(individuals, count)
    actual = pareto_fronts(individuals, count)
    assert [[ind[0] for ind in front] for front in actual] == [
        [ind[0] for ind in front] for front in expected
    ]
    twins = population(objectives, seed=objectives * 7 + count)
    chosen = [ind[0] for ind in tools.selNSGA2(twins, count, nd="log")]
    assert [ind[0] for ind in nsga2_select(individuals, count)] == chosen
    assert [crowding(ind) for ind in individuals] == [crowding(ind) for ind in twins]


def crowding(individual: _Individual) -> float | None:
    return getattr(individual.fitness, "crowding_dist", None)

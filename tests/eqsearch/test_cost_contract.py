"""The swept-cost registry's contract: every cost gives one finite value per config, adds up
over layers (so the ILP and greedy strategies can budget it) and never rises as bits fall."""

from __future__ import annotations

import numpy as np
import pytest

from eqsearch.strategies.additive import COSTS, SWEEPS, layer_costs, sweep_costs
from tests.eqsearch.search_fixtures import TENSORRT, enumerable_space


def test_the_registered_costs() -> None:
    assert tuple(COSTS) == ("w_bits", "a_bits", "bitops", "size")
    assert SWEEPS == ("w_bits", "a_bits", "bitops", "size", "latency")
    with pytest.raises(ValueError, match=r"^sweep must be one of w_bits, a_bits, bitops, size "):
        sweep_costs(enumerable_space(), TENSORRT, "macs")


@pytest.mark.parametrize("name", tuple(COSTS))
def test_each_cost_is_a_finite_monotone_sum_over_layers(name: str) -> None:
    space = enumerable_space()
    cost = COSTS[name]
    batch = space.sample(0, 9)
    values = np.asarray(cost(batch), dtype=np.float64)
    assert values.shape == (9,) and np.isfinite(values).all()
    table = layer_costs(space, TENSORRT, cost, name)  # refuses a cost that does not add up
    assert table.name == name
    assert (table.table <= 1e-9).all()  # lowering one layer from the top never costs more
    uniform = [float(cost(space.batch([space.uniform(b, b, TENSORRT)]))[0]) for b in (2, 4, 8)]
    assert np.all(np.diff(uniform) >= 0)

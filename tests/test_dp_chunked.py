"""The DP chunker against brute force, and its fallback inside long units."""

from __future__ import annotations

import itertools
import random

import pytest

from lcbench.strategies.dp_chunked import candidates, choose_cuts, chunk_cost


def brute_force(positions, budget, inside, penalty):
    inner = positions[1:-1]
    best = None
    for r in range(len(inner) + 1):
        for chosen in itertools.combinations(inner, r):
            cuts = [positions[0], *chosen, positions[-1]]
            if any(b - a > budget for a, b in zip(cuts, cuts[1:])):
                continue
            cost = chunk_cost(cuts, budget, inside, penalty)
            if best is None or cost < best:
                best = cost
    return best


@pytest.mark.parametrize("seed", range(40))
def test_dp_is_optimal_against_brute_force(seed):
    rng = random.Random(seed)
    budget = rng.randint(8, 30)
    units = [rng.randint(1, 2 * budget) for _ in range(rng.randint(1, 7))]  # <= 15 candidates
    boundaries = list(itertools.accumulate([0, *units[:-1]]))
    positions, inside = candidates(boundaries, sum(units), budget)
    penalty = rng.choice([0.0, 50.0, 1e4])
    cuts = choose_cuts(positions, budget, inside, penalty)
    assert cuts[0] == 0 and cuts[-1] == sum(units)
    assert all(0 < b - a <= budget for a, b in zip(cuts, cuts[1:]))
    assert chunk_cost(cuts, budget, inside, penalty) == pytest.approx(brute_force(positions, budget, inside, penalty))


def test_units_longer_than_the_budget_are_cut_at_token_positions():
    positions, inside = candidates([0, 5, 40], 45, budget=10)
    assert positions == [0, 5, 15, 25, 35, 40, 45] and inside == {15, 25, 35}
    cuts = choose_cuts(positions, 10, inside, cut_penalty=1e4)
    assert set(cuts) >= {15, 25, 35}  # the long unit must be cut; nowhere else inside a unit


def test_no_boundaries_fall_back_to_token_positions():
    positions, inside = candidates([], 30, budget=10)
    assert positions == [0, 10, 20, 30] and inside == {10, 20}


def test_prefers_even_chunks_to_a_greedy_fill():
    # units of 6 with budget 12 and 3 units: greedy takes 12 + 6; even split is impossible at
    # unit boundaries, so the DP picks the cheapest: 12 + 6 costs 0 + 36 either way round
    positions, _ = candidates([0, 6, 12], 18, budget=12)
    assert chunk_cost(choose_cuts(positions, 12), 12) == 36
    # with units of 4: 12 + 8 (0 + 16) beats 8 + 12 equally; 3 chunks of 8, 8, 4 cost more
    positions, _ = candidates([0, 4, 8, 12, 16], 20, budget=12)
    assert chunk_cost(choose_cuts(positions, 12), 12) == 16


def test_hundred_thousand_candidates(benchmark):
    rng = random.Random(0)
    boundaries = list(itertools.accumulate([0, *(rng.randint(3, 20) for _ in range(100_000))]))
    total = boundaries[-1] + 10
    positions, inside = candidates(boundaries, total, budget=256)
    assert len(positions) > 100_000
    cuts = benchmark(choose_cuts, positions, 256, inside, 1e4)
    assert cuts[-1] == total and all(b - a <= 256 for a, b in zip(cuts, cuts[1:]))

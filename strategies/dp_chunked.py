"""`dp_chunked`: chunks cut at the unit boundaries a task exposes (sentence, turn, function),
chosen by dynamic programming, then processed as blockwise.

The cost of a chunking is the sum over its chunks of the squared unused budget,
(max_chunk - length)^2, plus `cut_penalty` for every cut inside a unit; no chunk exceeds the
budget. Units longer than the budget are cut at token positions (the only cuts inside a unit).
The squared slack is Knuth and Plass's line-breaking cost ("Breaking Paragraphs into Lines",
1981): it prefers even chunks to a greedy fill that leaves a ragged last one. The DP looks back
only over candidates within one budget of tokens, so it runs in O(candidates x look-back).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import ClassVar

from lcbench.model import Model
from lcbench.strategies.base import Prediction, Strategy, framed
from lcbench.strategies.blockwise import MIN_CONTEXT
from lcbench.strategies.pieces import REDUCERS, Reduce, run_pieces
from lcbench.tasks.base import Example


def candidates(boundaries: Sequence[int], total: int, budget: int) -> tuple[list[int], set[int]]:
    """(sorted cut positions in [0, total], the subset that falls inside a unit). Units longer
    than `budget` get token-position candidates every `budget` tokens."""
    starts = sorted({b for b in boundaries if 0 < b < total} | {0, total})
    positions, inside = [starts[0]], set()
    for left, right in zip(starts, starts[1:]):
        for cut in range(left + budget, right, budget):
            positions.append(cut)
            inside.add(cut)
        positions.append(right)
    return positions, inside


def choose_cuts(
    positions: Sequence[int], budget: int, inside: AbstractSet[int] = frozenset(), cut_penalty: float = 0.0
) -> list[int]:
    """The cut positions (first 0, last the total) minimising sum((budget - len)^2) + penalties.

    `positions` are sorted candidates, first 0 and last the total; consecutive candidates are at
    most `budget` apart. f[j] = min over i < j, positions[j] - positions[i] <= budget, of
    f[i] + (budget - (positions[j] - positions[i]))^2 + penalty(j).
    """
    n = len(positions)
    best = [0.0] + [float("inf")] * (n - 1)
    back = [0] * n
    low = 0
    for j in range(1, n):
        while positions[j] - positions[low] > budget:
            low += 1
        if low == j:
            raise ValueError(f"candidates {positions[j - 1]} and {positions[j]} are more than {budget} tokens apart")
        penalty = cut_penalty if positions[j] in inside else 0.0
        for i in range(low, j):
            cost = best[i] + (budget - (positions[j] - positions[i])) ** 2 + penalty
            if cost < best[j]:
                best[j], back[j] = cost, i
    cuts = [n - 1]
    while cuts[-1] != 0:
        cuts.append(back[cuts[-1]])
    return [positions[i] for i in reversed(cuts)]


def chunk_cost(cuts: Sequence[int], budget: int, inside: AbstractSet[int] = frozenset(), cut_penalty: float = 0.0) -> float:
    """The documented cost of a chunking: what `choose_cuts` minimises."""
    return sum((budget - (b - a)) ** 2 for a, b in zip(cuts, cuts[1:])) + cut_penalty * sum(c in inside for c in cuts[1:])


@dataclass
class DpChunked(Strategy):
    name: ClassVar[str] = "dp_chunked"

    max_chunk_tokens: int = 256  # prompt tokens per call: chunk + the prompt around it
    cut_penalty: float = 10_000.0  # cost of one cut inside a unit, in squared tokens
    reduce: Reduce = "first"

    def __post_init__(self) -> None:
        if self.max_chunk_tokens < MIN_CONTEXT + 1:
            raise ValueError(f"max_chunk_tokens must be at least {MIN_CONTEXT + 1}, got {self.max_chunk_tokens}")
        if self.cut_penalty < 0:
            raise ValueError(f"cut_penalty must be at least 0, got {self.cut_penalty}")
        if self.reduce not in REDUCERS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCERS)}; got {self.reduce!r}")

    def run(self, model: Model, example: Example) -> Prediction:
        ids = model.encode(example.context)
        room = self.max_chunk_tokens - framed(model, example).tokens
        if room < MIN_CONTEXT:
            raise ValueError(f"max_chunk_tokens {self.max_chunk_tokens} leaves {room} context tokens beside the prompt")
        positions, inside = candidates(example.boundaries, len(ids), room)
        cuts = choose_cuts(positions, room, inside, self.cut_penalty)
        note = "" if example.boundaries else "the task exposes no unit boundaries: cut at token positions"
        prediction = run_pieces(model, example, [ids[a:b] for a, b in zip(cuts, cuts[1:])], self.reduce, note)
        prediction.extra["cuts_inside_units"] = float(sum(c in inside for c in cuts))
        return prediction

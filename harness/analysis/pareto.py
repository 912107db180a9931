"""The Pareto set of a task at one length: the strategies no other one beats on quality, peak
memory and latency at once, with measurement noise taken into account.

`a` dominates `b` when `a`'s quality is at or above the top of `b`'s interval (a quality inside
`b`'s interval is a tie that `b` may win on more examples), neither of `a`'s costs exceeds `b`'s
by more than `tolerance` (memory and clocks are noisy), and `a` is better somewhere: higher
quality, or a cost lower by more than the tolerance. Where memory has an interval over the
cell's examples, a difference inside the overlap of the two intervals is no difference: `a` is
cheaper only where its interval lies below `b`'s, and dearer only where it lies above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lcbench.analysis.intervals import Interval

TOLERANCE = 0.1  # costs within 10% of each other count as equal


@dataclass(frozen=True)
class Option:
    """One strategy's cell at one length: its quality and what it cost."""

    strategy: str
    quality: Interval
    memory_mb: float | None
    latency_s: float | None
    params: dict[str, Any] = field(default_factory=dict)
    memory: Interval | None = None  # the peak's interval over the cell's examples (MB)
    noisy: bool = False  # some of its examples' timing was noisy (a slowed machine, spread repeats)

    def costs(self) -> tuple[float | None, float | None]:
        return self.memory_mb, self.latency_s


def dominates(a: Option, b: Option, tolerance: float = TOLERANCE) -> bool:
    if a.quality.value < b.quality.high:
        return False
    better = a.quality.value > b.quality.value
    ranges: list[tuple[Interval | None, Interval | None]] = [(a.memory, b.memory), (None, None)]
    for (cost_a, cost_b), (range_a, range_b) in zip(zip(a.costs(), b.costs()), ranges):
        if cost_a is None or cost_b is None:
            if cost_a is not cost_b:  # measured for one only: they do not compare on it
                return False
            continue
        if cost_a > cost_b * (1 + tolerance) and not overlap(range_a, range_b):
            return False
        better = better or (cost_a * (1 + tolerance) < cost_b and not overlap(range_a, range_b))
    return better


def overlap(a: Interval | None, b: Interval | None) -> bool:
    """Whether two cost intervals overlap (the difference is inside the noise); False where either is unknown."""
    return a is not None and b is not None and a.low <= b.high and b.low <= a.high


def dominated_by(options: list[Option], tolerance: float = TOLERANCE) -> dict[str, list[str]]:
    """strategy -> the strategies that dominate it (empty: it is in the Pareto set)."""
    return {b.strategy: [a.strategy for a in options if a is not b and dominates(a, b, tolerance)] for b in options}

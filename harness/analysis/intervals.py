"""Intervals over examples at 95%: a cell's mean quality, and the ratio of two cells' means.

Scores that vary are bootstrapped (Efron, 1979: each example resampled with replacement,
percentile ends). Scores that are pass or fail (every example at 0 or at the metric's top, 1 or
100) take the Wilson score interval (Wilson, 1927) as well: where every example agrees, a bootstrap
collapses to a point, and 4 of 4 would read as certain; Wilson's says 4 of 4 is consistent with a
true share as low as 0.51, and 40 of 40 with 0.91."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
Z = 1.959964  # the normal quantile at LEVEL, two-sided


@dataclass(frozen=True)
class Interval:
    value: float  # the point estimate (the mean, or the ratio of means)
    low: float
    high: float
    n: int  # examples behind it (the smaller cell, for a ratio)

    def holds(self, x: float) -> bool:
        return self.low <= x <= self.high

    def text(self, fmt: str = ".3f") -> str:
        return f"{self.value:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def _resampled_means(values: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[rng.integers(0, len(array), size=(RESAMPLES, len(array)))].mean(axis=1)


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    """The interval's ends, taken from the samples themselves (no interpolation), so that a ratio
    whose resampled denominator was 0 gives an unbounded end (inf), never inf - inf = nan."""
    tail = (1.0 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], method="nearest")
    return float(low), float(high)


def pass_fail_top(values: Sequence[float]) -> float | None:
    """The metric's top (1, or 100 for a percentage such as chrF) where every value is 0 or that
    top; None where the scores vary in between."""
    top = 100.0 if max(values, default=0.0) > 1 else 1.0
    return top if all(v in (0.0, top) for v in values) else None


def wilson(values: Sequence[float], top: float) -> tuple[float, float]:
    """The Wilson score interval of the share of passes, on the metric's scale."""
    n, share = len(values), float(np.mean(values)) / top
    centre = (share + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(share * (1 - share) / n + Z * Z / (4 * n * n))
    return max(0.0, centre - half) * top, min(1.0, centre + half) * top


def mean_interval(values: Sequence[float], seed: int = 0) -> Interval | None:
    """The mean of `values` and its interval; None where there are none."""
    if not values:
        return None
    mean = float(np.mean(values))
    low, high = _percentiles(_resampled_means(values, np.random.default_rng(seed)))
    top = pass_fail_top(values)
    if top is not None:
        wide_low, wide_high = wilson(values, top)
        low, high = min(low, wide_low), max(high, wide_high)
    return Interval(mean, min(low, mean), max(high, mean), len(values))


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float], seed: int = 0) -> Interval | None:
    """mean(numerator) / mean(denominator), the two cells resampled independently (they hold
    different examples); None where either is empty or the denominator's mean is not positive."""
    if not numerator or not denominator or float(np.mean(denominator)) <= 0:
        return None
    rng = np.random.default_rng(seed)
    tops, bottoms = _resampled_means(numerator, rng), _resampled_means(denominator, rng)
    ratios = np.divide(tops, bottoms, out=np.full_like(tops, np.inf), where=bottoms > 0)
    value = float(np.mean(numerator) / np.mean(denominator))
    low, high = _percentiles(ratios)
    top = pass_fail_top(numerator)
    if top is not None:  # pass or fail at this length: its share's Wilson ends, over the base's mean
        wide_low, wide_high = wilson(numerator, top)
        low, high = min(low, wide_low / float(np.mean(denominator))), max(high, wide_high / float(np.mean(denominator)))
    return Interval(value, min(low, value), max(high, value), min(len(numerator), len(denominator)))


def examples_to_settle(interval: Interval, threshold: float) -> int | None:
    """Examples per cell that would put `threshold` outside an interval like this one: its width
    shrinks as 1 / sqrt(n). None where the estimate sits on the threshold itself, or where the
    interval is unbounded (a ratio whose resampled denominator could be 0)."""
    margin = abs(interval.value - threshold)
    # the side of the interval that reaches across the threshold
    half_width = interval.high - interval.value if interval.value < threshold else interval.value - interval.low
    if margin == 0 or not math.isfinite(half_width):
        return None
    return max(interval.n + 1, math.ceil(interval.n * (half_width / margin) ** 2))

"""Timing noise, detected rather than hidden: a fixed probe (a small matrix product, a few
milliseconds) timed before and after every measured example, against the fastest the probe has
run in this process. A busy machine (another job, a thermal throttle) slows the probe as it slows
the work; an example whose probe ran slower than the quiet speed by more than the suite's share,
or whose timed repeats spread wider than it, is marked noisy in its record."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import torch

SIZE = 128  # a 128 x 128 float32 product: ~4 MFLOP, under a millisecond on one core
ROUNDS = 4  # products per probe timing
TAKES = 3  # the best of this many timings: noise only ever adds time


def probe_s() -> float:
    """Seconds of the fixed probe on this machine now (best of a few takes)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(SIZE, SIZE, generator=g), torch.randn(SIZE, SIZE, generator=g)
    best = float("inf")
    for _ in range(TAKES):
        start = time.perf_counter()
        for _ in range(ROUNDS):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class NoiseProbe:
    """The quiet speed of this process's machine (its fastest probe so far) and each example's
    slowdown against it."""

    quiet_s: float = field(default_factory=lambda: min(probe_s() for _ in range(3)))

    def slowdown(self) -> float:
        """This moment's probe over the quiet speed (1.0: as fast as ever); a faster probe becomes
        the quiet speed."""
        now = probe_s()
        self.quiet_s = min(self.quiet_s, now)
        return now / self.quiet_s


@functools.cache
def machine() -> NoiseProbe:
    """This process's probe, made (and its quiet speed first measured) when first needed."""
    return NoiseProbe()


def noise_reason(slowdown: float, spread: float, allowed: float) -> str:
    """Why an example's timing is not to be trusted, or "" where it is: the probe slowed by more
    than `allowed` (a share), or the repeats spread wider than it."""
    reasons = []
    if slowdown > 1 + allowed:
        reasons.append(f"the machine ran {slowdown:.2f}x slower than its quiet speed (probe)")
    if spread > allowed:
        reasons.append(f"repeats spread {spread:.0%} of their median")
    return "; ".join(reasons)

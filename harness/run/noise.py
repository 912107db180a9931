"""Timing noise, detected rather than hidden: a fixed probe (a small matrix product, a few
milliseconds) timed before and after every measured example, against the fastest the probe has
run in this process. A busy machine (another job, a thermal throttle) slows the probe as it slows
the work; an example whose probe ran slower than the quiet speed by more than the suite's share
both before and after it (one slow probe is an instant's jitter; a competing job slows both), or
whose timed repeats spread wider than it (a stall inside the span), is marked noisy in its record.
The probe sees an instant; other processes' CPU time over the whole span (Linux's /proc/stat less
this process's own) sees a job that came and went between the probes: an example during which
other processes took more than a quarter of the machine's CPU is marked noisy too."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import torch

SIZE = 256  # a 256 x 256 float32 product: ~34 MFLOP; a smaller one times the OS's jitter, not the machine
ROUNDS = 8  # products per probe timing: about 1.5 ms on a core of a 2-core VM
TAKES = 3  # the best of this many timings: noise only ever adds time
OTHERS_SHARE = 0.25  # other processes' share of the machine's CPU that makes a span noisy (half a core of two)


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


def cpu_seconds() -> tuple[float, float] | None:
    """(the machine's busy CPU seconds, this process's) so far; None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


class OthersCpu:
    """Other processes' share of the machine's CPU over a span (a `with` block): `share`, or None
    where the kernel does not say."""

    share: float | None = None

    def __enter__(self) -> OthersCpu:
        self.start, self.wall, self.share = cpu_seconds(), time.perf_counter(), None
        return self

    def __exit__(self, *exc: object) -> None:
        end, wall = cpu_seconds(), time.perf_counter() - self.wall
        if self.start is None or end is None or wall <= 0:
            return
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        self.share = max(0.0, others) / (wall * (os.cpu_count() or 1))


@functools.cache
def machine() -> NoiseProbe:
    """This process's probe, made (and its quiet speed first measured) when first needed."""
    return NoiseProbe()


def noise_reason(slowdown: float, spread: float, allowed: float, others: float | None = None) -> str:
    """Why an example's timing is not to be trusted, or "" where it is: the probe slowed by more
    than `allowed` (a share), the repeats spread wider than it, or other processes took more than
    `OTHERS_SHARE` of the machine's CPU meanwhile."""
    reasons = []
    if others is not None and others > OTHERS_SHARE:
        reasons.append(f"other processes took {others:.0%} of the machine's CPU")
    if slowdown > 1 + allowed:
        reasons.append(f"the machine ran {slowdown:.2f}x slower than its quiet speed (probe)")
    if spread > allowed:
        reasons.append(f"repeats spread {spread:.0%} of their median")
    return "; ".join(reasons)

"""Which strategy to pick: the best headline quality within a memory and time budget at each
measured length, with its interval and cost, the runner-up, and what the next looser budget buys.

Only measured lengths are answered: a length between or past them is refused, never interpolated.
Several runs (several models, or a GPU run and a CPU run) are answered one after the other, never
mixed: their costs are not comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lcbench.analysis.intervals import mean_interval
from lcbench.analysis.pareto import Option
from lcbench.config.budget import Budget
from lcbench.errors import UserError

if TYPE_CHECKING:
    from lcbench.analysis.runs import Run

@dataclass(frozen=True)
class Recommendation:
    best: Option | None
    runner_up: Option | None
    looser: Option | None  # the first better option a looser budget would admit
    cheapest: Option | None  # where nothing fits: the cheapest measured option

    @property
    def tied(self) -> bool:
        """The runner-up's quality is inside the best's interval: the sample cannot order them."""
        return self.best is not None and self.runner_up is not None and self.best.quality.holds(self.runner_up.quality.value)


def options(run: Run, task: str, length: int) -> list[Option]:
    """Every strategy that ran at `length` on `task`, with its headline quality and costs."""
    metric = run.headline(task)
    out = []
    for cell, row in run.cells.items():
        if cell.task != task or cell.length != length or not metric:
            continue
        quality = mean_interval(run.values(cell, metric))
        if quality is None:
            continue
        ok = run.ok_records[cell]
        peaks = [r.peak_mem_bytes / 2**20 for r in ok if r.peak_mem_bytes is not None]
        memory, latency = _number(row.get("peak_mem_mb")), _number(row.get("latency_s"))
        noisy = any(r.noisy for r in ok)
        out.append(Option(cell.strategy, quality, memory, latency, ok[0].params, mean_interval(peaks), noisy))
    return out


def recommend(candidates: Sequence[Option], budget: Budget) -> Recommendation:
    ranked = sorted(candidates, key=lambda o: (-o.quality.value, o.memory_mb or math.inf, o.latency_s or math.inf))
    fitting = [o for o in ranked if budget.admits(o.memory_mb, o.latency_s, o.quality.value)]
    best = fitting[0] if fitting else None
    runner_up = fitting[1] if len(fitting) > 1 else None
    floor = best.quality.value if best is not None else -math.inf
    better = [o for o in ranked if o not in fitting and o.quality.value > floor]
    # the smallest step up: the better option whose costs exceed the budget the least
    looser = min(better, key=lambda o: (o.memory_mb or math.inf, o.latency_s or math.inf), default=None)
    cheapest = None if fitting else min(ranked, key=lambda o: (o.memory_mb or math.inf, o.latency_s or math.inf), default=None)
    return Recommendation(best, runner_up, looser, cheapest)


def measured_length(run: Run, length: int | None) -> list[int]:
    """The lengths to answer: all measured ones, or `length` where it was measured (refused otherwise)."""
    measured = sorted({cell.length for cell in run.cells})
    if length is None:
        return measured
    if length > measured[-1]:
        raise UserError(
            f"{length} tokens is past the longest length measured in `{run.path}` ({measured[-1]}); lcbench does not "
            f"extrapolate: measure it with `lcbench run SUITE --lengths {length}`"
        )
    if length not in measured:
        raise UserError(
            f"{length} tokens was not measured in `{run.path}` (measured: {', '.join(map(str, measured))}); lcbench does "
            f"not interpolate: pick one of those or measure it with `lcbench run SUITE --lengths {length}`"
        )
    return [length]


def option_text(option: Option, metric: str) -> str:
    """`recursive-256: chrf 99.623 [99.1, 99.9], 6.1 MB, 2.310 s`."""
    costs = [f"{option.memory_mb:.1f} MB" if option.memory_mb is not None else "memory n/a"]
    costs.append(f"{option.latency_s:.3f} s" if option.latency_s is not None else "latency n/a")
    noisy = " (noisy timing: measure it again)" if option.noisy else ""
    return f"{option.strategy}: {metric} {option.quality.text()}, {', '.join(costs)}{noisy}"


def settings(option: Option) -> str:
    """The settings behind a strategy's label, e.g. `chunk_tokens=256, memory_tokens=127`."""
    return ", ".join(f"{k}={v}" for k, v in option.params.items()) or "defaults"


def _number(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number

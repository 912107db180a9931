"""The verdicts a run's sample cannot settle yet, and the cells more examples would settle them in:
a breaking length the interval straddles ("not measurable at L"), a Pareto order the quality
intervals leave open (one strategy would dominate another if its mean held), and a budget's pick
tied with its runner-up. Adaptive sampling spends its next examples on exactly these cells."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lcbench.analysis.breaking import THRESHOLD, breaking_lengths
from lcbench.analysis.intervals import Interval
from lcbench.analysis.pareto import TOLERANCE, Option, dominates
from lcbench.analysis.recommend import options, recommend
from lcbench.analysis.runs import CellId
from lcbench.config.budget import Budget

if TYPE_CHECKING:
    from lcbench.analysis.runs import Run


@dataclass(frozen=True)
class Open:
    """One verdict the sample leaves open: what it is, and the cells it rests on."""

    verdict: str  # e.g. "mt: full breaks at 1024?"
    cells: tuple[CellId, ...]
    settle: int | None = None  # examples per cell that would settle it, where the interval says


def open_verdicts(
    run: Run, budgets: Sequence[Budget] = (), threshold: float = THRESHOLD, lengths: Sequence[int] = ()
) -> list[Open]:
    """Every verdict of the report's answer that the intervals do not yet settle: breaking lengths,
    and the Pareto set and budget picks at the lengths the answer picks at (`lengths` where
    measured, else each task's longest), as `analysis/answer` does."""
    found = []
    for b in breaking_lengths(run, threshold):
        if b.verdict == "unsure" and b.length is not None and b.base_length is not None:
            cells = (CellId(b.task, b.strategy, b.base_length), CellId(b.task, b.strategy, b.length))
            found.append(Open(f"{b.task}: does {b.strategy} break at {b.length}?", cells, b.settle))
    for task, length in answered(run, lengths):
        choices = options(run, task, length)
        for a, b in pareto_pairs(choices):
            cells = (CellId(task, a.strategy, length), CellId(task, b.strategy, length))
            found.append(Open(f"{task} at {length}: does {a.strategy} dominate {b.strategy}?", cells))
        for budget in budgets:
            pick = recommend(choices, budget)
            if pick.tied and pick.best is not None and pick.runner_up is not None:
                cells = (CellId(task, pick.best.strategy, length), CellId(task, pick.runner_up.strategy, length))
                verdict = f"{task} at {length}, {budget.text()}: {pick.best.strategy} or {pick.runner_up.strategy}?"
                found.append(Open(verdict, cells))
    return found


def answered(run: Run, lengths: Sequence[int]) -> list[tuple[str, int]]:
    """(task, length) where the answer picks: the given lengths that were measured, else the longest."""
    found = []
    for task in dict.fromkeys(cell.task for cell in run.cells):
        measured = sorted({cell.length for cell in run.cells if cell.task == task})
        found += [(task, n) for n in ([n for n in lengths if n in measured] or measured[-1:])]
    return found


def pareto_pairs(choices: Sequence[Option], tolerance: float = TOLERANCE) -> list[tuple[Option, Option]]:
    """(a, b) where a would dominate b on their mean qualities but the intervals leave it open."""
    return [
        (a, b)
        for a in choices
        for b in choices
        if a is not b and dominates(point(a), point(b), tolerance) and not dominates(a, b, tolerance)
    ]


def point(option: Option) -> Option:
    """The option with its quality's interval shrunk to its mean: the order more examples would show."""
    q = option.quality
    return replace(option, quality=Interval(q.value, q.value, q.value, q.n))


def sampling_lines(
    run: Run, low: int, high: int, budgets: Sequence[Budget] = (), threshold: float = THRESHOLD, lengths: Sequence[int] = ()
) -> list[str]:
    """The report's account of an adaptive run: examples spent per cell and round, the cells that
    were extended, and each verdict still open with what it would need."""
    counts = collections.Counter(CellId(r.task, r.strategy, r.context_length) for r in run.records)
    rounds = collections.Counter(r.round for r in run.records)
    spent = sum(counts.values())
    lines = [
        "## Sampling",
        "",
        f"Adaptive: every cell ran {low} examples, then rounds added examples only to cells a verdict was open on, "
        f"up to {high} examples per cell: {spent} examples in {len(rounds)} rounds "
        f"({', '.join(f'round {k}: {v}' for k, v in sorted(rounds.items()))}), against {high * len(counts)} for a fixed "
        f"{high} per cell.",
        "",
    ]
    extended = {cell: n for cell, n in counts.items() if n > low}
    if extended:
        cells = "; ".join(f"{c.task} · {c.strategy} · {c.length}: {n}" for c, n in sorted(extended.items()))
        lines += [f"- extended (examples per cell): {cells}"]
    still = open_verdicts(run, budgets, threshold, lengths)
    for verdict in still:
        at_max = all(counts[c] >= high for c in verdict.cells)
        need = f"about {verdict.settle} examples per cell would settle it" if verdict.settle else "more examples would settle it"
        why = f"it reached the maximum of {high}" if at_max else "the time budget ran out first"
        lines.append(f"- open: {verdict.verdict} ({why}; {need})")
    if not still:
        lines.append("- every verdict of the answer is settled by the examples spent")
    return [*lines, ""]

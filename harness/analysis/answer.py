"""A run's answer on one screen, per task: where each strategy breaks, which strategies form the
Pareto set (quality, peak memory, latency) at a length, and the best one within each budget. The
top of `report.md` and `lcbench recommend` print the same thing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabulate import tabulate

from lcbench.analysis.breaking import THRESHOLD, Breaking, breaking_lengths
from lcbench.analysis.pareto import TOLERANCE, Option, dominated_by
from lcbench.analysis.recommend import option_text, options, recommend, settings
from lcbench.config.budget import Budget

if TYPE_CHECKING:
    from lcbench.analysis.runs import Run

SHOWN_DOMINATORS = 2


@dataclass(frozen=True)
class Question:
    threshold: float = THRESHOLD  # a strategy breaks below this share of its quality at the shortest length
    budgets: tuple[Budget, ...] = ()
    lengths: tuple[int, ...] = ()  # where to pick (default: the longest measured)
    tolerance: float = TOLERANCE  # costs this close count as equal in the Pareto set


def pareto_sets(run: Run, tolerance: float = TOLERANCE) -> dict[tuple[str, int], set[str]]:
    """(task, length) -> the strategies in its Pareto set: what the frontier plots mark."""
    out = {}
    for task, length in dict.fromkeys((cell.task, cell.length) for cell in run.cells):
        beaten = dominated_by(options(run, task, length), tolerance)
        out[(task, length)] = {strategy for strategy, by in beaten.items() if not by}
    return out


def answer(run: Run, question: Question = Question()) -> list[str]:
    """Markdown lines: per task, a sentence, the breaking-length and Pareto table, the picks."""
    verdicts: dict[str, list[Breaking]] = {}
    for verdict in breaking_lengths(run, question.threshold):
        verdicts.setdefault(verdict.task, []).append(verdict)
    lines = []
    for task, task_verdicts in verdicts.items():
        metric = run.headline(task) or "quality"
        measured = sorted({cell.length for cell in run.cells if cell.task == task})
        lengths = [n for n in question.lengths if n in measured] or measured[-1:]
        choices = {length: options(run, task, length) for length in lengths}
        lines += [f"### {task} ({metric})", "", summary_sentence(task_verdicts, choices, question, metric), ""]
        lines += [strategy_table(task_verdicts, choices[lengths[-1]], lengths[-1], metric, question.tolerance), ""]
        if question.budgets:
            lines += [budget_table(choices, question.budgets, metric), ""]
    return lines


def summary_sentence(verdicts: list[Breaking], choices: dict[int, list[Option]], question: Question, metric: str) -> str:
    reference = next((v for v in verdicts if v.strategy == "full"), verdicts[0])
    parts = [reference.sentence(question.threshold) + "."]
    holding = [v for v in verdicts if v.verdict == "holds" and v is not reference]
    if holding:
        parts.append(f"Holding to {holding[0].longest}: {', '.join(v.strategy for v in holding)}.")
    for length, found in choices.items():
        if question.budgets:
            picks = []
            for budget in question.budgets:
                pick = recommend(found, budget)
                chosen = f"{pick.best.strategy} ({metric} {pick.best.quality.text()})" if pick.best else "nothing measured fits"
                picks.append(f"under {budget.text()}: {chosen}")
            parts.append(f"At {length}, " + "; ".join(picks) + ".")
        else:
            front = sorted(
                (o for o, by in zip(found, dominated_by(found, question.tolerance).values()) if not by),
                key=lambda o: o.memory_mb if o.memory_mb is not None else float("inf"),
            )
            menu = " < ".join(
                f"{o.strategy} ({o.memory_mb:.1f} MB, {o.quality.value:.3f})" for o in front if o.memory_mb is not None
            )
            if menu:
                parts.append(f"At {length}, the Pareto set (quality, memory, latency) from least to most memory: {menu}.")
    return " ".join(parts)


def strategy_table(verdicts: list[Breaking], found: list[Option], length: int, metric: str, tolerance: float) -> str:
    by_name = {o.strategy: o for o in found}
    beaten = dominated_by(found, tolerance)
    rows = []
    for verdict in verdicts:
        option = by_name.get(verdict.strategy)
        if option is None:
            rows.append([verdict.strategy, verdict.cell(), "", "", "", "did not run"])
            continue
        by = beaten[option.strategy]
        more = f" +{len(by) - SHOWN_DOMINATORS}" if len(by) > SHOWN_DOMINATORS else ""
        pareto = f"dominated by {', '.join(by[:SHOWN_DOMINATORS])}{more}" if by else "**Pareto set**"
        rows.append(
            [
                verdict.strategy,
                verdict.cell(),
                option.quality.text(),
                f"{option.memory_mb:.1f}" if option.memory_mb is not None else "n/a",
                f"{option.latency_s:.3f}" if option.latency_s is not None else "n/a",
                pareto,
            ]
        )
    headers = ["strategy", "breaks at", f"{metric} at {length} [95%]", "peak MB", "latency s", f"at {length}"]
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def budget_table(choices: dict[int, list[Option]], budgets: Sequence[Budget], metric: str) -> str:
    rows = []
    for length, found in choices.items():
        for budget in budgets:
            pick = recommend(found, budget)
            if pick.best is None:
                cheapest = f"; the cheapest measured is {option_text(pick.cheapest, metric)}" if pick.cheapest else ""
                rows.append([length, budget.text(), f"nothing measured fits{cheapest}", "", ""])
                continue
            runner = (
                option_text(pick.runner_up, metric) + (" (tied within noise)" if pick.tied else "") if pick.runner_up else "none"
            )
            looser = option_text(pick.looser, metric) if pick.looser else "nothing better was measured"
            rows.append([length, budget.text(), f"{option_text(pick.best, metric)} ({settings(pick.best)})", runner, looser])
    headers = ["length", "budget", "best [95%]", "runner-up", "a looser budget buys"]
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)

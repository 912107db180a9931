"""Adaptive sampling: examples spent where the answer is undecided.

Every cell first runs `sampling.min` examples. Then, round after round, only the cells a verdict
of the answer still rests on (a breaking length the interval straddles, a Pareto order or a
budget's pick the quality intervals leave open: `analysis/undecided`) get more examples, twice
as many as they have, up to `sampling.max`; the cheapest examples per second go first when a time
budget is set. The run stops when no verdict is open, every open one has reached the maximum, or
the time budget would be overrun. Examples are the same by index at any count, so a cell extended
in rounds equals the same cell run at its final size at once; records say their round, and
`lcbench run --resume RUN` continues the rounds.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
import time
from pathlib import Path

from rich.console import Console

from lcbench.analysis.runs import CellId, Run
from lcbench.analysis.undecided import open_verdicts
from lcbench.config.suite import Suite
from lcbench.run.chains import RunOptions
from lcbench.run.sweep import run_suite


@dataclasses.dataclass(frozen=True)
class Extension:
    """A cell to extend in the next round: its key, how many examples it has, how many it gets,
    and the seconds one of its examples took."""

    cell: CellId
    key: str
    have: int
    target: int
    seconds_each: float

    @property
    def seconds(self) -> float:
        return (self.target - self.have) * self.seconds_each


def run_adaptive(
    suite: Suite,
    suite_hash: str,
    suite_file: str,
    console: Console | None = None,
    options: RunOptions | None = None,
    time_budget_s: float | None = None,
) -> tuple[Path, bool]:
    """Run `suite` in rounds (its `sampling` set); return (the run folder, whether it completed)."""
    assert suite.sampling is not None
    console = console or Console(stderr=True)
    options = dataclasses.replace(options or RunOptions(), partial=True)
    started = time.monotonic()
    path, completed = run_suite(at_size(suite, suite.sampling.min), suite_hash, suite_file, console, options)
    if not completed:
        return path, False
    resumed = dataclasses.replace(options, resume=path, rerun=None)
    round_ = max((r.round for r in Run.load(path).records), default=0) + 1
    while True:
        run = Run.load(path)
        extensions = next_round(run, suite)
        if time_budget_s is not None:
            elapsed = time.monotonic() - started
            # an example's estimate counts its timed runs and memory pass; what else a round costs (the
            # model's loading, warm-ups, the profiler's bookkeeping, writing) is measured as the rounds so far
            # ran: an mt round took 3.6 times its examples' estimates
            scale = max(1.0, elapsed / max(sum(seconds_spent(run).values()), 1e-9))
            extensions = within(extensions, (time_budget_s - elapsed) / scale)
        if not extensions:
            return path, True
        console.print(f"round {round_}: {len(extensions)} cells whose verdicts are open get more examples")
        for target, group in by_target(extensions).items():
            only = frozenset(e.key for e in group)
            round_options = dataclasses.replace(resumed, only=only, round=round_)
            path, completed = run_suite(at_size(suite, target), suite_hash, suite_file, console, round_options)
            if not completed:
                return path, False
        round_ += 1


def at_size(suite: Suite, samples: int) -> Suite:
    """The suite with `samples` examples per cell; its cells keep their keys (keyed by the maximum)."""
    return suite.model_copy(update={"samples": samples})


def next_round(run: Run, suite: Suite) -> list[Extension]:
    """The cells the open verdicts rest on that are below the maximum, each to twice its examples."""
    assert suite.sampling is not None
    have = collections.Counter(CellId(r.task, r.strategy, r.context_length) for r in run.records)
    keys = {CellId(r.task, r.strategy, r.context_length): r.cell_key for r in run.records}
    seconds = seconds_per_example(run)
    wanted: dict[CellId, Extension] = {}
    for verdict in open_verdicts(run, suite.recommend.budgets(), suite.recommend.breaks_below):
        for cell in verdict.cells:
            n = have[cell]
            if cell in keys and n < suite.sampling.max and cell not in wanted:
                wanted[cell] = Extension(cell, keys[cell], n, min(suite.sampling.max, 2 * n), seconds.get(cell, 0.0))
    return sorted(wanted.values(), key=lambda e: e.seconds)


def example_spans(run: Run) -> dict[CellId, list[float]]:
    """Each cell's examples' seconds: the timed repeats and the counting pass, as long as one of them."""
    spans: dict[CellId, list[float]] = collections.defaultdict(list)
    for r in run.records:
        if r.latency_s is not None:
            spans[CellId(r.task, r.strategy, r.context_length)].append(r.latency_s * ((r.repeats or 1) + 1))
    return spans


def seconds_per_example(run: Run) -> dict[CellId, float]:
    """Each cell's median seconds per example, its counting pass and repeats included."""
    return {cell: statistics.median(values) for cell, values in example_spans(run).items()}


def seconds_spent(run: Run) -> dict[CellId, float]:
    """Each cell's estimated seconds so far: what the time budget's estimates are calibrated against."""
    return {cell: sum(values) for cell, values in example_spans(run).items()}


def within(extensions: list[Extension], seconds_left: float) -> list[Extension]:
    """The cheapest extensions first, as many as the time left holds (none where none fits)."""
    chosen, spent = [], 0.0
    for e in sorted(extensions, key=lambda e: e.seconds):
        if spent + e.seconds > seconds_left:
            break
        chosen.append(e)
        spent += e.seconds
    return chosen


def by_target(extensions: list[Extension]) -> dict[int, list[Extension]]:
    groups: dict[int, list[Extension]] = {}
    for e in extensions:
        groups.setdefault(e.target, []).append(e)
    return dict(sorted(groups.items()))

"""Running chains: what every engine shares (the run's options, skip-after-oom, the executors of
this machine, Ctrl-C, progress) and the local loop.

A chain is one task and one strategy over its lengths, ascending, on one device: once a strategy
runs out of memory at a length, its longer lengths in the chain are recorded `skipped` instead of
being tried (skip-after-oom is `Skips`, whatever the engine). A `Sweep` is the work an engine is
handed: the chains still to run and where their records go.
"""

from __future__ import annotations

import collections
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lcbench.config.plan import Cell, Chain
from lcbench.config.suite import Suite
from lcbench.reference.models import model_path
from lcbench.run.executor import Executor, Limits, local_executor
from lcbench.run.records import Record
from lcbench.run.run_dir import RunDir
from lcbench.run.runner import cell_record


@dataclass(frozen=True)
class RunOptions:
    isolate: bool = False
    limits: Limits = field(default_factory=Limits)
    skip_after_oom: bool = True
    resume: Path | None = None  # a run folder to complete
    show_prompt: bool = False  # print what the model read for each cell's first example
    executor: str = "local"  # local (in process, or isolated), ray or slurm
    cluster: dict[str, Any] = field(default_factory=dict)  # the executor's site settings (profile and flags)
    rerun: str | None = None  # with resume: "noisy" measures the cells with noisy timing again
    # adaptive rounds: cells cut short keep their records and run only the examples they lack; `only`
    # names the cells this round extends (None: every cell), `round` is written in their records
    partial: bool = False
    only: frozenset[str] | None = None
    round: int = 0


class Skips:
    """Skip-after-oom: (task, strategy) -> the shortest length that ran out of memory so far."""

    def __init__(self, suite: Suite, oom_at: dict[tuple[str, str], int], enabled: bool = True) -> None:
        self.suite, self.oom_at, self.enabled = suite, oom_at, enabled

    def records(self, cell: Cell) -> list[Record] | None:
        """The cell's `skipped` records where a shorter length of its chain ran out of memory, else None."""
        shortest = self.oom_at.get((cell.task_key, cell.strategy.key))
        if not self.enabled or shortest is None or cell.length <= shortest:
            return None
        reason = f"skipped (oom at {shortest})"
        return [cell_record(self.suite, cell, i, "skipped", reason) for i in range(cell.first, self.suite.samples)]

    def saw(self, cell: Cell, records: list[Record]) -> None:
        if any(r.status == "oom" for r in records):
            key = (cell.task_key, cell.strategy.key)
            self.oom_at[key] = min(self.oom_at.get(key, cell.length), cell.length)


@dataclass
class Sweep:
    """The work handed to an engine: the chains still to run, where their records go, the skip
    filter, the run's options and where progress is shown."""

    suite: Suite
    todo: list[Chain]
    run_dir: RunDir
    skips: Skips
    options: RunOptions
    console: Console

    @property
    def cells(self) -> int:
        return sum(len(chain.cells) for chain in self.todo)


def chain_model(suite: Suite, chain: Chain) -> str:
    """The model folder a chain runs on."""
    return str(model_path(suite.model, chain.cells[0].task.name))


class Local:
    """Executors on this machine, one per model folder, each loaded when its first chain comes."""

    def __init__(self, suite: Suite, options: RunOptions) -> None:
        self.suite, self.options = suite, options
        self.executors: dict[str, Executor] = {}

    def for_model(self, model_dir: str) -> Executor:
        if model_dir not in self.executors:
            self.executors[model_dir] = local_executor(self.suite, model_dir, self.options.isolate, self.options.limits)
        return self.executors[model_dir]

    def close(self) -> None:
        for executor in self.executors.values():
            executor.close()


class Interrupt:
    """The first Ctrl-C asks the run to stop after the cell in flight; a second stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nlcbench: stopping after the cell in flight (Ctrl-C again to stop now)", flush=True)


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    handler = Interrupt()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGINT, previous)


def progress_bar(console: Console) -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console)


def run_locally(sweep: Sweep, executor_for: Callable[[Chain], Executor]) -> bool:
    """Run the sweep chain by chain, cell by cell, appending records as they come; False if Ctrl-C
    stopped the run early."""
    suite, skips, run_dir = sweep.suite, sweep.skips, sweep.run_dir
    with interruptible() as interrupt, progress_bar(sweep.console) as progress:
        overall = progress.add_task("all cells", total=sweep.cells * suite.samples)
        for chain in sweep.todo:
            for cell in chain.cells:
                if interrupt.requested:
                    return False
                current = progress.add_task(cell.title, total=suite.samples - cell.first)
                records, ran = skips.records(cell), 0
                if records is not None:
                    run_dir.append(records)
                else:
                    records = []
                    for record in executor_for(chain).run(cell):
                        run_dir.append([record])
                        records.append(record)
                        if record.ends_example:
                            ran += 1
                            progress.advance(current)
                            progress.advance(overall)
                progress.advance(overall, suite.samples - cell.first - ran)  # a skipped cell counts whole
                skips.saw(cell, records)
                progress.remove_task(current)
                progress.console.print(f"  {cell.title}: {summarise(records)}")
                if sweep.options.show_prompt:
                    show_prompts(progress.console, records, cell)
    return True


def show_prompts(console: Console, records: list[Record], cell: Cell) -> None:
    """Every call of the cell's first example as the model read it (what `prompts.jsonl` keeps),
    from the records just written: the file is not read again."""
    shown = next((r for r in records if r.prompts), None)
    if shown is None:
        return
    for i, call in enumerate(shown.prompts, 1):
        console.rule(f"{cell.title} · {shown.example_id} · call {i} of {len(shown.prompts)} · {call['tokens']} tokens")
        console.print(call["prompt"], markup=False, highlight=False)
        console.rule("output")
        console.print(call["output"], markup=False, highlight=False)


def summarise(records: list[Record]) -> str:
    counts = collections.Counter(r.status for r in records)
    ok = counts.pop("ok", 0)
    rest = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{ok}/{len(records)} ok" + (f" ({rest})" if rest else "")

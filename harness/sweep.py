"""`lcbench run`: plan the cells, group them into chains, run each chain on an executor, append
the records, write the report.

A chain is one task and one strategy over its lengths, ascending, on one device: once a strategy
runs out of memory at a length, its longer lengths in the chain are recorded `skipped` instead of
being tried (skip-after-oom is this module's filter, whatever the executor). A run can be isolated
(each cell in a child process with a timeout and a memory cap), spread over a Ray or Slurm cluster
(`--executor`), resumed (`--resume RUN_DIR` runs only the cells whose records are not all there)
and interrupted with Ctrl-C (the cell in flight finishes, the partial report is written, and the
command to resume is printed).
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

from lcbench.environment import environment
from lcbench.errors import UserError
from lcbench.executor import Executor, Limits, local_executor
from lcbench.model import check_model_dir
from lcbench.plan import Cell, Chain, chains, plan
from lcbench.records import Record
from lcbench.report import headline, write_report
from lcbench.run_dir import RunDir
from lcbench.runner import cell_record
from lcbench.suite import REFERENCE, Suite

REFERENCE_DIR = Path(__file__).parent / "reference"  # the shipped models, trained by `lcbench train-reference`
# Which shipped model answers a task under `model: reference`: translation has its own model;
# every answer family (and a user's jsonl data) goes to the look-up model.
REFERENCE_MODELS = {"mt": "mt"}
LOOKUP = "lookup"


@dataclass(frozen=True)
class RunOptions:
    isolate: bool = False
    limits: Limits = field(default_factory=Limits)
    skip_after_oom: bool = True
    resume: Path | None = None  # a run folder to complete
    show_prompt: bool = False  # print what the model read for each cell's first example
    executor: str = "local"  # local (in process, or isolated), ray or slurm
    cluster: dict[str, Any] = field(default_factory=dict)  # the executor's site settings (profile and flags)


def reference_dir(task: str) -> Path:
    """The shipped model that `model: reference` runs `task` on."""
    return REFERENCE_DIR / REFERENCE_MODELS.get(task, LOOKUP)


def model_path(suite: Suite, task: str) -> Path:
    return reference_dir(task) if suite.model == REFERENCE else Path(suite.model)


def model_label(suite: Suite, task: str) -> str:
    """What answered `task`, as the report and env.json name it."""
    return f"{REFERENCE}/{reference_dir(task).name}" if suite.model == REFERENCE else suite.model


def check_models(suite: Suite) -> None:
    """Every model folder the suite needs, checked before anything loads."""
    paths = sorted({model_path(suite, t.name) for t in suite.tasks})
    problems = [p for path in paths for p in check_model_dir(path, suite.trust_remote_code)]
    if problems:  # said here, plainly, rather than as a worker that died loading
        raise UserError(problems)


def chain_model(suite: Suite, chain: Chain) -> str:
    return str(model_path(suite, chain.cells[0].task.name))


class Skips:
    """Skip-after-oom: (task, strategy) -> the shortest length that ran out of memory so far."""

    def __init__(self, suite: Suite, oom_at: dict[tuple[str, str], int], enabled: bool = True) -> None:
        self.suite, self.oom_at, self.enabled = suite, oom_at, enabled

    def records(self, cell: Cell) -> list[Record] | None:
        """The cell's `skipped` records where a shorter length of its chain ran out of memory, else None."""
        shortest = self.oom_at.get((cell.task_key, cell.strategy.key))
        if not self.enabled or shortest is None or cell.length <= shortest:
            return None
        return [cell_record(self.suite, cell, i, "skipped", f"skipped (oom at {shortest})") for i in range(self.suite.samples)]

    def saw(self, cell: Cell, records: list[Record]) -> None:
        if any(r.status == "oom" for r in records):
            key = (cell.task_key, cell.strategy.key)
            self.oom_at[key] = min(self.oom_at.get(key, cell.length), cell.length)


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


def run_suite(
    suite: Suite, suite_hash: str, suite_file: str, console: Console | None = None, options: RunOptions | None = None
) -> tuple[Path, bool]:
    """Run every cell of `suite` not yet done; return (the run folder, whether every cell ran).
    A new folder is made only once the first model has loaded, so a bad model path leaves nothing."""
    console = console or Console(stderr=True)
    options = options or RunOptions()
    check_models(suite)
    if options.executor != "local":
        from lcbench.cluster import run_on_cluster

        return run_on_cluster(suite, suite_hash, suite_file, console, options)
    local = Local(suite, options)
    try:
        first = local.for_model(str(model_path(suite, suite.tasks[0].name)))
        run_dir, suite_hash = open_run_dir(suite, suite_hash, suite_file, options, first.device, first.dtype)
        todo, skips = pending(suite, suite_hash, run_dir, options, console)
        completed = run_chains(
            suite, todo, run_dir, lambda chain: local.for_model(chain_model(suite, chain)), skips, options, console
        )
    finally:
        local.close()
    finish(run_dir, completed)
    return run_dir.path, completed


def pending(suite: Suite, suite_hash: str, run_dir: RunDir, options: RunOptions, console: Console) -> tuple[list[Chain], Skips]:
    """The chains of the cells still to run (all of them in a new run), and the skip filter."""
    cells = plan(suite, suite_hash)
    done = run_dir.keep_finished(cells, suite.samples) if options.resume is not None else set()
    if done:
        console.print(f"resuming {run_dir.path}: {len(done)} cells done, {len(cells) - len(done)} to run")
    return chains([c for c in cells if c.key not in done]), Skips(suite, run_dir.oom_at(), options.skip_after_oom)


def finish(run_dir: RunDir, completed: bool, pending_jobs: bool = False) -> None:
    """Write the report and say where it is; how to finish a run that stopped early, or whose
    cluster jobs are still running (`pending_jobs`)."""
    summary = write_report(run_dir.path, run_dir)
    print(headline(summary))
    print(f"\nresults in {run_dir.path}/ (records.jsonl, summary.csv, report.md, env.json)")
    if pending_jobs:
        print(f"jobs still running: the report covers the cells collected; merge the rest with `lcbench collect {run_dir.path}`")
    elif not completed:
        print(f"interrupted: the report covers the cells that ran; resume with `lcbench run --resume {run_dir.path}`")


def open_run_dir(
    suite: Suite, suite_hash: str, suite_file: str, options: RunOptions, device: str, dtype: str
) -> tuple[RunDir, str]:
    """(the run folder, the suite hash its cell keys use): the resumed one, or a new one with its
    env.json and suite.json written."""
    if options.resume is not None:
        run_dir = RunDir.resume(options.resume)
        return run_dir, run_dir.env.get("suite_hash", suite_hash)
    run_dir = RunDir.create(Path(suite.output), suite.name)
    env = environment(
        suite=suite.name, suite_file=suite_file, suite_hash=suite_hash, seed=suite.seed, model=suite.model,
        models={t.key: model_label(suite, t.name) for t in suite.tasks}, device=device, dtype=dtype, executor=options.executor,
    )  # fmt: skip
    run_dir.write_env(env)
    run_dir.write_suite(suite.model_dump_json(indent=2))
    run_dir.append([])  # records.jsonl exists from the start: the run is under way
    return run_dir, suite_hash


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


def run_chains(
    suite: Suite,
    todo: list[Chain],
    run_dir: RunDir,
    executor_for: Callable[[Chain], Executor],
    skips: Skips,
    options: RunOptions,
    console: Console,
) -> bool:
    """Run `todo` chain by chain, cell by cell, appending records as they come; False if Ctrl-C
    stopped the run early."""
    with interruptible() as interrupt, progress_bar(console) as progress:
        overall = progress.add_task("all cells", total=sum(len(c.cells) for c in todo) * suite.samples)
        for chain in todo:
            for cell in chain.cells:
                if interrupt.requested:
                    return False
                current = progress.add_task(cell.title, total=suite.samples)
                records, ran = skips.records(cell), 0
                if records is not None:
                    run_dir.append(records)
                else:
                    records = []
                    for record in executor_for(chain).run(cell):
                        run_dir.append([record])
                        records.append(record)
                        ran += 1
                        progress.advance(current)
                        progress.advance(overall)
                progress.advance(overall, suite.samples - ran)  # a skipped cell counts whole
                skips.saw(cell, records)
                progress.remove_task(current)
                progress.console.print(f"  {cell.title}: {summarise(records)}")
                if options.show_prompt:
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

"""`lcbench run`: load the model once, run every cell, append records, write the report.

A run can be isolated (each cell in a child process, with a timeout and a memory cap), resumed
(`--resume RUN_DIR` runs only the cells whose records are not all there), and interrupted with
Ctrl-C (the cell in flight finishes, the partial report is written, and the command to resume is
printed). Once a strategy runs out of memory at a length, its longer lengths are recorded as
skipped instead of being tried.
"""

from __future__ import annotations

import collections
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lcbench.environment import environment
from lcbench.errors import UserError
from lcbench.executor import Limits, Worker, run_in_process, run_isolated
from lcbench.model import Model, check_model_dir
from lcbench.plan import Cell, plan
from lcbench.records import PROMPTS, RECORDS, Record, RecordWriter, read_records, write_atomic
from lcbench.report import headline, write_report
from lcbench.runner import ExampleCache, cell_record
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


def reference_dir(task: str) -> Path:
    """The shipped model that `model: reference` runs `task` on."""
    return REFERENCE_DIR / REFERENCE_MODELS.get(task, LOOKUP)


def model_path(suite: Suite, task: str) -> Path:
    return reference_dir(task) if suite.model == REFERENCE else Path(suite.model)


def model_label(suite: Suite, task: str) -> str:
    """What answered `task`, as the report and env.json name it."""
    return f"{REFERENCE}/{reference_dir(task).name}" if suite.model == REFERENCE else suite.model


def new_run_dir(suite: Suite) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(suite.output) / f"{suite.name}-{stamp}"
    n = 1
    while run_dir.exists():  # two runs in one second
        n += 1
        run_dir = Path(suite.output) / f"{suite.name}-{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def finished_cells(run_dir: Path, cells: list[Cell], samples: int) -> set[str]:
    """Keys of the cells whose records are all in `run_dir`. The records file is rewritten with
    those alone (atomically): a cell cut short, or a torn last line, is dropped to be rerun."""
    path = run_dir / RECORDS
    records = list(read_records(path)) if path.is_file() else []
    by_cell = collections.Counter(r.cell_key for r in records)
    planned = {c.key for c in cells}
    done = {key for key, count in by_cell.items() if key in planned and count >= samples}
    write_atomic(path, "".join(r.to_json() + "\n" for r in records if r.cell_key in done))
    return done


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


def run_suite(
    suite: Suite, suite_hash: str, suite_file: str, console: Console | None = None, options: RunOptions | None = None
) -> tuple[Path, bool]:
    """Run every cell of `suite` not yet done; return (the run folder, whether every cell ran).
    A new folder is made only once the first model has loaded, so a bad model path leaves nothing."""
    console = console or Console(stderr=True)
    options = options or RunOptions()
    models = Models(suite, options)
    try:
        first = models.for_task(suite.tasks[0].name)
        run_dir, suite_hash = open_run_dir(suite, suite_hash, suite_file, options, first)
        cells = plan(suite, suite_hash)
        done = finished_cells(run_dir, cells, suite.samples) if options.resume is not None else set()
        todo = [c for c in cells if c.key not in done]
        if done:
            console.print(f"resuming {run_dir}: {len(done)} cells done, {len(todo)} to run")
        completed = run_cells(suite, todo, run_dir, models, options, console, out_of_memory_at(run_dir))
    finally:
        models.close()
    summary = write_report(run_dir)
    print(headline(summary, list(read_records(run_dir / RECORDS))))
    print(f"\nresults in {run_dir}/ (records.jsonl, summary.csv, report.md, env.json)")
    if not completed:
        print(f"interrupted: the report covers the cells that ran; resume with `lcbench run --resume {run_dir}`")
    return run_dir, completed


@dataclass
class Loaded:
    """One model, here (`model`, with its example cache) or in an isolated `worker`."""

    model: Model | None = None
    worker: Worker | None = None
    examples: ExampleCache | None = None

    @property
    def device(self) -> str:
        return self.worker.device if self.worker is not None else self.model.device  # type: ignore[union-attr]

    @property
    def dtype(self) -> str:
        return self.worker.dtype if self.worker is not None else str(next(self.model.hf_model.parameters()).dtype)  # type: ignore[union-attr]


class Models:
    """The models a suite's tasks run on, each loaded once, when its first cell comes: one for a
    user's model; under `model: reference`, the shipped model of each task's family. Every model
    folder is checked before anything loads."""

    def __init__(self, suite: Suite, options: RunOptions) -> None:
        self.suite, self.options = suite, options
        self.loaded: dict[Path, Loaded] = {}
        paths = sorted({model_path(suite, t.name) for t in suite.tasks})
        problems = [p for path in paths for p in check_model_dir(path, suite.trust_remote_code)]
        if problems:  # said here, plainly, rather than as a worker that died loading
            raise UserError(problems)

    def for_task(self, task: str) -> Loaded:
        path = model_path(self.suite, task)
        if path not in self.loaded:
            self.loaded[path] = self.load(path)
        return self.loaded[path]

    def load(self, path: Path) -> Loaded:
        suite = self.suite
        if self.options.isolate:
            worker = Worker(suite, str(path), self.options.limits)
            worker.start()
            return Loaded(worker=worker)
        model = Model.load(path, suite.device, suite.dtype, suite.trust_remote_code)
        return Loaded(model=model, examples=ExampleCache(suite, model))

    def close(self) -> None:
        for loaded in self.loaded.values():
            if loaded.worker is not None:
                loaded.worker.close()


def open_run_dir(suite: Suite, suite_hash: str, suite_file: str, options: RunOptions, first: Loaded) -> tuple[Path, str]:
    """(the run folder, the suite hash its cell keys use): the resumed one, or a new one with its
    env.json and suite.json written."""
    if options.resume is not None:
        return options.resume, json.loads((options.resume / "env.json").read_text()).get("suite_hash", suite_hash)
    run_dir = new_run_dir(suite)
    env = environment(
        suite=suite.name, suite_file=suite_file, suite_hash=suite_hash, seed=suite.seed, model=suite.model,
        models={t.key: model_label(suite, t.name) for t in suite.tasks}, device=first.device, dtype=first.dtype,
    )  # fmt: skip
    write_atomic(run_dir / "env.json", json.dumps(env, indent=2))
    write_atomic(run_dir / "suite.json", suite.model_dump_json(indent=2))
    return run_dir, suite_hash


def run_cells(
    suite: Suite,
    cells: list[Cell],
    run_dir: Path,
    models: Models,
    options: RunOptions,
    console: Console,
    oom_at: dict[tuple[str, str], int],
) -> bool:
    """Run `cells` in order, appending records; False if Ctrl-C stopped the run early. `oom_at`:
    (task, strategy) -> the shortest length that ran out of memory, so far."""
    records_path = run_dir / RECORDS
    with interruptible() as interrupt, progress_bar(console) as progress:
        overall = progress.add_task("all cells", total=len(cells) * suite.samples)
        for cell in cells:
            if interrupt.requested:
                return False
            current = progress.add_task(cell.title, total=suite.samples)

            def advance(current: TaskID = current) -> None:
                progress.advance(current)
                progress.advance(overall)

            shortest_oom = oom_at.get((cell.task_key, cell.strategy.key))
            if options.skip_after_oom and shortest_oom is not None and cell.length > shortest_oom:
                records = [
                    cell_record(suite, cell, i, "skipped", f"skipped (oom at {shortest_oom})") for i in range(suite.samples)
                ]
                with RecordWriter(records_path) as writer:
                    writer.write(records)
                progress.update(current, advance=suite.samples)
                progress.advance(overall, suite.samples)
            elif (loaded := models.for_task(cell.task.name)).worker is not None:
                records = run_isolated(suite, cell, loaded.worker, records_path, advance)
            else:
                assert loaded.model is not None and loaded.examples is not None
                with RecordWriter(records_path) as writer:
                    records = run_in_process(suite, loaded.model, cell, loaded.examples, writer, advance)
            if any(r.status == "oom" for r in records):
                oom_at.setdefault((cell.task_key, cell.strategy.key), cell.length)
            progress.remove_task(current)
            progress.console.print(f"  {cell.title}: {summarise(records)}")
            if options.show_prompt:
                show_prompts(progress.console, run_dir, cell)
    return True


def show_prompts(console: Console, run_dir: Path, cell: Cell) -> None:
    """Every call of the cell's first example as the model read it, from `prompts.jsonl`."""
    path = run_dir / PROMPTS
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    shown = next((json.loads(line) for line in reversed(lines) if f'"cell_key": "{cell.key}"' in line), None)
    if shown is None:
        return
    for i, call in enumerate(shown["calls"], 1):
        title = f"{cell.title} · {shown['example_id']} · call {i} of {len(shown['calls'])} · {call['tokens']} tokens"
        console.rule(title)
        console.print(call["prompt"], markup=False, highlight=False)
        console.rule("output")
        console.print(call["output"], markup=False, highlight=False)


def out_of_memory_at(run_dir: Path) -> dict[tuple[str, str], int]:
    """From the records already in `run_dir` (a resumed run): where each strategy ran out of memory."""
    found: dict[tuple[str, str], int] = {}
    path = run_dir / RECORDS
    for r in read_records(path) if path.is_file() else []:
        if r.status == "oom":
            key = (r.task, r.strategy)
            found[key] = min(found.get(key, r.context_length), r.context_length)
    return found


def summarise(records: list[Record]) -> str:
    counts = collections.Counter(r.status for r in records)
    ok = counts.pop("ok", 0)
    rest = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{ok}/{len(records)} ok" + (f" ({rest})" if rest else "")


def check_resumable(run_dir: Path) -> None:
    for name in ("env.json", "suite.json"):
        if not (run_dir / name).is_file():
            raise UserError(
                f"`{run_dir}` has no {name}: it is not a run folder written by `lcbench run`, so it cannot be resumed"
            )

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
from lcbench.records import RECORDS, Record, RecordWriter, read_records, write_atomic
from lcbench.report import headline, write_report
from lcbench.runner import ExampleCache, cell_record
from lcbench.suite import REFERENCE, Suite

REFERENCE_DIR = Path(__file__).parent / "reference"  # the shipped model, trained by `lcbench train-reference`


@dataclass(frozen=True)
class RunOptions:
    isolate: bool = False
    limits: Limits = field(default_factory=Limits)
    skip_after_oom: bool = True
    resume: Path | None = None  # a run folder to complete


def model_path(suite: Suite) -> Path:
    return REFERENCE_DIR if suite.model == REFERENCE else Path(suite.model)


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
    A new folder is made only once the model has loaded, so a bad model path leaves nothing."""
    console = console or Console(stderr=True)
    options = options or RunOptions()
    model, worker = load(suite, options)
    try:
        run_dir, suite_hash = open_run_dir(suite, suite_hash, suite_file, options, model, worker)
        cells = plan(suite, suite_hash)
        done = finished_cells(run_dir, cells, suite.samples) if options.resume is not None else set()
        todo = [c for c in cells if c.key not in done]
        if done:
            console.print(f"resuming {run_dir}: {len(done)} cells done, {len(todo)} to run")
        completed = run_cells(suite, todo, run_dir, model, worker, options, console, out_of_memory_at(run_dir))
    finally:
        if worker is not None:
            worker.close()
    summary = write_report(run_dir)
    print(headline(summary, list(read_records(run_dir / RECORDS))))
    print(f"\nresults in {run_dir}/ (records.jsonl, summary.csv, report.md, env.json)")
    if not completed:
        print(f"interrupted: the report covers the cells that ran; resume with `lcbench run --resume {run_dir}`")
    return run_dir, completed


def load(suite: Suite, options: RunOptions) -> tuple[Model | None, Worker | None]:
    """The model here, or (isolated) a started worker that holds it."""
    if not options.isolate:
        return Model.load(model_path(suite), suite.device, suite.dtype, suite.trust_remote_code), None
    problems = check_model_dir(model_path(suite), suite.trust_remote_code)
    if problems:  # said here, plainly, rather than as a worker that died loading
        raise UserError(problems)
    worker = Worker(suite, str(model_path(suite)), options.limits)
    worker.start()
    return None, worker


def open_run_dir(
    suite: Suite, suite_hash: str, suite_file: str, options: RunOptions, model: Model | None, worker: Worker | None
) -> tuple[Path, str]:
    """(the run folder, the suite hash its cell keys use): the resumed one, or a new one with its
    env.json and suite.json written."""
    if options.resume is not None:
        return options.resume, json.loads((options.resume / "env.json").read_text()).get("suite_hash", suite_hash)
    run_dir = new_run_dir(suite)
    device = worker.device if worker is not None else model.device  # type: ignore[union-attr]
    dtype = worker.dtype if worker is not None else str(next(model.hf_model.parameters()).dtype)  # type: ignore[union-attr]
    env = environment(
        suite=suite.name, suite_file=suite_file, suite_hash=suite_hash, seed=suite.seed,
        model=suite.model, device=device, dtype=dtype,
    )  # fmt: skip
    write_atomic(run_dir / "env.json", json.dumps(env, indent=2))
    write_atomic(run_dir / "suite.json", suite.model_dump_json(indent=2))
    return run_dir, suite_hash


def run_cells(
    suite: Suite,
    cells: list[Cell],
    run_dir: Path,
    model: Model | None,
    worker: Worker | None,
    options: RunOptions,
    console: Console,
    oom_at: dict[tuple[str, str], int],
) -> bool:
    """Run `cells` in order, appending records; False if Ctrl-C stopped the run early. `oom_at`:
    (task, strategy) -> the shortest length that ran out of memory, so far."""
    examples = ExampleCache(suite, model) if model is not None else None
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

            shortest_oom = oom_at.get((cell.task.name, cell.strategy.key))
            if options.skip_after_oom and shortest_oom is not None and cell.length > shortest_oom:
                records = [
                    cell_record(suite, cell, i, "skipped", f"skipped (oom at {shortest_oom})") for i in range(suite.samples)
                ]
                with RecordWriter(records_path) as writer:
                    writer.write(records)
                progress.update(current, advance=suite.samples)
                progress.advance(overall, suite.samples)
            elif worker is not None:
                records = run_isolated(suite, cell, worker, records_path, advance)
            else:
                assert model is not None and examples is not None
                with RecordWriter(records_path) as writer:
                    records = run_in_process(suite, model, cell, examples, writer, advance)
            if any(r.status == "oom" for r in records):
                oom_at.setdefault((cell.task.name, cell.strategy.key), cell.length)
            progress.remove_task(current)
            progress.console.print(f"  {cell.title}: {summarise(records)}")
    return True


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

"""`lcbench run`: load the model once, run every cell, append records, write the report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lcbench.environment import environment
from lcbench.model import Model
from lcbench.plan import plan
from lcbench.records import RecordWriter, read_records, write_atomic
from lcbench.report import headline, write_report
from lcbench.runner import ExampleCache, run_cell
from lcbench.suite import REFERENCE, Suite

REFERENCE_DIR = Path(__file__).parent / "reference"  # the shipped model, trained by `lcbench train-reference`


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


def run_suite(suite: Suite, suite_hash: str, suite_file: str, console: Console | None = None) -> Path:
    """Run every cell of `suite`; return the run folder. The folder is made only once the
    model has loaded, so a bad model path leaves nothing behind."""
    console = console or Console(stderr=True)
    model = Model.load(model_path(suite), suite.device, suite.dtype, suite.trust_remote_code)
    run_dir = new_run_dir(suite)
    env = environment(
        suite=suite.name,
        suite_file=suite_file,
        suite_hash=suite_hash,
        seed=suite.seed,
        model=suite.model,
        device=model.device,
        dtype=str(next(model.hf_model.parameters()).dtype),
    )
    write_atomic(run_dir / "env.json", json.dumps(env, indent=2))
    write_atomic(run_dir / "suite.json", suite.model_dump_json(indent=2))
    cells = plan(suite, suite_hash)
    examples = ExampleCache(suite, model)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with RecordWriter(run_dir / "records.jsonl") as writer, Progress(*columns, console=console) as progress:
        overall = progress.add_task("all cells", total=len(cells) * suite.samples)
        for cell in cells:
            current = progress.add_task(cell.title, total=suite.samples)

            def advance(current: TaskID = current) -> None:
                progress.advance(current)
                progress.advance(overall)

            records = []
            for record in run_cell(suite, model, cell, examples, advance):
                writer.write([record])
                records.append(record)
            progress.remove_task(current)
            ok = sum(r.status == "ok" for r in records)
            progress.console.print(f"  {cell.title}: {ok}/{len(records)} ok")
    summary = write_report(run_dir)
    print(headline(summary, list(read_records(run_dir / "records.jsonl"))))
    print(f"\nresults in {run_dir}/ (records.jsonl, summary.csv, report.md, env.json)")
    return run_dir

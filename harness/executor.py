"""Where a cell runs: in this process (fast, for small runs), or in a child process of its own
(`--isolate`) with a wall-clock limit (`--cell-timeout`) and a memory cap (`--max-memory`), so
that a hang, an out-of-memory or a crash in one cell becomes that cell's records and the sweep
goes on.

Children append their records themselves (one line at a time, synced), so a child killed midway
leaves the examples it finished; the parent writes the rest of the cell as `timeout` or `error`
with the reason. On a CPU the child is forked from the parent with the model already loaded (no
reload per cell); on a GPU each child is spawned and loads the model, so that no CUDA context
crosses a fork.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcbench.model import Model
from lcbench.plan import Cell
from lcbench.records import Record, RecordWriter, read_records
from lcbench.runner import ExampleCache, run_cell
from lcbench.suite import Suite


@dataclass(frozen=True)
class Limits:
    cell_timeout: float | None = None  # seconds of wall time per cell
    max_memory: int | None = None  # bytes of address space per child (setrlimit)


def cell_record(suite: Suite, cell: Cell, index: int, status: str, message: str) -> Record:
    """A record for an example the cell never got to (timeout, crash, skipped)."""
    return Record(
        suite=suite.name,
        task=cell.task.name,
        strategy=cell.strategy.key,
        strategy_name=cell.strategy.name,
        params=dict(cell.strategy.params),
        context_length=cell.length,
        example_id=f"{cell.task.name}-{cell.length}-{index}",
        cell_key=cell.key,
        status=status,  # type: ignore[arg-type]
        message=message,
    )


def run_in_process(
    suite: Suite, model: Model, cell: Cell, examples: ExampleCache, writer: RecordWriter, advance: Callable[[], None]
) -> list[Record]:
    records = []
    for record in run_cell(suite, model, cell, examples, advance):
        writer.write([record])
        records.append(record)
    return records


def _child(
    suite: Suite, cell: Cell, records_path: Path, limits: Limits, connection: Any, model: Model | None, model_dir: str
) -> None:
    """The child's whole life: cap its memory, ignore Ctrl-C (the parent decides), run one cell."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if limits.max_memory is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory, limits.max_memory))
    if model is None:
        model = Model.load(model_dir, suite.device, suite.dtype, suite.trust_remote_code)
    with RecordWriter(records_path) as writer:
        for record in run_cell(suite, model, cell, ExampleCache(suite, model), lambda: connection.send("example")):
            writer.write([record])
    connection.send("done")


def run_isolated(
    suite: Suite, cell: Cell, records_path: Path, limits: Limits, advance: Callable[[], None], model: Model | None, model_dir: str
) -> list[Record]:
    """Run `cell` in a child; return its records, including those the parent wrote for it."""
    on_gpu = model is None
    context: Any = multiprocessing.get_context("spawn" if on_gpu else "fork")
    parent_end, child_end = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(suite, cell, records_path, limits, child_end, model, model_dir), daemon=True)
    child.start()
    child_end.close()
    deadline = None if limits.cell_timeout is None else time.monotonic() + limits.cell_timeout
    timed_out = False
    while True:
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        if parent_end.poll(wait):
            try:
                if parent_end.recv() == "example":
                    advance()
            except EOFError:  # the child is gone
                break
        elif not child.is_alive():
            break
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            child.kill()
            break
    child.join()
    parent_end.close()
    written = [r for r in read_records(records_path) if r.cell_key == cell.key]
    missing = range(len(written), suite.samples)
    if not missing:
        return written
    if timed_out:
        status, message = "timeout", f"the cell ran past --cell-timeout {limits.cell_timeout:g}s and was stopped"
    else:
        status, message = "error", crash_message(child.exitcode, limits)
    extra = [cell_record(suite, cell, i, status, message) for i in missing]
    with RecordWriter(records_path) as writer:
        writer.write(extra)
    for _ in extra:
        advance()
    return written + extra


def crash_message(exitcode: int | None, limits: Limits) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the system's out-of-memory killer sends SIGKILL; try --max-memory)" if -exitcode == signal.SIGKILL else ""
        return f"the cell's process was killed by signal {-exitcode} ({name}){hint}"
    return f"the cell's process exited with code {exitcode} before finishing its examples"


def parse_memory(text: str) -> int:
    """'8G', '512M', '1.5g' or a byte count -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = text.strip().lower().removesuffix("b")
    scale = units.get(value[-1:], 1)
    number = float(value[:-1] if value[-1:] in units else value)
    if number <= 0:
        raise ValueError(text)
    return int(number * scale)


def default_isolation(device: str) -> bool:
    """Isolated by default where a GPU is used: one OOM there must not take the sweep down."""
    return device.startswith("cuda") or (device == "auto" and _cuda())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

"""Where a cell runs: in this process (fast, for small runs), or in a child process of its own
(`--isolate`) with a wall-clock limit (`--cell-timeout`) and a memory cap (`--max-memory`), so
that a hang, an out-of-memory or a crash in one cell becomes that cell's records and the sweep
goes on.

One worker process loads the model and runs cell after cell; it appends records itself (one
line at a time, synced), so a worker killed midway leaves the examples it finished, and the parent
writes the rest of that cell as `timeout` or `error` with the reason, then starts a new worker
for the next cell. The parent itself never loads the model.
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

from lcbench.errors import UserError
from lcbench.model import Model
from lcbench.plan import Cell
from lcbench.records import Record, RecordWriter, read_records
from lcbench.runner import ExampleCache, cell_record, run_cell
from lcbench.suite import Suite


@dataclass(frozen=True)
class Limits:
    cell_timeout: float | None = None  # seconds of wall time per cell
    max_memory: int | None = None  # bytes of address space per child (setrlimit)


def run_in_process(
    suite: Suite, model: Model, cell: Cell, examples: ExampleCache, writer: RecordWriter, advance: Callable[[], None]
) -> list[Record]:
    records = []
    for record in run_cell(suite, model, cell, examples, advance):
        writer.write([record])
        records.append(record)
    return records


def _worker(suite: Suite, model_dir: str, limits: Limits, connection: Any) -> None:
    """The worker's whole life: load the model once, cap its memory, run the cells it is sent.
    Ctrl-C is the parent's to handle: the cell in flight finishes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    model = Model.load(model_dir, suite.device, suite.dtype, suite.trust_remote_code)
    if limits.max_memory is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory, limits.max_memory))
    examples = ExampleCache(suite, model)
    connection.send(("ready", model.device, str(next(model.hf_model.parameters()).dtype)))
    while (job := connection.recv()) is not None:
        cell, records_path = job
        with RecordWriter(records_path) as writer:
            for record in run_cell(suite, model, cell, examples, lambda: connection.send(("example",))):
                writer.write([record])
        connection.send(("done",))


class Worker:
    """A spawned process that keeps the model loaded across cells, replaced when a cell kills
    it or outruns its time. Spawned, not forked: a fork of a process that has run OpenMP (every
    torch CPU op) or CUDA hangs or breaks in the child."""

    def __init__(self, suite: Suite, model_dir: str, limits: Limits) -> None:
        self.suite, self.model_dir, self.limits = suite, model_dir, limits
        self.process: Any = None
        self.connection: Any = None
        self.device, self.dtype = "", ""

    def start(self) -> None:
        context: Any = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        args = (self.suite, self.model_dir, self.limits, child_end)
        self.process = context.Process(target=_worker, args=args, daemon=True)
        self.process.start()
        child_end.close()
        try:
            _, self.device, self.dtype = self.connection.recv()
        except EOFError:
            self.process.join()
            raise UserError(
                f"the isolated worker could not load the model ({crash_message(self.process.exitcode, self.limits)})"
            ) from None

    def run(self, cell: Cell, records_path: Path, advance: Callable[[], None]) -> tuple[str, str]:
        """("done", "") or (status, message) for a cell that did not finish: timeout or error."""
        if self.process is None or not self.process.is_alive():
            self.start()
        self.connection.send((cell, records_path))
        deadline = None if self.limits.cell_timeout is None else time.monotonic() + self.limits.cell_timeout
        while True:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                if self.connection.poll(wait):
                    message = self.connection.recv()
                    if message[0] == "done":
                        return "done", ""
                    advance()
                    continue
            except (EOFError, ConnectionError):
                pass  # the worker is gone: its exit code says why
            if not self.process.is_alive():
                self.process.join()
                outcome = ("error", crash_message(self.process.exitcode, self.limits))
                self.process = None
                return outcome
            if deadline is not None and time.monotonic() >= deadline:
                self.process.kill()
                self.process.join()
                self.process = None
                return "timeout", f"the cell ran past --cell-timeout {self.limits.cell_timeout:g}s and was stopped"

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.connection.send(None)
            self.process.join(timeout=30)
            if self.process.is_alive():
                self.process.kill()


def run_isolated(suite: Suite, cell: Cell, worker: Worker, records_path: Path, advance: Callable[[], None]) -> list[Record]:
    """Run `cell` in the worker; return its records, including those written here for examples
    it never finished (the worker appends its own as it goes)."""
    outcome, message = worker.run(cell, records_path, advance)
    written = [r for r in read_records(records_path) if r.cell_key == cell.key]
    missing = range(len(written), suite.samples)
    if outcome == "done" or not missing:
        return written
    extra = [cell_record(suite, cell, i, outcome, message) for i in missing]
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

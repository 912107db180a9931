"""Where cells run. An `Executor` runs one cell at a time on one device and yields the cell's
records as its examples finish; the sweep decides which cell comes next (chains, skip-after-oom)
and is the only writer of the run folder.

- `InProcess`: the model in this process (fast, for small runs).
- `Isolated` (`--isolate`): the model in a child process of its own, with a wall-clock limit
  (`--cell-timeout`) and a memory cap (`--max-memory`), so that a hang, an out-of-memory or a crash
  in one cell becomes that cell's records and the sweep goes on. The child sends each record as
  its example finishes; when it dies, the rest of the cell is recorded `timeout` or `error` with
  the reason, and a new child serves the next cell.
- Ray and Slurm executors (`lcbench.run.ray_engine`, `lcbench.run.slurm_engine`) spread chains of
  cells over many devices; each holds `Isolated` executors where the work runs.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from lcbench.config.plan import Cell
from lcbench.config.suite import Suite
from lcbench.errors import UserError
from lcbench.model import Model
from lcbench.run.records import Record
from lcbench.run.runner import ExampleCache, cell_record, run_cell


@dataclass(frozen=True)
class Limits:
    cell_timeout: float | None = None  # seconds of wall time per cell
    max_memory: int | None = None  # bytes of address space per child (setrlimit)


def device_label(model: Model) -> tuple[str, str]:
    """(device, GPU type): what a record says it ran on; CUDA_VISIBLE_DEVICES where a scheduler set it."""
    device, gpu = model.device, ""
    if device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(torch.device(device))
        device = f"{device} {gpu}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"{device} (CUDA_VISIBLE_DEVICES={visible})" if visible else device), gpu


class Executor(ABC):
    """Runs cells on one device. `device` and `dtype` say what it measured on."""

    device: str = ""
    dtype: str = ""
    gpu: str = ""  # the GPU's type, where there is one

    @abstractmethod
    def run(self, cell: Cell) -> Iterator[Record]:
        """The cell's records, one per example, as they finish; a failure is a record, never an exception."""

    def close(self) -> None:
        return None


def stamped(records: Iterator[Record], host: str, device: str, gpu: str, dtype: str) -> Iterator[Record]:
    for record in records:
        yield replace(record, host=host, device=device, gpu=gpu, dtype=dtype)


class InProcess(Executor):
    """The model loaded here, once; cells run in this process."""

    def __init__(self, suite: Suite, model_dir: str) -> None:
        self.suite = suite
        self.model = Model.load(model_dir, suite.device, suite.dtype, suite.trust_remote_code, suite.device_map)
        self.examples = ExampleCache(suite, self.model)
        self.device, self.gpu = device_label(self.model)
        self.dtype = str(next(self.model.hf_model.parameters()).dtype)

    def run(self, cell: Cell) -> Iterator[Record]:
        return stamped(
            run_cell(self.suite, self.model, cell, self.examples), socket.gethostname(), self.device, self.gpu, self.dtype
        )


# Signals an isolated child leaves to its parent: Ctrl-C, and Slurm's warning before a time limit
# or a preemption (SIGUSR2, sent to every process of the job, whose default action would kill the
# child). A Slurm shard adds SIGTERM (`leave_to_parent`): Slurm ends a job by signalling each of its
# processes, and a child that died first was recorded as the strategy's error before the shard's
# own SIGTERM arrived; the shard kills its children itself as it stops.
LEFT_TO_PARENT: set[int] = {signal.SIGINT, signal.SIGUSR2}


def leave_to_parent(signum: int) -> None:
    """Isolated children started from now on ignore `signum`: this process acts on it for them."""
    LEFT_TO_PARENT.add(signum)


def _worker(suite: Suite, model_dir: str, limits: Limits, connection: Any, ignored: tuple[int, ...] = ()) -> None:
    """The child's whole life: load the model once, cap its memory, run the cells it is sent and
    send back each record as its example finishes. The signals in `ignored` are the parent's."""
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)
    executor = InProcess(suite, model_dir)
    if limits.max_memory is not None:
        cap_memory(executor.model.device, limits.max_memory)
    connection.send(("ready", executor.device, executor.dtype, executor.gpu))
    while (cell := connection.recv()) is not None:
        for record in executor.run(cell):
            connection.send(("record", record))
        connection.send(("done",))


def cap_memory(device: str, max_bytes: int) -> str:
    """Cap what a cell may allocate, and say what was capped. On CPU the address space
    (RLIMIT_AS). On a GPU the allocator's share of the device: CUDA reserves far more virtual
    address space than it uses, so RLIMIT_AS there would break CUDA rather than cap the cell."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, max_bytes / total), index)
        return f"GPU memory of {device} capped at {max_bytes / (1 << 30):.2f} GiB of {total / (1 << 30):.2f} GiB"
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    return f"address space capped at {max_bytes / (1 << 30):.2f} GiB"


class Isolated(Executor):
    """A spawned child that keeps the model loaded across cells, replaced when a cell kills it or
    outruns its time. Spawned, not forked: a fork of a process that has run OpenMP (every torch
    CPU op) or CUDA hangs or breaks in the child."""

    def __init__(self, suite: Suite, model_dir: str, limits: Limits = Limits()) -> None:
        self.suite, self.model_dir, self.limits = suite, model_dir, limits
        self.process: Any = None
        self.connection: Any = None
        self.start()

    def start(self) -> None:
        context: Any = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        ignored = tuple(sorted(LEFT_TO_PARENT))
        self.process = context.Process(
            target=_worker, args=(self.suite, self.model_dir, self.limits, child_end, ignored), daemon=True
        )
        self.process.start()
        child_end.close()
        try:
            _, self.device, self.dtype, self.gpu = self.connection.recv()
        except EOFError:
            self.process.join()
            raise UserError(
                f"the isolated worker could not load the model ({crash_message(self.process.exitcode, self.limits)})"
            ) from None

    def run(self, cell: Cell) -> Iterator[Record]:
        if self.process is None or not self.process.is_alive():
            self.start()
        self.connection.send(cell)
        deadline = None if self.limits.cell_timeout is None else time.monotonic() + self.limits.cell_timeout
        sent = 0
        while True:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                if self.connection.poll(wait):
                    message = self.connection.recv()
                    if message[0] == "done":
                        return
                    sent += message[1].ends_example  # examples finished (a shared context's at its last question)
                    yield message[1]
                    continue
            except (EOFError, ConnectionError):
                pass  # the child is gone: its exit code says why
            if not self.process.is_alive():
                self.process.join()
                status, message_text = "error", crash_message(self.process.exitcode, self.limits)
            elif deadline is not None and time.monotonic() >= deadline:
                self.process.kill()
                self.process.join()
                status, message_text = (
                    "timeout",
                    f"the cell ran past --cell-timeout {self.limits.cell_timeout:g}s and was stopped",
                )
            else:
                continue
            self.process = None
            for i in range(cell.first + sent, self.suite.samples):
                record = cell_record(self.suite, cell, i, status, message_text)
                yield replace(record, host=socket.gethostname(), device=self.device, gpu=self.gpu)
            return

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.connection.send(None)
            self.process.join(timeout=30)
            if self.process.is_alive():
                self.process.kill()


def local_executor(suite: Suite, model_dir: str, isolate: bool, limits: Limits) -> Executor:
    return Isolated(suite, model_dir, limits) if isolate else InProcess(suite, model_dir)


def crash_message(exitcode: int | None, limits: Limits) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the system's out-of-memory killer sends SIGKILL; try --max-memory)" if -exitcode == signal.SIGKILL else ""
        return f"the cell's process was killed by signal {-exitcode} ({name}){hint}"
    return f"the cell's process exited with code {exitcode} before finishing its examples"


def default_isolation(device: str) -> bool:
    """Isolated by default where a GPU is used: one OOM there must not take the sweep down."""
    return device.startswith("cuda") or (device == "auto" and _cuda())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

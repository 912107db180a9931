"""`--executor ray`: chains over a Ray cluster, one actor per GPU.

Each actor holds `Isolated` executors (one per model folder, loaded once per actor), so a cell's
timeout, memory cap and crash-as-record behave as on one machine. The driver hands the longest
chains first to idle actors and feeds each actor its chain cell by cell, so skip-after-oom is the
sweep's filter here too, and writes every record itself, with the Ray node that ran it. Ray's own
retries are off (they would retry a cell killed for memory without limit); a lost actor (a dead
node, a killed process) has the rest of its chain rerun once by the next free actor, then recorded
`error` naming the host and node it was on. A lost actor is replaced only when none is left (its
node's GPUs went with it), and a replacement that no node can take in `PLACE_S` ends the run's
remaining chains as `error` records, rather than waiting for a node that may never come.
"""

from __future__ import annotations

import collections
import os
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any

from lcbench.config.plan import Cell, Chain
from lcbench.config.suite import Suite
from lcbench.run.chains import RunOptions, Sweep, chain_model, interruptible, progress_bar, show_prompts, summarise
from lcbench.run.executor import Isolated, Limits
from lcbench.run.records import Record
from lcbench.run.runner import cell_record

PLACE_S = 120.0  # how long a replacement actor may wait for a node that can take it


class CellRunner:
    """The actor: one device's worth of work, one cell at a time."""

    def __init__(self, suite: Suite, limits: Limits) -> None:
        self.suite, self.limits = on_the_gpu_ray_gave(suite), limits
        self.executors: dict[str, Isolated] = {}

    def where(self) -> str:
        """The host, its Ray node, and the GPU Ray gave this actor."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return f"{socket.gethostname()} ({this_node()}" + (f", CUDA_VISIBLE_DEVICES={visible})" if visible else ")")

    def run(self, cell: Cell, model_dir: str) -> list[Record]:
        if model_dir not in self.executors:
            self.executors[model_dir] = Isolated(self.suite, model_dir, self.limits)
        node = this_node()
        return [replace(r, node=node) for r in self.executors[model_dir].run(cell)]


def this_node() -> str:
    import ray

    return f"ray node {ray.get_runtime_context().get_node_id()[:12]}"


def on_the_gpu_ray_gave(suite: Suite) -> Suite:
    """Ray shows an actor only its own GPU (as cuda:0, through CUDA_VISIBLE_DEVICES): a suite's
    `device: cuda:3` names a GPU of the whole node, so inside an actor it becomes `cuda`."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") and suite.device.startswith("cuda:"):
        return suite.model_copy(update={"device": "cuda"})
    return suite


@dataclass
class Work:
    """A chain in progress: the cells still to run and whether it already lost an actor."""

    chain: Chain
    cells: collections.deque[Cell] = field(default_factory=collections.deque)
    retried: bool = False


@dataclass
class Slot:
    actor: Any
    host: str
    work: Work | None = None


def connect(options: RunOptions) -> bool:
    """Join the cluster at `address` (or start one of this machine alone); True if started here."""
    import ray

    if ray.is_initialized():
        return False
    address = options.cluster.get("address")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


def actor_count(options: RunOptions) -> tuple[int, dict[str, Any]]:
    """How many actors and what each asks for: one per GPU where the cluster has GPUs, else one
    per `cpus_per_actor` CPUs. CPUs are asked for explicitly, so that torch keeps its threads."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    # On GPUs an actor's CPU share defaults to the node's CPUs over its GPUs: Ray sets an actor's
    # OMP_NUM_THREADS to its CPUs, and one thread would starve tokenising, scoring and the host side.
    default_cpus = max(1, int(resources.get("CPU", 1) // gpus)) if gpus else 1
    cpus = float(options.cluster.get("cpus_per_actor", default_cpus))
    wanted = options.cluster.get("actors")
    threads = {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(max(1, int(cpus)))}}}
    if gpus:
        return int(wanted or gpus), {"num_gpus": 1, "num_cpus": cpus, **threads}
    return int(wanted or max(1, int(resources.get("CPU", 1) // cpus))), {"num_gpus": 0, "num_cpus": cpus, **threads}


def run_chains(sweep: Sweep) -> bool:
    """Run the sweep's chains over the cluster; False if Ctrl-C stopped it early (cells in flight finish)."""
    import ray

    started = connect(sweep.options)
    try:
        return drive(sweep)
    finally:
        if started:
            ray.shutdown()


def drive(sweep: Sweep) -> bool:
    import ray

    suite, todo, run_dir, skips, options = sweep.suite, sweep.todo, sweep.run_dir, sweep.skips, sweep.options
    count, resources = actor_count(options)
    remote: Any = ray.remote(max_restarts=0, max_task_retries=0, **resources)(CellRunner)  # type: ignore[call-overload]

    def new_slot(wait_s: float | None = None) -> Slot:
        """A fresh actor, placed; within `wait_s` where given (an actor placed on a node that then
        turns out dead is tried again), else GetTimeoutError."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while True:
            actor = remote.remote(suite, options.limits)
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                return Slot(actor, ray.get(actor.where.remote(), timeout=left))
            except ray.exceptions.RayActorError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ray.exceptions.GetTimeoutError("no node took the actor") from None
                time.sleep(1.0)

    queue = collections.deque(Work(c, collections.deque(c.cells)) for c in sorted(todo, key=lambda c: -c.cost))
    slots = [new_slot() for _ in range(min(count, len(queue)))]
    running: dict[Any, tuple[Slot, Cell]] = {}
    with interruptible() as interrupt, progress_bar(sweep.console) as progress:
        overall = progress.add_task(f"all cells on {len(slots)} Ray actors", total=sweep.cells * suite.samples)

        def record(cell: Cell, records: list[Record]) -> None:
            run_dir.append(records)
            skips.saw(cell, records)
            progress.advance(overall, suite.samples)
            progress.console.print(f"  {cell.title}: {summarise(records)}")
            if options.show_prompt:
                show_prompts(progress.console, records, cell)

        def feed(slot: Slot) -> None:
            """Give `slot` its chain's next cell to run (writing skipped ones), or a new chain."""
            while not interrupt.requested:
                if slot.work is None or not slot.work.cells:
                    slot.work = queue.popleft() if queue else None
                    if slot.work is None:
                        return
                cell = slot.work.cells.popleft()
                skipped = skips.records(cell)
                if skipped is not None:
                    record(cell, skipped)
                    continue
                running[slot.actor.run.remote(cell, chain_model(suite, slot.work.chain))] = (slot, cell)
                return

        for slot in slots:
            feed(slot)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in done:
                slot, cell = running.pop(ref)
                try:
                    record(cell, ray.get(ref))
                except ray.exceptions.RayActorError as exc:  # the actor is gone: its chain reruns once elsewhere
                    progress.console.print(f"  the Ray actor on {slot.host} was lost ({type(exc).__name__}) running {cell.title}")
                    lost(slot, cell, exc, queue, record, suite)
                    slots.remove(slot)
                    if slots or not queue or interrupt.requested:
                        continue
                    try:  # none left: one more, where a node can take it
                        slot = new_slot(PLACE_S)
                        slots.append(slot)
                    except ray.exceptions.GetTimeoutError:
                        reason = f"no Ray node could take an actor in {PLACE_S:g}s after the one on {slot.host} was lost"
                        while queue:
                            for each in queue.popleft().cells:
                                record(each, errors(suite, each, reason))
                        continue
                feed(slot)
            for idle in [s for s in slots if s.work is None or not s.work.cells]:  # a chain handed back by a lost actor
                if queue and all(slot is not idle for slot, _ in running.values()):
                    feed(idle)
    return not interrupt.requested and not queue


def lost(slot: Slot, cell: Cell, exc: Exception, queue: collections.deque[Work], record: Any, suite: Suite) -> None:
    work = slot.work
    assert work is not None
    rest = collections.deque([cell, *work.cells])
    if not work.retried:
        queue.appendleft(Work(work.chain, rest, retried=True))
    else:
        reason = f"the Ray actor on {slot.host} was lost running this chain, the second actor to be ({type(exc).__name__})"
        for each in rest:
            record(each, errors(suite, each, reason))
    slot.work = None


def errors(suite: Suite, cell: Cell, reason: str) -> list[Record]:
    """The `error` records of a cell's examples still to run."""
    return [cell_record(suite, cell, i, "error", reason) for i in range(cell.first, suite.samples)]

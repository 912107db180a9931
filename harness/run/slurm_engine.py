"""`--executor slurm`: the sweep as one Slurm job array, submitted through submitit.

Chains are packed into shards, at most `array_parallelism` (default 8) per model folder, costliest
first. Each shard (one array task) runs its chains on its node as `lcbench run` would, skip-after-oom
and `--isolate` included, and appends each record, synced, to its own `RUN_DIR/parts/<shard>.jsonl`.
A preempted or timed-out shard is requeued and starts again from its part file: only the cell it was
in reruns, and no record is written twice. A shard told to stop (scancel, a requeue, its time
limit) stops at once, writing nothing more: the example in flight is not recorded as the strategy's
failure. The driver polls the jobs with one `squeue` call (no accounting database needed), shows
one progress bar over the shards' part files, and merges the parts into records.jsonl; with
`--no-wait` it returns at once and `lcbench collect RUN_DIR` merges later. Examples a job never
wrote become records naming the job: `lost` where the cluster ended it (cancelled, past its time
limit, a node failure), measured again by `lcbench run --resume`; `error` where the shard itself
failed. RUN_DIR must be on a filesystem the nodes share; `cluster: local` or `debug` tries all this
without Slurm.
"""

from __future__ import annotations

import collections
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import submitit
from rich.console import Console
from submitit.core.utils import JobPaths, pickle_load

from lcbench.config.plan import Chain, plan
from lcbench.config.suite import Suite, validate
from lcbench.errors import UserError
from lcbench.run.chains import Local, RunOptions, Skips, Sweep, chain_model, progress_bar, summarise
from lcbench.run.executor import leave_to_parent
from lcbench.run.records import Record, RecordWriter, read_records, write_atomic
from lcbench.run.run_dir import RunDir
from lcbench.run.runner import cell_record
from lcbench.run.slurm_queue import GONE, ORDINARY_WAITS, UNANSWERED, queue_states

JOBS = "jobs.json"  # under RUN_DIR/slurm: each shard's job id and cells, all `lcbench collect` needs
CLUSTERS = ("slurm", "local", "debug")  # local and debug run the shards on this machine, to try a setup
PARALLELISM = 8  # shards per model folder, and shards running at once, unless `array_parallelism` says
LOCAL_TIMEOUT_MIN = 24 * 60  # submitit's local executor stops a job after 2 minutes unless told otherwise
UNLIMITED_MIN = 7 * 24 * 60  # a shard's time limit on a partition without one
POLL_S = 2.0
# Slurm states of a job that may still write records (submitit's own list, and a few more)
UNFINISHED = {
    "PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "PREEMPTED", "READY", "RESIZING", "UNKNOWN",
    "REQUEUE_HOLD", "REQUEUE_FED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", UNANSWERED,
}  # fmt: skip
# How an ended job's missing examples are recorded: `error` where the shard's own process failed,
# `oom` where the job passed its memory request, else `lost` (the cluster ended it: cancelled,
# past its time limit, a node failure, preempted), which `lcbench run --resume` measures again.
SHARD_FAILED = {"FAILED": "error", "COMPLETED": "error", "OUT_OF_MEMORY": "oom"}
States = dict[str, tuple[str, str]]  # job id -> (its state, why it ended where it failed)
OomAt = dict[tuple[str, str], int]  # (task, strategy) -> the shortest length that ran out of memory


class Shard(submitit.helpers.Checkpointable):
    """One task of the array: chains of one model, run in order. All its progress is in its part
    file, so that a requeued shard (the same object, pickled again) knows where it stopped."""

    def __init__(self, name: str, suite: Suite, chains: Sequence[Chain], part: Path, options: RunOptions, oom_at: OomAt) -> None:
        self.name, self.suite, self.chains, self.part = name, suite, tuple(chains), part
        self.isolate, self.limits, self.skip_after_oom = options.isolate, options.limits, options.skip_after_oom
        self.oom_at: OomAt = dict(oom_at)

    def __call__(self) -> int:
        """Run every cell not yet whole in the part file; returns how many ran."""
        node = this_job()
        if node:  # a job of its own (not `cluster: debug`, which runs shards in the driver)
            stop_at_once_when_told()
        kept = keep_whole_cells(self.part, {c.key: self.suite.samples - c.first for ch in self.chains for c in ch.cells})
        by_cell: dict[str, list[Record]] = collections.defaultdict(list)
        for record in kept:
            by_cell[record.cell_key].append(record)
        skips = Skips(self.suite, dict(self.oom_at), self.skip_after_oom)
        local = Local(self.suite, RunOptions(isolate=self.isolate, limits=self.limits))
        ran = 0
        try:
            with RecordWriter(self.part) as writer, open(prompts_of(self.part), "a", encoding="utf-8") as prompts:
                for chain in self.chains:
                    for cell in chain.cells:
                        if cell.key in by_cell:  # whole before a requeue: not run again
                            skips.saw(cell, by_cell[cell.key])
                            continue
                        records = skips.records(cell)
                        if records is not None:
                            records = [replace(r, node=node) for r in records]
                            writer.write(records)
                        else:
                            records = []
                            for record in local.for_model(chain_model(self.suite, chain)).run(cell):
                                if record.prompts:  # beside the part, not in a prompts file the shards share
                                    prompts.write(record.shown() + "\n")
                                    prompts.flush()
                                    record = replace(record, prompts=[])
                                record = replace(record, node=node)
                                writer.write([record])
                                records.append(record)
                        skips.saw(cell, records)
                        ran += 1
                        print(f"{cell.title}: {summarise(records)}", flush=True)
        finally:
            local.close()
        return ran

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption or timeout: requeue the shard as it is (its part file
        says what is done)."""
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def this_job() -> str:
    """The job a shard runs as, for its records: `slurm job 123_4` (its process id, run locally)."""
    try:
        environment = submitit.JobEnvironment()
        return f"{'slurm' if environment.cluster == 'slurm' else environment.cluster} job {environment.job_id}"
    except RuntimeError:  # `cluster: debug` runs the shard in the driver's process
        return ""


def stop_at_once_when_told() -> None:
    """Slurm ends a job (scancel, `scontrol requeue`, its time limit, a preemption) with SIGTERM, and
    SIGKILL seconds later. submitit lets SIGTERM pass, so the cell in flight went on, and its
    isolated child, killed by the same signal, was recorded as the strategy's error. Stop here
    instead: every record written so far is whole on disk, and the example in flight is left to
    `collect` (lost to the cluster) or to the requeued shard (which runs it again)."""

    def stop(signum: int, frame: Any) -> None:
        print(f"lcbench: the shard was told to stop (signal {signum}); its records so far are in its part file", flush=True)
        for child in multiprocessing.active_children():  # an isolated cell's, which leaves SIGTERM to this process
            child.kill()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    leave_to_parent(signal.SIGTERM)


def prompts_of(part: Path) -> Path:
    """The prompts a shard's first examples made, in a folder of their own (parts/*.jsonl are records)."""
    folder = part.parent / "prompts"
    folder.mkdir(exist_ok=True)
    return folder / part.name


def keep_whole_cells(part: Path, expected: dict[str, int]) -> list[Record]:
    """The part file's records of whole cells (`expected`: cell key -> the examples the shard runs of
    it); the file (and its prompts) is rewritten, atomically, with those alone: a cell cut short by
    a requeue, or a torn last line, is dropped to be rerun."""
    if not part.is_file():
        return []
    records = list(read_records(part))
    counts = collections.Counter(r.cell_key for r in records if r.ends_example)
    kept = [r for r in records if counts[r.cell_key] >= expected.get(r.cell_key, 0) > 0]
    write_atomic(part, "".join(r.to_json() + "\n" for r in kept))
    prompts = prompts_of(part)
    if prompts.is_file():
        whole = {r.cell_key for r in kept}
        lines = [line for line in prompts.read_text(encoding="utf-8").splitlines() if _cell_key(line) in whole]
        write_atomic(prompts, "".join(line + "\n" for line in lines))
    return kept


def _cell_key(line: str) -> str | None:
    try:
        return str(json.loads(line)["cell_key"])
    except (ValueError, KeyError, TypeError):
        return None  # a torn line


def pack(suite: Suite, todo: Sequence[Chain], per_model: int) -> list[list[Chain]]:
    """Chains grouped by model folder (a shard loads one model), each group spread over at most
    `per_model` shards, costliest chain first onto the least loaded shard."""
    by_model: dict[str, list[Chain]] = {}
    for chain in todo:
        by_model.setdefault(chain_model(suite, chain), []).append(chain)
    shards: list[list[Chain]] = []
    for chains in by_model.values():
        bins: list[list[Chain]] = [[] for _ in range(min(per_model, len(chains)))]
        loads = [0] * len(bins)
        for chain in sorted(chains, key=lambda c: -c.cost):
            i = loads.index(min(loads))
            bins[i].append(chain)
            loads[i] += chain.cost
        shards += bins
    return shards


def minutes(value: Any) -> int:
    """A Slurm time limit as whole minutes: `90`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`."""
    text = str(value).strip()
    days, dash, clock = text.partition("-")
    if not dash:
        days, clock = "0", text
    try:
        fields = [float(f) for f in clock.split(":")]
        units = (3600, 60, 1) if dash else {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}.get(len(fields), ())
        seconds = int(days) * 86400 + sum(f * u for f, u in zip(fields, units)) if len(fields) <= len(units) else -1
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise UserError(f"slurm time `{value}` is not a time limit; give minutes (90) or HH:MM:SS (01:30:00)")
    return max(1, math.ceil(seconds / 60))


def check_settings(suite: Suite, options: RunOptions) -> None:
    """The site settings, checked before the run folder is made: a bad one leaves nothing behind."""
    settings = options.cluster
    cluster = settings.get("cluster") or "slurm"
    if cluster not in CLUSTERS:
        raise UserError(f"slurm setting `cluster: {cluster}` is not one of {', '.join(CLUSTERS)}")
    if settings.get("time") is not None:
        minutes(settings["time"])
    if cluster == "slurm" and shutil.which("srun") is None:
        raise UserError(
            "--executor slurm: there is no `srun` here (to try it without Slurm, set `cluster: local` in the profile)"
        )


def partition_limit(partition: str | None) -> int:
    """The time limit of `partition` (the default one where None) in minutes, as sinfo gives it;
    a partition without one gets UNLIMITED_MIN. A shard past its limit is requeued by submitit
    (three times at most) and goes on from its part file."""
    try:
        listed = subprocess.run(["sinfo", "--noheader", "--format=%P|%l"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    rows = [line.partition("|")[::2] for line in listed.split()]
    limits = {name.rstrip("*"): limit for name, limit in rows}
    default = next((name.rstrip("*") for name, _ in rows if name.endswith("*")), "")
    limit = limits.get(partition or default, "infinite")
    try:
        return UNLIMITED_MIN if limit in ("infinite", "n/a", "") else minutes(limit)
    except UserError:
        return UNLIMITED_MIN


def make_executor(folder: Path, settings: dict[str, Any], suite: Suite) -> submitit.AutoExecutor:
    """submitit's executor for `cluster` (Slurm unless told), with the site settings. Never submitit's
    guess: without Slurm it would quietly run everything on this machine."""
    cluster = settings.get("cluster") or "slurm"
    if cluster not in CLUSTERS:
        raise UserError(f"slurm setting `cluster: {cluster}` is not one of {', '.join(CLUSTERS)}")
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as exc:  # no srun on this machine
        raise UserError(f"--executor slurm: {exc} (to try it without Slurm, set `cluster: local` in the profile)") from None
    parameters: dict[str, Any] = {"name": f"lcbench-{suite.name}"}
    if settings.get("time") is not None:
        parameters["timeout_min"] = minutes(settings["time"])
    elif cluster == "local":
        parameters["timeout_min"] = LOCAL_TIMEOUT_MIN
    elif cluster == "slurm":  # submitit's own default is 5 minutes a shard
        parameters["timeout_min"] = partition_limit(settings.get("partition"))
    for key, name in (("gpus", "gpus_per_node"), ("cpus_per_task", "cpus_per_task")):
        if settings.get(key) is not None:
            parameters[name] = int(settings[key])
    # slurm_* parameters are passed on to Slurm and ignored by the local and debug executors
    parameters.update(
        slurm_partition=settings.get("partition"),
        slurm_account=settings.get("account"),
        slurm_array_parallelism=int(settings.get("array_parallelism") or PARALLELISM),
    )
    executor.update_parameters(**parameters)
    return executor


def run_chains(sweep: Sweep) -> bool:
    """Submit the sweep's chains as one job array and, unless told not to wait, wait for it and
    collect its records; False when the run is not complete yet (not waiting, or Ctrl-C)."""
    suite, run_dir, options, console, todo = sweep.suite, sweep.run_dir, sweep.options, sweep.console, sweep.todo
    settings = options.cluster
    if not todo:
        say(console, "every cell of this run already has its records")
        return True
    earlier = read_jobs(run_dir)
    submission = int(earlier.get("submission", 1)) + 1 if earlier else 1
    groups = pack(suite, todo, int(settings.get("array_parallelism") or PARALLELISM))
    names = [f"s{submission}-{i:03d}" for i in range(len(groups))]
    shards = [Shard(n, suite, g, run_dir.part(n), options, sweep.skips.oom_at) for n, g in zip(names, groups)]
    folder = Path(settings.get("folder") or run_dir.path / "slurm").expanduser().absolute()
    executor = make_executor(folder, settings, suite)
    try:
        jobs = executor.submit_array(shards)
    except Exception as exc:  # sbatch refused: a wrong partition or account, say
        raise UserError(f"the job array could not be submitted: {exc}") from None
    info = {
        "cluster": executor.cluster,
        "folder": str(folder),
        "submission": submission,
        "jobs": [
            {
                "shard": s.name,
                "job_id": j.job_id,
                "part": str(s.part),
                "cells": [c.key for ch in s.chains for c in ch.cells],
                "examples": sum(suite.samples - c.first for ch in s.chains for c in ch.cells),
            }
            for s, j in zip(shards, jobs)
        ],
    }
    jobs_file = run_dir.path / "slurm" / JOBS
    jobs_file.parent.mkdir(exist_ok=True)
    write_atomic(jobs_file, json.dumps(info, indent=2))
    ids = [j.job_id for j in jobs]
    arrays = sorted({i.split("_")[0] for i in ids})
    shown = f"array {' '.join(arrays)}" if all("_" in i for i in ids) else f"jobs {' '.join(ids)}"
    say(console, f"submitted {sweep.cells} cells as {len(jobs)} shards ({executor.cluster} {shown}); logs in {folder}")
    if not settings.get("wait", True) and executor.cluster == "debug":
        say(console, "cluster: debug runs the shards inside this process, so it waits for them")
    elif not settings.get("wait", True):
        say(console, f"not waiting: when the jobs end, merge their records with `lcbench collect {run_dir.path}`")
        say(console, f"to cancel them: {cancel_command(executor.cluster, ids, whole_arrays=True)}")
        return False
    states: States = {}
    try:
        wait_for(jobs, info, states, console)
    except KeyboardInterrupt:
        left = [i for i in ids if i not in states]
        run_dir.collect()  # what the ended shards wrote, for the partial report
        if executor.cluster == "debug":  # its shards stop with this process: a resume reruns their cells
            jobs_file.unlink()
            return False
        say(console, f"\nstopped waiting; the jobs go on: {' '.join(left)}")
        say(console, f"merge their records when they end: lcbench collect {run_dir.path}")
        say(console, f"or cancel them: {cancel_command(executor.cluster, left)}")
        return False
    collect_run(run_dir, states, console)
    return True


def say(console: Console, text: str) -> None:
    """A line as it is: paths and commands unwrapped (to copy) and never read as markup."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def cancel_command(cluster: str, job_ids: Sequence[str], whole_arrays: bool = False) -> str:
    """How to cancel the jobs: `scancel` on Slurm (the array ids where every task goes), `kill` locally."""
    if cluster == "local":  # the job's process stops on SIGINT (it ignores SIGTERM)
        return f"kill -INT {' '.join(job_ids)}"
    ids = sorted({i.split("_")[0] for i in job_ids}) if whole_arrays else job_ids
    return f"scancel {' '.join(ids)}"


def wait_for(jobs: Sequence[submitit.Job[Any]], info: dict[str, Any], states: States, console: Console) -> None:
    """Poll the jobs until each has ended: one progress bar over the examples their part files hold,
    a line for each shard as it ends, and one for a reason to wait that is not the queue's ordinary
    (a drained node, a held job). Fills `states`: job id -> (state, why), as they end, so that
    Ctrl-C leaves what is known."""
    entries = {e["job_id"]: e for e in info["jobs"]}
    parts = {job_id: PartCounter(Path(e["part"])) for job_id, e in entries.items()}
    left = {job.job_id: job for job in jobs}
    said: set[str] = set()
    with progress_bar(console) as progress:
        total = sum(int(e.get("examples", 0)) for e in entries.values())
        overall = progress.add_task(f"{len(entries)} shards", total=total or None)
        while left:
            now = poll(list(left.values()), info)
            for job_id, (state, why) in now.items():
                entry = entries[job_id]
                if state in UNFINISHED:
                    if state == "PENDING" and why not in ORDINARY_WAITS and why not in said:
                        said.add(why)
                        waiting = [entries[i]["shard"] for i, (st, w) in now.items() if st == "PENDING" and w == why]
                        hint = "; `sinfo -R` says why nodes are down or drained" if "ReqNodeNotAvail" in why else ""
                        shown = f"  shards waiting ({why}{hint}): {' '.join(waiting)}"
                        progress.console.print(shown, markup=False, highlight=False)
                    continue
                states[job_id] = (state, why)
                del left[job_id]
                part = Path(entry["part"])
                records = list(read_records(part)) if part.is_file() else []
                shown = f"  shard {entry['shard']} (job {job_id}) {state}: {summarise(records)} in {part.name}"
                progress.console.print(shown, markup=False, highlight=False)
            counts = collections.Counter(st for st, _ in now.values() if st in UNFINISHED)
            doing = ", ".join(f"{n} {st.lower()}" for st, n in sorted(counts.items()))
            progress.update(
                overall,
                completed=sum(p.examples() for p in parts.values()),
                description=f"{len(entries)} shards" + (f" ({doing})" if doing else ""),
            )
            if left:
                time.sleep(POLL_S)


class PartCounter:
    """The examples a shard's part file holds, read as it grows: only the bytes added since the last
    look (a requeued shard rewrites its part shorter: then it is read again from the start)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count = path, 0, 0

    def examples(self) -> int:
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size < self.offset:
            self.offset, self.count = 0, 0
        if size > self.offset:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                added = f.read(size - self.offset)
            whole = added[: added.rfind(b"\n") + 1]  # a line still being written is counted next time
            self.offset += len(whole)
            self.count += sum(1 for line in whole.splitlines() if line.strip() and ends_example(line))
        return self.count


def ends_example(line: bytes) -> bool:
    try:
        return Record(**json.loads(line)).ends_example
    except (ValueError, TypeError):
        return False


def poll(jobs: Sequence[submitit.Job[Any]], info: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """job id -> (state, why) for each job; for `debug`, the job run here and now."""
    if info["cluster"] == "debug":
        return {j.job_id: run_here(j) for j in jobs}
    return job_states(info["cluster"], Path(info["folder"]), [j.job_id for j in jobs])


def run_here(job: submitit.Job[Any]) -> tuple[str, str]:
    """A `debug` job, run in this process."""
    try:
        job.submission().result()
    except Exception as exc:  # not submitit's debugger: the shard's cells become records
        return "FAILED", f"{type(exc).__name__}: {exc}"
    return "COMPLETED", ""


def ended_state(folder: Path, job_id: str, queued: tuple[str, str]) -> tuple[str, str]:
    """A Slurm job's (state, why): as squeue says while it is unfinished; once ended, from the
    result submitit wrote where it wrote one (a shard's own failure says why), else Slurm's state."""
    state, why = queued
    if state in UNFINISHED:
        return state, why if state == "PENDING" else ""
    result = read_result(folder, job_id)
    if result is not None:
        return result
    if state == GONE:
        return (
            GONE,
            f"it wrote no result, and Slurm no longer lists it (no accounting here); see {JobPaths(folder, job_id, 0).stderr}",
        )
    return state, f"it wrote no result; see {JobPaths(folder, job_id, 0).stderr}" if state in SHARD_FAILED else ""


def read_result(folder: Path, job_id: str) -> tuple[str, str] | None:
    """(state, why) from the result submitit wrote when the shard returned or raised, else None."""
    paths = JobPaths(folder, job_id, 0)
    if not paths.result_pickle.exists():
        return None
    outcome, payload = pickle_load(paths.result_pickle)
    if outcome == "success":
        return "COMPLETED", ""
    last = [line for line in str(payload).splitlines() if line.strip()][-1:] or [""]
    return ("TIMEOUT" if "timed-out" in str(payload) else "FAILED"), last[0].strip()


def job_states(cluster: str, folder: Path, job_ids: Sequence[str]) -> States:
    """job id -> (state, why), from any process: on Slurm one squeue call for them all (ended jobs
    read their result); locally each job's result, else whether its process is alive."""
    if cluster == "slurm":
        queued = queue_states(job_ids)
        return {i: ended_state(folder, i, queued[i]) for i in job_ids}
    return {i: job_state(cluster, folder, i) for i in job_ids}


def job_state(cluster: str, folder: Path, job_id: str) -> tuple[str, str]:
    """(state, why) of one job, as `job_states` says."""
    if cluster == "slurm":
        return job_states(cluster, folder, [job_id])[job_id]
    result = read_result(folder, job_id)
    if result is not None:
        return result
    if cluster == "local":
        return (
            ("RUNNING", "") if alive(int(job_id)) else ("FAILED", f"it wrote no result; see {JobPaths(folder, job_id, 0).stderr}")
        )
    return "CANCELLED", "it ran inside an `lcbench run` that stopped before it"  # debug


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_jobs(run_dir: RunDir) -> dict[str, Any] | None:
    path = run_dir.path / "slurm" / JOBS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"`{path}` is not valid JSON ({exc}); it lists the run's Slurm jobs") from None
    return data if isinstance(data, dict) else None


def settle_resumed(run_dir: RunDir, console: Console) -> None:
    """Before a resumed run is planned: its earlier jobs must have ended, and are collected, so
    that no example they ran runs twice and the ones they lost are measured again."""
    info = read_jobs(run_dir)
    if info is None:
        return
    states = job_states(info["cluster"], Path(info["folder"]), [j["job_id"] for j in info["jobs"]])
    running = [job_id for job_id, (state, _) in states.items() if state in UNFINISHED]
    if running:
        raise UserError(
            f"jobs {', '.join(running)} of `{run_dir.path}` have not ended; wait for them (then `lcbench collect`) "
            f"or cancel them ({cancel_command(info['cluster'], running)}) before resuming"
        )
    collect_run(run_dir, states, console)


def collect_run(run_dir: RunDir, states: States | None = None, console: Console | None = None) -> int:
    """Merge the shards' part files into records.jsonl (atomically; nothing twice), then give every
    cell of an ended job that lacks records a record per missing example naming the job: `lost`
    where the cluster ended the job, `error` (`oom`) where the shard failed (passed its memory).
    Cells of jobs still queued or running are left alone. Works from `slurm/jobs.json` alone, in
    any later process; returns the number of records added."""
    console = console or Console(stderr=True)
    info = read_jobs(run_dir)
    if info is None:
        raise UserError(f"`{run_dir.path}` has no slurm/{JOBS}: it was not run with --executor slurm")
    added = run_dir.collect()
    suite = validate(run_dir.suite_data, source=str(run_dir.path / "suite.json"))
    cells = {c.key: c for c in plan(suite, run_dir.env.get("suite_hash", ""))}
    have = collections.Counter(r.cell_key for r in run_dir.records() if r.ends_example)
    short = {j["job_id"]: [k for k in j["cells"] if have[k] < suite.samples and k in cells] for j in info["jobs"]}
    unknown = [job_id for job_id, missing in short.items() if missing and job_id not in (states or {})]
    states = {**(states or {}), **job_states(info["cluster"], Path(info["folder"]), unknown)}
    filled: list[Record] = []
    for job in info["jobs"]:
        job_id, missing = job["job_id"], short[job["job_id"]]
        if not missing:
            continue
        state, why = states[job_id]
        if state in UNFINISHED:
            say(console, f"job {job_id} (shard {job['shard']}) is {state}: its {len(missing)} cells left are not collected yet")
            continue
        status = SHARD_FAILED.get(state, "lost")
        message = f"job {job_id} (shard {job['shard']}) ended {state} before this example was measured"
        message += f": {why}" if why else ""
        message += "; the job's time limit (`time` in the profile, --slurm-time) was too short" if state == "TIMEOUT" else ""
        for key in missing:
            filled += [
                replace(cell_record(suite, cells[key], i, status, message), node=f"slurm job {job_id}")
                for i in range(have[key], suite.samples)
            ]
        examples = sum(suite.samples - have[k] for k in missing)
        say(
            console,
            f"job {job_id} (shard {job['shard']}) ended {state}: {examples} examples of {len(missing)} cells recorded `{status}`",
        )
    if filled:
        run_dir.append(filled)
    merge_prompts(run_dir, info)
    return added + len(filled)


def merge_prompts(run_dir: RunDir, info: dict[str, Any]) -> None:
    """The shards' prompts, for the examples in records.jsonl, into the run's prompts.jsonl (once each)."""
    path = run_dir.prompts_path
    seen = {_example(line) for line in path.read_text(encoding="utf-8").splitlines()} if path.is_file() else set()
    wanted = {(r.cell_key, r.example_id) for r in run_dir.records()}
    new: list[str] = []
    for job in info["jobs"]:
        prompts = prompts_of(Path(job["part"]))
        for line in prompts.read_text(encoding="utf-8").splitlines() if prompts.is_file() else []:
            key = _example(line)
            if key in wanted and key not in seen:
                seen.add(key)
                new.append(line)
    if new:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in new))


def _example(line: str) -> tuple[str, str] | None:
    try:
        data = json.loads(line)
        return str(data["cell_key"]), str(data["example_id"])
    except (ValueError, KeyError, TypeError):
        return None

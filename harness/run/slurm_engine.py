"""`--executor slurm`: the sweep as one Slurm job array, submitted through submitit.

Chains are packed into shards, at most `array_parallelism` (default 8) per model folder, costliest
first. Each shard (one array task) runs its chains on its node as `lcbench run` would, skip-after-oom
and `--isolate` included, and appends each record, synced, to its own `RUN_DIR/parts/<shard>.jsonl`.
A preempted or timed-out shard is requeued and starts again from its part file: only the cell it was
in reruns, and no record is written twice. The driver waits and merges the parts into records.jsonl;
with `--no-wait` it returns at once and `lcbench collect RUN_DIR` merges later. Examples a dead job
never wrote become `error` records (`timeout` where it timed out) naming the job. RUN_DIR must be on
a filesystem the nodes share; `cluster: local` or `debug` tries all this without Slurm.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
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
from lcbench.run.chains import Local, RunOptions, Skips, Sweep, chain_model, summarise
from lcbench.run.records import Record, RecordWriter, read_records, write_atomic
from lcbench.run.run_dir import RunDir
from lcbench.run.runner import cell_record

JOBS = "jobs.json"  # under RUN_DIR/slurm: each shard's job id and cells, all `lcbench collect` needs
CLUSTERS = ("slurm", "local", "debug")  # local and debug run the shards on this machine, to try a setup
PARALLELISM = 8  # shards per model folder, and shards running at once, unless `array_parallelism` says
LOCAL_TIMEOUT_MIN = 24 * 60  # submitit's local executor stops a job after 2 minutes unless told otherwise
POLL_S = 2.0
# Slurm states of a job that may still write records (submitit's own list, and a few more)
UNFINISHED = {
    "PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "PREEMPTED", "READY", "RESIZING", "UNKNOWN",
}  # fmt: skip
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
        kept = keep_whole_cells(self.part, self.suite.samples)
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
                            writer.write(records)
                        else:
                            records = []
                            for record in local.for_model(chain_model(self.suite, chain)).run(cell):
                                if record.prompts:  # beside the part, not in a prompts file the shards share
                                    prompts.write(record.shown() + "\n")
                                    prompts.flush()
                                    record = replace(record, prompts=[])
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


def prompts_of(part: Path) -> Path:
    """The prompts a shard's first examples made, in a folder of their own (parts/*.jsonl are records)."""
    folder = part.parent / "prompts"
    folder.mkdir(exist_ok=True)
    return folder / part.name


def keep_whole_cells(part: Path, samples: int) -> list[Record]:
    """The part file's records of whole cells; the file (and its prompts) is rewritten, atomically,
    with those alone: a cell cut short by a requeue, or a torn last line, is dropped to be rerun."""
    if not part.is_file():
        return []
    records = list(read_records(part))
    counts = collections.Counter(r.cell_key for r in records if r.ends_example)
    kept = [r for r in records if counts[r.cell_key] >= samples]
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
    suite, run_dir, options, console = sweep.suite, sweep.run_dir, sweep.options, sweep.console
    settings = options.cluster
    todo, submission = settle_earlier(sweep)
    if not todo:
        say(console, "every cell of this run already has its records")
        return True
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
            {"shard": s.name, "job_id": j.job_id, "part": str(s.part), "cells": [c.key for ch in s.chains for c in ch.cells]}
            for s, j in zip(shards, jobs)
        ],
    }
    jobs_file = run_dir.path / "slurm" / JOBS
    jobs_file.parent.mkdir(exist_ok=True)
    write_atomic(jobs_file, json.dumps(info, indent=2))
    cells = sum(len(c.cells) for c in todo)
    ids = [j.job_id for j in jobs]
    arrays = sorted({i.split("_")[0] for i in ids})
    shown = f"array {' '.join(arrays)}" if all("_" in i for i in ids) else f"jobs {' '.join(ids)}"
    say(console, f"submitted {cells} cells as {len(jobs)} shards ({executor.cluster} {shown}); logs in {folder}")
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
    """Poll the jobs until each has ended, saying each as it ends; fills `states`: job id -> (state, why)
    (filled as they end, so that Ctrl-C leaves what is known)."""
    entries = {e["job_id"]: e for e in info["jobs"]}
    left = list(jobs)
    while left:
        for job in list(left):
            state = ended(job, info)
            if state is None:
                continue
            states[job.job_id] = state
            left.remove(job)
            entry = entries[job.job_id]
            part = Path(entry["part"])
            records = list(read_records(part)) if part.is_file() else []
            say(console, f"  shard {entry['shard']} (job {job.job_id}) {state[0]}: {summarise(records)} in {part.name}")
        if left:
            time.sleep(POLL_S)


def ended(job: submitit.Job[Any], info: dict[str, Any]) -> tuple[str, str] | None:
    """(state, why) once `job` has ended, else None. A debug job runs here, when first asked."""
    if info["cluster"] == "debug":
        try:
            job.submission().result()
        except Exception as exc:  # not submitit's debugger: the shard's cells become records
            return "FAILED", f"{type(exc).__name__}: {exc}"
        return "COMPLETED", ""
    if not job.done():
        return None
    return job_state(info["cluster"], Path(info["folder"]), job.job_id)


def job_state(cluster: str, folder: Path, job_id: str) -> tuple[str, str]:
    """(state, why) of a job, from any process: submitit's result file where the job wrote one,
    else Slurm's accounting (sacct), else (local) whether its process is alive."""
    paths = JobPaths(folder, job_id, 0)
    if paths.result_pickle.exists():
        outcome, payload = pickle_load(paths.result_pickle)
        if outcome == "success":
            return "COMPLETED", ""
        last = [line for line in str(payload).splitlines() if line.strip()][-1:] or [""]
        return ("TIMEOUT" if "timed-out" in str(payload) else "FAILED"), last[0].strip()
    why = f"it wrote no result; see {paths.stderr}"
    if cluster == "slurm":
        state = submitit.SlurmJob(folder, job_id).get_info(mode="force").get("State") or "UNKNOWN"
        return state.split()[0].upper(), why  # "CANCELLED by 1234" -> CANCELLED
    if cluster == "local":
        return ("RUNNING", "") if alive(int(job_id)) else ("FAILED", why)
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


def settle_earlier(sweep: Sweep) -> tuple[list[Chain], int]:
    """(the chains still to run, this submission's number). A resumed run's earlier jobs are
    collected first, so that no cell they ran runs twice; they must have ended."""
    suite, todo, run_dir, skips, console = sweep.suite, sweep.todo, sweep.run_dir, sweep.skips, sweep.console
    info = read_jobs(run_dir)
    if info is None:
        return todo, 1
    folder = Path(info["folder"])
    running = [j["job_id"] for j in info["jobs"] if job_state(info["cluster"], folder, j["job_id"])[0] in UNFINISHED]
    if running:
        raise UserError(
            f"jobs {', '.join(running)} of `{run_dir.path}` have not ended; wait for them (then `lcbench collect`) "
            f"or cancel them ({cancel_command(info['cluster'], running)}) before resuming"
        )
    collect_run(run_dir, console=console)
    have = collections.Counter(r.cell_key for r in run_dir.records() if r.ends_example)
    for key, length in run_dir.oom_at().items():
        skips.oom_at[key] = min(skips.oom_at.get(key, length), length)
    rest = [Chain(cells) for chain in todo if (cells := tuple(c for c in chain.cells if have[c.key] < suite.samples))]
    return rest, int(info.get("submission", 1)) + 1


def collect_run(run_dir: RunDir, states: States | None = None, console: Console | None = None) -> int:
    """Merge the shards' part files into records.jsonl (atomically; nothing twice), then give every
    cell of an ended job that lacks records an `error` record per missing example (`timeout` where
    the job timed out), naming the job. Cells of jobs still queued or running are left alone.
    Works from `slurm/jobs.json` alone, in any later process; returns the number of records added."""
    console = console or Console(stderr=True)
    info = read_jobs(run_dir)
    if info is None:
        raise UserError(f"`{run_dir.path}` has no slurm/{JOBS}: it was not run with --executor slurm")
    added = run_dir.collect()
    suite = validate(run_dir.suite_data, source=str(run_dir.path / "suite.json"))
    cells = {c.key: c for c in plan(suite, run_dir.env.get("suite_hash", ""))}
    have = collections.Counter(r.cell_key for r in run_dir.records() if r.ends_example)
    filled: list[Record] = []
    for job in info["jobs"]:
        missing = [k for k in job["cells"] if have[k] < suite.samples and k in cells]
        if not missing:
            continue
        job_id = job["job_id"]
        state, why = (states or {}).get(job_id) or job_state(info["cluster"], Path(info["folder"]), job_id)
        if state in UNFINISHED:
            say(console, f"job {job_id} (shard {job['shard']}) is {state}: its {len(missing)} cells left are not collected yet")
            continue
        status = "timeout" if state == "TIMEOUT" else "error"
        message = f"job {job_id} (shard {job['shard']}) ended {state} before this example ran" + (f": {why}" if why else "")
        for key in missing:
            filled += [cell_record(suite, cells[key], i, status, message) for i in range(have[key], suite.samples)]
        say(console, f"job {job_id} (shard {job['shard']}) ended {state}: {len(missing)} cells recorded `{status}`")
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

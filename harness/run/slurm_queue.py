"""What Slurm says of a run's jobs, without its accounting database.

One `squeue` call a poll covers every job of the run: Slurm lists a job while it is queued or
running and for `MinJobAge` seconds after it ends (300 by default), with its state and why it
waits. Only a job it no longer lists is asked of `sacct`, and only where the cluster keeps
accounting: submitit asks sacct on every poll, which on the many clusters without accounting warns
on every poll and tells nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

State = tuple[str, str]  # (Slurm's state: RUNNING, PENDING, CANCELLED, ...; why: squeue's reason, or "")
GONE = "GONE"  # ended long enough ago that Slurm no longer lists it, on a cluster without accounting
UNANSWERED = "UNANSWERED"  # squeue itself failed (the controller restarting, say): ask again later
# squeue's reasons for a job that waits its turn; any other (a drained node, a held job) is said
ORDINARY_WAITS = {"None", "Resources", "Priority", "BeginTime", "JobArrayTaskLimit", "Dependency", ""}


def arrays_of(job_ids: Sequence[str]) -> list[str]:
    """The job ids to ask about: an array's id covers all its tasks (`123` for `123_4`)."""
    return sorted({i.split("_")[0] for i in job_ids})


def queue_states(job_ids: Sequence[str]) -> dict[str, State]:
    """Each job's state as squeue gives it, one call for all; a job it no longer lists is asked of
    sacct (where there is accounting) or else is GONE. Every job is UNANSWERED where squeue fails."""
    if not job_ids:
        return {}
    listed = squeue(arrays_of(job_ids))
    if listed is None:
        return {i: (UNANSWERED, "squeue did not answer") for i in job_ids}
    missing = [i for i in job_ids if i not in listed]
    accounted = sacct(missing) if missing else {}
    states = {i: listed.get(i) or accounted.get(i) or (GONE, "") for i in job_ids}
    return states


def squeue(ids: Sequence[str]) -> dict[str, State] | None:
    """job id -> (state, reason), array tasks one by one; None where squeue failed. A job id Slurm no
    longer knows is left out (alone it makes squeue fail, so each id is retried apart then)."""
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r", "--jobs", ",".join(ids)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        if "Invalid job id" not in done.stderr:
            return None
        if len(ids) == 1:
            return {}
        found: dict[str, State] = {}
        for one in ids:
            part = squeue([one])
            if part is None:
                return None
            found.update(part)
        return found
    states: dict[str, State] = {}
    for line in done.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if job_id:
            states[job_id] = (state.split()[0] if state else "UNKNOWN", reason)
    return states


def sacct(job_ids: Sequence[str]) -> dict[str, State]:
    """Ended jobs' states from the accounting database; empty where the cluster keeps none."""
    command = ["sacct", "--noheader", "--parsable2", "--format=JobID,State", "--jobs", ",".join(job_ids)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}  # "Slurm accounting storage is disabled"
    states: dict[str, State] = {}
    for line in done.stdout.splitlines():
        job_id, _, state = line.partition("|")
        if job_id in job_ids and state:
            states[job_id] = (state.split()[0].upper(), "")  # "CANCELLED by 0" -> CANCELLED
    return states

"""`--executor slurm` on a real Slurm cluster of this machine (tests/local_slurm.sh: Debian's
slurmctld and slurmd, no accounting database), and the faults clusters have: a shard cancelled
mid-run and one past its time limit (their examples `lost`, measured again by a resume), a shard
requeued mid-cell (it goes on from its part file), the driver killed (a fresh process collects),
a drained node (the driver says why the shards wait). Where no cluster can start here (not root,
Slurm not installed) these tests are skipped, saying so; test_slurm.py covers the same engine
through submitit's local executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from lcbench import registry
from lcbench.cli import main
from lcbench.run.records import read_records
from test_reliability import comparable, records_of

pytest.importorskip("submitit")
from lcbench.run.slurm_engine import UNFINISHED  # noqa: E402
from lcbench.run.slurm_queue import queue_states  # noqa: E402

PLUGIN = """
import os, time
from dataclasses import dataclass
from typing import ClassVar
from lcbench.strategies.base import Strategy, predict

@dataclass
class Waits(Strategy):
    \"\"\"Answers as `full` does, logging each example it is given with its Slurm job. The first time a
    job reaches the second example of the 96-token cell, where LCBENCH_TEST_WAITS names a folder,
    it says so there (a file named for the job) and waits, for the test to act on the job.\"\"\"
    name: ClassVar[str] = "test_waits"
    def run(self, model, example):
        job = os.environ.get("SLURM_ARRAY_JOB_ID", "") + "_" + os.environ.get("SLURM_ARRAY_TASK_ID", "")
        with open(os.environ["LCBENCH_TEST_CALLS"], "a") as log:
            log.write(example.id + " " + job + "\\n")
        folder = os.environ.get("LCBENCH_TEST_WAITS")
        if folder and example.id.startswith("needle-96-") and example.id.endswith("-1"):
            marker = os.path.join(folder, job)
            if not os.path.exists(marker):
                open(marker, "w").close()
                time.sleep(120)
        return predict(model, example, model.encode(example.context))
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster for this module, clients pointed at it (SLURM_CONF), and the
    `test_waits` strategy on the path of this process and of the jobs (PYTHONPATH)."""
    folder = tmp_path_factory.mktemp("slurm")
    script = ROOT / "tests" / "local_slurm.sh"
    started = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(
            f"no real Slurm here ({started.stderr.strip()}); test_slurm.py tests the engine through submitit's local executor"
        )
    plugin = tmp_path_factory.mktemp("slurm-plugin")
    (plugin / "lcbench_slurm_waits.py").write_text(PLUGIN)
    info = plugin / "lcbench_slurm_waits-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lcbench-slurm-waits\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lcbench.strategies]\ntest_waits = lcbench_slurm_waits:Waits\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(folder / "slurm.conf"))
        patch.setenv("PYTHONPATH", str(plugin))
        patch.syspath_prepend(str(plugin))
        registry.strategies.cache_clear()
        yield folder
        subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True)
        subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True)
    sys.modules.pop("lcbench_slurm_waits", None)
    registry.strategies.cache_clear()


@pytest.fixture
def waits(slurm, tmp_path, monkeypatch):
    """Where the jobs log their calls and say they wait: (calls log, markers folder)."""
    calls, markers = tmp_path / "calls.txt", tmp_path / "waiting"
    markers.mkdir()
    monkeypatch.setenv("LCBENCH_TEST_CALLS", str(calls))
    return calls, markers


@pytest.fixture
def measured_here_then_waiting(waits, tmp_path, monkeypatch):
    """Runs a suite in process (the reference records, in `here`), then clears the calls log and
    has the jobs submitted from now on wait at their last example; returns the suite's path."""
    calls, markers = waits

    def prepare(path: Path) -> Path:
        assert main(["run", str(path), "--out", str(tmp_path / "here")]) == 0
        calls.unlink()
        monkeypatch.setenv("LCBENCH_TEST_WAITS", str(markers))
        return path

    return prepare


def node() -> str:
    return subprocess.run(["sinfo", "--noheader", "--Node", "--format=%N"], capture_output=True, text=True).stdout.split()[0]


def scontrol(*words: str) -> None:
    subprocess.run(["scontrol", *words], check=True, capture_output=True)


def wait_for(condition, what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {limit_s:g}s"
        time.sleep(0.2)


def job_ids(run_path: Path) -> list[str]:
    import json

    return [j["job_id"] for j in json.loads((run_path / "slurm" / "jobs.json").read_text())["jobs"]]


def ended(run_path: Path) -> bool:
    return all(state not in UNFINISHED for state, _ in queue_states(job_ids(run_path)).values())


def only_run(out: Path) -> Path:
    (run_path,) = out.iterdir()
    return run_path


def lcbench(*args: str) -> subprocess.CompletedProcess[str]:
    """`lcbench ...` in a process of its own, as a user types it later."""
    return subprocess.run([sys.executable, "-m", "lcbench.cli", *args], capture_output=True, text=True)


def start_requeued(job: str) -> None:
    """Slurm holds a requeued job two minutes; the tests start it a few seconds on instead. Not at
    once: started before the node's slurmd has finished ending its last run, it is killed there
    ("Job credential revoked") and ends FAILED. (A begin time a few seconds on waits for the
    backfill scheduler's next pass, 30 s, and the job's shortened time limit then warns it at once.)"""
    time.sleep(3)
    scontrol("update", f"JobId={job}", "StartTime=now")


def test_a_real_slurm_run_is_quiet_and_gives_the_in_process_records(slurm, suite_file, tmp_path, capfd):
    path = suite_file()
    assert main(["run", str(path), "--out", str(tmp_path / "here")]) == 0
    capfd.readouterr()
    assert main(["run", str(path), "--executor", "slurm", "--slurm-partition", "debug", "--out", str(tmp_path / "slurm")]) == 0
    out, err = capfd.readouterr()
    records = records_of(tmp_path / "slurm")
    assert comparable(records) == comparable(records_of(tmp_path / "here"))
    ids = job_ids(only_run(tmp_path / "slurm"))
    assert {r.node for r in records} == {f"slurm job {i}" for i in ids} and len(ids) == 2
    assert "submitted 4 cells as 2 shards (slurm array" in err and "2 shards" in err
    assert "WARNING" not in out + err and "sacct" not in out + err  # no accounting here, and no flood about it


def test_a_cancelled_shard_is_lost_and_measured_again_and_one_past_its_time_limit_goes_on(
    slurm, waits, measured_here_then_waiting, suite_file, tmp_path, monkeypatch
):
    calls, markers = waits
    path = measured_here_then_waiting(suite_file("", "  - {name: test_waits, label: a}\n  - {name: test_waits, label: b}\n"))
    # --isolate: each cell in a child process, which Slurm's SIGTERM kills too; without the shard
    # stopping at once, that child's death was recorded as the strategy's error
    command = ["run", str(path), "--executor", "slurm", "--isolate", "--no-wait", "--out", str(tmp_path / "slurm")]
    assert main(command) == 0  # submitted: not an interrupted run
    run_path = only_run(tmp_path / "slurm")
    cancelled, timed_out = job_ids(run_path)
    wait_for(lambda: len(list(markers.iterdir())) == 2, "both shards reaching their last example")
    subprocess.run(["scancel", cancelled], check=True)
    # its time limit a minute from now: Slurm warns the job (submitit asks for USR2 90 s before), and
    # submitit requeues it, to go on from its part file
    limit = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 60))
    scontrol("update", f"JobId={timed_out}", f"EndTime={limit}")
    wait_for(lambda: queue_states([timed_out])[timed_out][0] == "PENDING", "the timed-out shard's requeue")
    start_requeued(timed_out)
    wait_for(lambda: ended(run_path), "the jobs' end")
    assert queue_states([cancelled])[cancelled][0] == "CANCELLED"

    collected = lcbench("collect", str(run_path))  # a fresh process, from the run folder alone
    assert collected.returncode == 0, collected.stderr
    assert (
        "1 examples were lost to the cluster" in collected.stdout and f"--resume {run_path} --executor slurm" in collected.stdout
    )
    records = list(read_records(run_path / "records.jsonl"))
    not_ok = [r for r in records if r.status != "ok"]
    assert len(not_ok) == 1, [(r.status, r.strategy, r.context_length, r.message) for r in not_ok]
    (lost,) = not_ok
    assert len(records) == 8 and lost.status == "lost" and lost.node == f"slurm job {cancelled}"
    assert (
        lost.strategy == "a" and lost.context_length == 96 and f"job {cancelled}" in lost.message and "CANCELLED" in lost.message
    )
    # the requeued shard: its 64-token cell not run again, its 96-token cell from its first example
    # again (each example is run twice on a CPU: a pass that counts memory, and the timed repeat)
    requeued = [line.split()[0] for line in calls.read_text().splitlines() if line.split()[1] == timed_out]
    assert [i.split("-")[1] for i in requeued] == ["64"] * 4 + ["96"] * 3 + ["96"] * 4

    calls.unlink()
    monkeypatch.delenv("LCBENCH_TEST_WAITS")
    assert main(["run", "--resume", str(run_path), "--executor", "slurm", "--isolate"]) == 0
    again = [line.split()[0] for line in calls.read_text().splitlines()]
    assert len(again) == 2 and all(i.startswith("needle-96-") and i.endswith("-1") for i in again)  # that one, twice
    assert comparable(read_records(run_path / "records.jsonl")) == comparable(records_of(tmp_path / "here"))


def test_a_requeued_shard_goes_on_from_its_part_file_and_a_fresh_process_collects_a_killed_drivers_run(
    slurm, waits, measured_here_then_waiting, suite_file, tmp_path
):
    calls, markers = waits
    path = measured_here_then_waiting(suite_file("", "  - name: test_waits\n"))
    out = tmp_path / "slurm"
    driver = subprocess.Popen(
        [sys.executable, "-m", "lcbench.cli", "run", str(path), "--executor", "slurm", "--isolate", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: any(markers.iterdir()), "the shard reaching its last example")
        run_path = only_run(out)
        (job,) = job_ids(run_path)
        scontrol("requeue", job)
        wait_for(lambda: queue_states([job])[job][0] == "PENDING", "the requeue")
        start_requeued(job)
        driver.send_signal(signal.SIGKILL)  # the driver dies while the job runs again
    finally:
        driver.kill()
        driver.wait()
    wait_for(lambda: ended(run_path), "the requeued job's end")
    collected = lcbench("collect", str(run_path))
    assert collected.returncode == 0, collected.stderr
    records = list(read_records(run_path / "records.jsonl"))
    assert comparable(records) == comparable(records_of(tmp_path / "here"))  # nothing lost, nothing failed
    ran = [line.split()[0] for line in calls.read_text().splitlines()]
    # before the requeue: the 64-token cell whole, the 96-token cell's first example and the start of
    # its second; after: the 96-token cell from its first example again, the 64-token cell not again
    first_go = ran.index(next(i for i in ran if i.endswith("-1") and i.startswith("needle-96-"))) + 1
    assert all(i.startswith("needle-96-") for i in ran[first_go:]) and len(ran[first_go:]) == 4
    log = next((run_path / "slurm").glob(f"{job}_0_log.out")).read_text()
    assert "the shard was told to stop (signal 15)" in log


def test_a_drained_node_holds_the_shards_and_the_driver_says_why(slurm, suite_file, tmp_path):
    path = suite_file("samples: 1\n")
    host = node()
    scontrol("update", f"NodeName={host}", "State=DRAIN", "Reason=maintenance")
    err = tmp_path / "driver.err"
    try:
        with open(err, "w") as log:
            driver = subprocess.Popen(
                [sys.executable, "-m", "lcbench.cli", "run", str(path), "--executor", "slurm", "--out", str(tmp_path / "slurm")],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_for(lambda: "shards waiting (" in err.read_text(), "the driver saying why the shards wait")
        assert f"UnavailableNodes:{host}" in err.read_text() and "sinfo -R" in err.read_text()
    finally:
        scontrol("update", f"NodeName={host}", "State=RESUME")
    assert driver.wait(timeout=120) == 0
    assert {r.status for r in records_of(tmp_path / "slurm")} == {"ok"}

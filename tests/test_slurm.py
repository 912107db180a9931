"""`--executor slurm` without Slurm: submitit's `debug` (shards in this process) and `local`
(shards as processes here, requeue included) executors. Sharded records equal an in-process run's;
a preempted shard reruns exactly its half-done cell; `--no-wait` then a collect in a later process
gives the same records, as does Ctrl-C then a resume; a job that dies leaves `error` records naming it.
These are the fallback: where a real Slurm can start here, the ones test_slurm_cluster.py repeats on
it are skipped, saying so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, real_slurm_here
from lcbench import registry
from lcbench.cli import finish, main
from lcbench.config.plan import chains, plan
from lcbench.config.suite import load_suite, validate
from lcbench.errors import UserError
from lcbench.run.chains import RunOptions
from lcbench.run.records import read_records
from lcbench.run.sweep import run_suite
from test_reliability import comparable, records_of

slurm_engine = pytest.importorskip("lcbench.run.slurm_engine")  # the lcbench[slurm] extra: submitit
# where a real Slurm can start here, test_slurm_cluster.py tests these on it instead
faked = pytest.mark.skipif(real_slurm_here(), reason="tested on the real Slurm cluster (test_slurm_cluster.py)")

PLUGIN = """
import os, signal, time
from dataclasses import dataclass
from typing import ClassVar
from lcbench.strategies.base import Strategy, predict

@dataclass
class Preempted(Strategy):
    \"\"\"Answers as `full` does, logging each example it is given. The first time it reaches the
    second example of the 96-token cell (where LCBENCH_TEST_PREEMPT names a file not there yet),
    its process gets submitit's preemption signal, as Slurm sends it before requeueing a job.\"\"\"
    name: ClassVar[str] = "test_preempted"
    def run(self, model, example):
        if os.environ.get("LCBENCH_TEST_CALLS"):
            with open(os.environ["LCBENCH_TEST_CALLS"], "a") as log:
                log.write(example.id + "\\n")
        flag = os.environ.get("LCBENCH_TEST_PREEMPT")
        if flag and example.id.startswith("needle-96-") and example.id.endswith("-1") and not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(60)  # the signal's handler requeues the job before this ends
        return predict(model, example, model.encode(example.context))

@dataclass
class Exits(Strategy):
    \"\"\"Takes its whole job down: no record, no result file.\"\"\"
    name: ClassVar[str] = "test_exits"
    def run(self, model, example):
        os._exit(1)
"""


@pytest.fixture
def plugin(tmp_path_factory, monkeypatch):
    """Strategies of a distribution on sys.path, found by this process and (PYTHONPATH) by the
    local executor's job processes."""
    root = tmp_path_factory.mktemp("slurm-plugin")
    (root / "lcbench_slurm_faults.py").write_text(PLUGIN)
    info = root / "lcbench_slurm_faults-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lcbench-slurm-faults\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lcbench.strategies]\ntest_preempted = lcbench_slurm_faults:Preempted\ntest_exits = lcbench_slurm_faults:Exits\n"
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root))
    registry.strategies.cache_clear()
    yield root
    sys.modules.pop("lcbench_slurm_faults", None)
    registry.strategies.cache_clear()


COLLECT = """
import sys
from pathlib import Path
from lcbench.run.run_dir import RunDir
from lcbench.run.slurm_engine import collect_run
print(collect_run(RunDir.resume(Path(sys.argv[1]))))
"""


def run_slurm(path: Path, **cluster: object) -> tuple[Path, bool]:
    """`lcbench run --executor slurm` with these site settings."""
    suite, suite_hash = load_suite(path)
    options = RunOptions(executor="slurm", cluster=dict(cluster))
    run_path, completed = run_suite(suite, suite_hash, str(path), options=options)
    finish(run_path, completed, options)  # the report, as `lcbench run` writes it
    return run_path, completed


def jobs_of(run_path: Path) -> list[dict]:
    return json.loads((run_path / "slurm" / "jobs.json").read_text())["jobs"]


def wait_until_ended(run_path: Path, limit_s: float = 300) -> None:
    info = json.loads((run_path / "slurm" / "jobs.json").read_text())
    deadline = time.monotonic() + limit_s
    while any(
        slurm_engine.job_state(info["cluster"], Path(info["folder"]), j["job_id"])[0] in slurm_engine.UNFINISHED
        for j in info["jobs"]
    ):
        assert time.monotonic() < deadline, "the local jobs did not end"
        time.sleep(0.5)


@pytest.mark.parametrize("cluster", ["debug", pytest.param("local", marks=faked)])
def test_shards_give_the_records_of_an_in_process_run(cluster, suite_file, tmp_path):
    path = suite_file()
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0
    run_path, completed = run_slurm(path, cluster=cluster)
    assert completed
    records = list(read_records(run_path / "records.jsonl"))
    assert comparable(records) == comparable(records_of(tmp_path / "whole"))
    assert all(r.host and r.device for r in records)
    jobs = jobs_of(run_path)
    assert len(jobs) == 2  # one shard per chain here: two strategies on one model
    assert sorted(k for j in jobs for k in j["cells"]) == sorted({r.cell_key for r in records})
    prompts = (run_path / "prompts.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["cell_key"] for line in prompts) == sorted({r.cell_key for r in records})
    assert (run_path / "report.md").is_file()


@faked
def test_a_preempted_shard_is_requeued_and_reruns_exactly_its_half_done_cell(plugin, suite_file, tmp_path, monkeypatch):
    path = suite_file("", "  - name: test_preempted\n")
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("LCBENCH_TEST_CALLS", str(calls))
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0
    calls.unlink()
    monkeypatch.setenv("LCBENCH_TEST_PREEMPT", str(tmp_path / "preempted"))
    run_path, completed = run_slurm(path, cluster="local")
    assert completed and (tmp_path / "preempted").is_file()
    (job,) = jobs_of(run_path)
    log = (run_path / "slurm" / f"{job['job_id']}_0_log.out").read_text()
    assert "Requeued job" in log and log.count("Loading pickle") == 2  # one requeue, by submitit
    # the 64-token cell was whole before the signal and is not run again; the 96-token cell is rerun
    # each example runs twice on a CPU: a pass that counts its memory, and one timed repeat; the
    # signal comes at the 96-token cell's second example's first pass
    ids, p = calls.read_text().split(), 2
    assert [i.split("-")[1] for i in ids] == ["64"] * 2 * p + ["96"] * (p + 1) + ["96"] * 2 * p
    assert ids[2 * p : 3 * p] == ids[3 * p + 1 : 4 * p + 1]  # the half-done cell, from its first example again
    records = list(read_records(run_path / "records.jsonl"))
    assert len({(r.cell_key, r.example_id) for r in records}) == len(records) == 4
    assert comparable(records) == comparable(records_of(tmp_path / "whole"))
    assert len((run_path / "prompts.jsonl").read_text().splitlines()) == 2


@faked
def test_no_wait_then_collect_in_a_later_process_gives_the_same_records(suite_file, tmp_path, capsys):
    path = suite_file()
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0
    run_path, completed = run_slurm(path, cluster="local", wait=False)
    assert not completed
    err = capsys.readouterr().err
    assert f"lcbench collect {run_path}" in err and "kill -INT " in err
    assert not (run_path / "records.jsonl").read_text()
    wait_until_ended(run_path)
    done = subprocess.run([sys.executable, "-c", COLLECT, str(run_path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "8"
    assert comparable(read_records(run_path / "records.jsonl")) == comparable(records_of(tmp_path / "whole"))
    again = subprocess.run([sys.executable, "-c", COLLECT, str(run_path)], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "0"  # nothing is merged twice


def test_ctrl_c_leaves_the_jobs_running_and_a_resume_collects_them(suite_file, tmp_path, monkeypatch, capsys):
    path = suite_file()
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(slurm_engine, "wait_for", interrupted)
    run_path, completed = run_slurm(path, cluster="local")
    assert not completed
    err = capsys.readouterr().err
    ids = " ".join(j["job_id"] for j in jobs_of(run_path))
    assert f"the jobs go on: {ids}" in err and f"lcbench collect {run_path}" in err and f"kill -INT {ids}" in err
    wait_until_ended(run_path)  # not cancelled: they end on their own
    suite = validate(json.loads((run_path / "suite.json").read_text()))
    options = RunOptions(resume=run_path, executor="slurm", cluster={"cluster": "local"})
    assert run_suite(suite, "", str(run_path / "suite.json"), options=options) == (run_path, True)
    assert "every cell of this run already has its records" in capsys.readouterr().err  # collected, nothing resubmitted
    assert comparable(read_records(run_path / "records.jsonl")) == comparable(records_of(tmp_path / "whole"))


def test_a_job_that_dies_leaves_error_records_naming_it(plugin, suite_file, tmp_path):
    path = suite_file("", "  - name: full\n  - name: test_exits\n")
    run_path, completed = run_slurm(path, cluster="local")
    assert completed  # every cell has its records, whatever became of its job
    records = list(read_records(run_path / "records.jsonl"))
    assert len(records) == 8
    full = [r for r in records if r.strategy == "full"]
    assert [r.status for r in full] == ["ok"] * 4 and all(r.host for r in full)
    dead = [r for r in records if r.strategy == "test_exits"]
    (job,) = [j for j in jobs_of(run_path) if dead[0].cell_key in j["cells"]]
    assert [r.status for r in dead] == ["error"] * 4
    assert all(f"job {job['job_id']}" in r.message and "FAILED" in r.message for r in dead)


def test_shards_pack_chains_per_model_costliest_first(suite_file):
    suite, suite_hash = load_suite(
        suite_file("", "".join(f"  - {{name: truncation, label: t{b}, params: {{budget: {b}}}}}\n" for b in (8, 16, 24)))
    )
    todo = chains(plan(suite, suite_hash))
    assert [len(s) for s in slurm_engine.pack(suite, todo, 2)] == [2, 1]
    assert [len(s) for s in slurm_engine.pack(suite, todo, 8)] == [1, 1, 1]


@pytest.mark.parametrize(
    "text,expected", [("90", 90), (45, 45), ("01:30:00", 90), ("10:30", 11), ("1-00", 1440), ("2-01:30", 2970)]
)
def test_slurm_time_limits(text, expected):
    assert slurm_engine.minutes(text) == expected


@pytest.mark.parametrize("text", ["soon", "0", "1:2:3:4", ""])
def test_a_bad_slurm_time_is_a_clear_error(text):
    with pytest.raises(UserError, match="not a time limit"):
        slurm_engine.minutes(text)


def test_without_slurm_it_says_how_to_try_it_locally(suite_file, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no srun
    with pytest.raises(UserError, match="cluster: local"):
        run_slurm(suite_file())


def test_the_merge_benchmark_collects_every_record_of_its_shards():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "collect.py"), "--records", "400", "--shards", "30", "--strategies", "4"],
        capture_output=True,
        text=True,
        check=True,
    )
    row = done.stdout.splitlines()[-1].split("|")
    assert row[1].strip() == "400" and row[2].strip() == "30"  # every record merged, once


def test_an_isolated_cells_child_leaves_slurms_signals_to_its_shard(suite_file, monkeypatch):
    """Slurm signals every process of a job: its warning (SIGUSR2) and, in a shard, its SIGTERM must
    not kill the cell's child first (its death was recorded as the strategy's error); the shard
    kills it as it stops."""
    from lcbench.run import executor

    assert signal.SIGTERM not in executor.LEFT_TO_PARENT  # outside a shard, a child ends on SIGTERM as any process does
    monkeypatch.setattr(executor, "LEFT_TO_PARENT", set(executor.LEFT_TO_PARENT))
    suite, _ = load_suite(suite_file())
    executor.leave_to_parent(signal.SIGTERM)  # as a shard does
    child = executor.Isolated(suite, suite.model)
    try:
        for signum in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
            os.kill(child.process.pid, signum)
        time.sleep(0.5)
        assert child.process.is_alive()
    finally:
        child.process.kill()
        child.process.join()

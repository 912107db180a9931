"""`--executor ray` on a local Ray cluster of this machine (2 CPUs, 2 GPUs declared but none
present: each actor still gets its own CUDA_VISIBLE_DEVICES): the same records as in process,
faults recorded as on one machine, a lost actor's chain finished elsewhere, a killed driver resumed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from lcbench.cli import main
from test_reliability import FAULTS_MODULE, THREE_STRATEGIES, address_space_now, comparable, kill_once_written, records_of

pytest.importorskip("ray")

KILLS_ACTOR = '''
@dataclass
class KillsActor(Strategy):
    """The first time, kills the Ray actor holding this process (its parent); then runs as `full`."""
    name: ClassVar[str] = "fault_kills_actor"
    def run(self, model, example):
        marker = os.path.join(os.environ["LCBENCH_FAULT_MARKERS"], "actor-killed")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
        return predict(model, example, model.encode(example.context))
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head` with the fault strategies on the workers' path; its address."""
    root = tmp_path_factory.mktemp("ray-faults")
    (root / "lcbench_faults.py").write_text(FAULTS_MODULE + KILLS_ACTOR)
    info = root / "lcbench_faults-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lcbench-faults\nVersion: 1.0\n")
    names = ["fault_raises", "fault_hog", "fault_hangs", "fault_kills_itself", "fault_free", "fault_kills_actor"]
    classes = ["Raises", "Hog", "Hangs", "KillsItself", "Fine", "KillsActor"]
    points = "".join(f"{n} = lcbench_faults:{c}\n" for n, c in zip(names, classes))
    (info / "entry_points.txt").write_text(f"[lcbench.strategies]\n{points}")
    markers = tmp_path_factory.mktemp("markers")
    env = {**os.environ, "PYTHONPATH": str(root), "LCBENCH_FAULT_MARKERS": str(markers)}
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    start = [ray, "start", "--head", "--num-cpus=2", "--num-gpus=2", "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(start, env=env, check=True, capture_output=True)
    yield {"address": "auto", "faults": root, "markers": markers}
    subprocess.run([ray, "stop", "--force"], capture_output=True)


@pytest.fixture
def faults_here(cluster, monkeypatch):
    """The same fault strategies for this process (the in-process reference runs)."""
    from lcbench import registry

    monkeypatch.syspath_prepend(str(cluster["faults"]))
    registry.strategies.cache_clear()
    yield
    sys.modules.pop("lcbench_faults", None)
    registry.strategies.cache_clear()


def ray_run(path: Path, out: Path, *extra: str) -> int:
    return main(["run", str(path), "--executor", "ray", "--ray-address", "auto", "--out", str(out), *extra])


def test_ray_runs_the_ci_suite_to_the_in_process_records_and_each_actor_saw_its_own_device(cluster, tmp_path):
    path = ROOT / "suites" / "ci.yaml"
    # one example per cell: 24 cells, for two actors, are what this test needs of the suite
    assert main(["run", str(path), "--limit", "1", "--out", str(tmp_path / "here")]) == 0
    assert ray_run(path, tmp_path / "ray", "--limit", "1") == 0
    here, there = records_of(tmp_path / "here"), records_of(tmp_path / "ray")
    assert comparable(there) == comparable(here)
    devices = {r.device for r in there}
    assert devices == {"cpu (CUDA_VISIBLE_DEVICES=0)", "cpu (CUDA_VISIBLE_DEVICES=1)"}  # two actors, one GPU each
    assert all(r.host for r in there)


def test_ray_faults_become_the_same_records_as_on_one_machine(cluster, faults_here, suite_file, tmp_path):
    strategies = "".join(
        f"  - name: {n}\n" for n in ("fault_raises", "fault_hog", "fault_hangs", "fault_kills_itself", "fault_free")
    )
    path = suite_file("samples: 1\n", strategies)
    # 10 s: a loaded machine has taken more than 5 s from a cell's start to the strategy's first call
    limits = ["--cell-timeout", "10", "--max-memory", str(address_space_now() + (1 << 30))]
    assert main(["run", str(path), "--isolate", *limits, "--out", str(tmp_path / "here")]) == 0
    assert ray_run(path, tmp_path / "ray", *limits) == 0
    statuses = {(r.strategy, r.context_length): r.status for r in records_of(tmp_path / "ray")}
    assert statuses == {(r.strategy, r.context_length): r.status for r in records_of(tmp_path / "here")}
    assert statuses[("fault_hangs", 64)] == "timeout" and statuses[("fault_hog", 96)] == "skipped"


def test_a_lost_actor_has_its_chain_finished_elsewhere(cluster, faults_here, suite_file, tmp_path):
    path = suite_file("samples: 2\n", "  - name: fault_kills_actor\n  - name: full\n")
    assert ray_run(path, tmp_path / "ray") == 0
    assert (cluster["markers"] / "actor-killed").exists()  # an actor did die mid-chain
    records = records_of(tmp_path / "ray")
    assert {r.status for r in records} == {"ok"} and len(records) == 8
    full = {(r.context_length, r.example_id): r.prediction for r in records if r.strategy == "full"}
    assert full == {(r.context_length, r.example_id): r.prediction for r in records if r.strategy == "fault_kills_actor"}


def test_a_killed_driver_resumes_to_the_uninterrupted_run(cluster, suite_file, tmp_path):
    path = suite_file("samples: 2\n", THREE_STRATEGIES)
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "lcbench.cli",
        "run",
        str(path),
        "--executor",
        "ray",
        "--ray-address",
        "auto",
        "--out",
        str(out),
    ]
    run_dir = kill_once_written(command, out, timeout=180)  # the driver, once a cell is on disk
    assert len(records_of(out)) < 12
    assert main(["run", "--resume", str(run_dir), "--executor", "ray", "--ray-address", "auto"]) == 0
    assert comparable(records_of(out)) == comparable(records_of(tmp_path / "whole"))

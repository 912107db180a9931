"""`--executor ray` on a three-node Ray cluster of this machine (a head, and two worker nodes of
one declared GPU each: one actor a node): the same records as in process, each with its node;
faults recorded as on one machine; a worker node killed mid-chain (the chain finishes on the other,
and a chain that loses both is recorded `error` naming the host); the driver's Ctrl-C, resumed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lcbench.cli import main
from test_reliability import FAULTS_MODULE, THREE_STRATEGIES, address_space_now, comparable, records_of

pytest.importorskip("ray")

NODE_LOST = '''
@dataclass
class NodeLost(Strategy):
    """Answers as `full`. At a 96-token cell's first example, the first `times` times (markers
    `tag-1`, `tag-2`, ...), it writes its actor's process id to the next marker and waits there
    for the test to take that actor's node down."""
    name: ClassVar[str] = "fault_node_lost"
    tag: str = "lost"
    times: int = 1
    def run(self, model, example):
        folder = os.environ.get("LCBENCH_FAULT_MARKERS")  # on the cluster's nodes only
        if folder and example.id.startswith("needle-96-") and example.id.endswith("-0"):
            for i in range(1, self.times + 1):
                marker = os.path.join(folder, f"{self.tag}-{i}")
                if not os.path.exists(marker):
                    with open(marker + ".tmp", "w") as f:
                        f.write(str(os.getppid()))
                    os.replace(marker + ".tmp", marker)
                    time.sleep(60)
                    break
        return predict(model, example, model.encode(example.context))
'''
NAMES = {
    "fault_raises": "Raises", "fault_hog": "Hog", "fault_hangs": "Hangs", "fault_kills_itself": "KillsItself",
    "fault_free": "Fine", "fault_slow": "Slow", "fault_node_lost": "NodeLost",
}  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray cluster of three nodes on this machine, started as on any cluster (`ray start`): a head
    without GPUs, and two worker nodes of one (declared; none is present) GPU each, so that each
    actor has a node of its own. The fault strategies are on every node's path; only the nodes see
    the markers folder (the in-process reference runs do not wait). A test that kills worker nodes
    gets them back (`nodes`)."""
    root = tmp_path_factory.mktemp("ray-faults")
    (root / "lcbench_faults.py").write_text(FAULTS_MODULE + NODE_LOST)
    info = root / "lcbench_faults-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lcbench-faults\nVersion: 1.0\n")
    points = "".join(f"{n} = lcbench_faults:{c}\n" for n, c in NAMES.items())
    (info / "entry_points.txt").write_text(f"[lcbench.strategies]\n{points}")
    markers = tmp_path_factory.mktemp("markers")
    env = {**os.environ, "PYTHONPATH": str(root), "LCBENCH_FAULT_MARKERS": str(markers), "RAY_USAGE_STATS_ENABLED": "0"}
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head = [ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--num-gpus=0", "--include-dashboard=false"]
    subprocess.run([*head, "--disable-usage-stats"], env=env, check=True, capture_output=True)
    address = f"{socket.gethostbyname(socket.gethostname())}:{port}"
    add_worker = [ray, "start", f"--address={address}", "--num-cpus=1", "--num-gpus=1"]
    for _ in range(2):
        subprocess.run(add_worker, env=env, check=True, capture_output=True)
    yield {"address": address, "faults": root, "markers": markers, "add_worker": (add_worker, env)}
    subprocess.run([ray, "stop", "--force"], capture_output=True)


@pytest.fixture
def nodes(cluster):
    """Kills worker nodes (`kill(pid)`: the node whose raylet runs that process); after the test,
    as many are started again."""
    killed: list[int] = []

    def kill(pid: int) -> None:
        raylet = next(p for p in ancestors(pid) if Path(f"/proc/{p}/comm").read_text().strip() == "raylet")
        os.kill(raylet, signal.SIGKILL)
        killed.append(raylet)

    yield kill
    command, env = cluster["add_worker"]
    for _ in killed:
        subprocess.run(command, env=env, check=True, capture_output=True)


def ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        found.append(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return found


@pytest.fixture
def faults_here(cluster, monkeypatch):
    """The same fault strategies for this process (the in-process reference runs)."""
    from lcbench import registry

    monkeypatch.syspath_prepend(str(cluster["faults"]))
    registry.strategies.cache_clear()
    yield
    sys.modules.pop("lcbench_faults", None)
    registry.strategies.cache_clear()


def ray_run(cluster, path: Path, out: Path, *extra: str) -> int:
    return main(["run", str(path), "--executor", "ray", "--ray-address", cluster["address"], "--out", str(out), *extra])


def test_ray_gives_the_in_process_records_one_actor_a_node(cluster, suite_file, tmp_path):
    path = suite_file("samples: 2\n", THREE_STRATEGIES)  # three chains for two actors
    assert main(["run", str(path), "--out", str(tmp_path / "here")]) == 0
    assert ray_run(cluster, path, tmp_path / "ray") == 0
    here, there = records_of(tmp_path / "here"), records_of(tmp_path / "ray")
    assert comparable(there) == comparable(here)
    assert {r.device for r in there} == {"cpu (CUDA_VISIBLE_DEVICES=0)"}  # each actor sees its node's one GPU
    assert len({r.node for r in there}) == 2 and all(r.host for r in there)  # the two worker nodes


def test_ray_faults_become_the_records_they_are_on_one_machine(cluster, faults_here, suite_file, tmp_path):
    strategies = "".join(
        f"  - name: {n}\n" for n in ("fault_raises", "fault_hog", "fault_hangs", "fault_kills_itself", "fault_free")
    )
    path = suite_file("samples: 1\n", strategies)
    # 10 s: a loaded machine has taken more than 5 s from a cell's start to the strategy's first call
    limits = ["--cell-timeout", "10", "--max-memory", str(address_space_now() + (1 << 30))]
    assert ray_run(cluster, path, tmp_path / "ray", *limits) == 0
    # the statuses test_reliability.py's isolated run on one machine gives
    statuses = {(r.strategy, r.context_length): r.status for r in records_of(tmp_path / "ray")}
    assert statuses == {
        **{("fault_raises", n): "error" for n in (64, 96)},
        ("fault_hog", 64): "oom",
        ("fault_hog", 96): "skipped",
        **{("fault_hangs", n): "timeout" for n in (64, 96)},
        **{("fault_kills_itself", n): "error" for n in (64, 96)},
        **{("fault_free", n): "ok" for n in (64, 96)},
    }


def take_down_the_nodes_that_wait(kill, markers: Path, tag: str, times: int) -> threading.Thread:
    """In the background: each time a `fault_node_lost` marker appears, the worker node running the
    actor named in it is killed (its raylet, SIGKILL), as a machine dies."""

    def watch() -> None:
        for i in range(1, times + 1):
            marker = markers / f"{tag}-{i}"
            deadline = time.monotonic() + 240
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if marker.exists():
                kill(int(marker.read_text()))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_lost_node_has_its_chain_finished_on_the_other(cluster, nodes, faults_here, suite_file, tmp_path):
    path = suite_file("samples: 2\n", "  - {name: fault_node_lost, params: {tag: once, times: 1}}\n  - name: full\n")
    assert main(["run", str(path), "--out", str(tmp_path / "here")]) == 0
    killer = take_down_the_nodes_that_wait(nodes, cluster["markers"], "once", 1)
    assert ray_run(cluster, path, tmp_path / "ray") == 0
    killer.join()
    records = records_of(tmp_path / "ray")
    assert comparable(records) == comparable(records_of(tmp_path / "here"))  # every example ok, as in process
    lost = [r for r in records if r.strategy == "fault_node_lost"]
    (before,) = {r.node for r in lost if r.context_length == 64}  # written before its node died
    (after,) = {r.node for r in lost if r.context_length == 96}
    assert after != before and after in {r.node for r in records if r.strategy == "full"}  # rerun on the other node


def test_a_chain_that_loses_two_nodes_is_recorded_as_error_naming_the_second(cluster, nodes, faults_here, suite_file, tmp_path):
    path = suite_file("samples: 2\n", "  - {name: fault_node_lost, params: {tag: twice, times: 2}}\n")
    killer = take_down_the_nodes_that_wait(nodes, cluster["markers"], "twice", 2)
    assert ray_run(cluster, path, tmp_path / "ray") == 0
    killer.join()
    records = records_of(tmp_path / "ray")
    assert [r.status for r in records if r.context_length == 64] == ["ok", "ok"]
    failed = [r for r in records if r.context_length == 96]
    assert [r.status for r in failed] == ["error", "error"]
    assert all("ray node" in r.message and "lost" in r.message and socket.gethostname() in r.message for r in failed)


def test_ctrl_c_stops_the_driver_after_the_cells_in_flight_and_a_resume_completes_it(cluster, faults_here, suite_file, tmp_path):
    path = suite_file("samples: 2\n", "  - name: fault_slow\n  - name: full\n")
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "lcbench.cli", "run", str(path), "--executor", "ray"]
    driver = subprocess.Popen(
        [*command, "--ray-address", cluster["address"], "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(cluster["faults"])},
    )
    deadline = time.monotonic() + 180
    while not (files := list(out.glob("*/records.jsonl"))) or not files[0].read_text():
        assert time.monotonic() < deadline and driver.poll() is None, "no record was written"
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=180)
    assert driver.returncode == 130 and "resume with `lcbench run --resume" in output
    (run_dir,) = out.iterdir()
    assert 0 < len(records_of(out)) < 8
    assert main(["run", "--resume", str(run_dir), "--executor", "ray", "--ray-address", cluster["address"]]) == 0
    assert comparable(records_of(out)) == comparable(records_of(tmp_path / "whole"))

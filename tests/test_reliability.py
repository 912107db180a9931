"""Faults injected on purpose: strategies that raise, run out of memory under a cap, hang, or
kill their own process; a run killed with SIGKILL and resumed; a torn last record; Ctrl-C;
hostile suite files; no network. Each must end as records, and the sweep must go on."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lcbench import registry
from lcbench.cli import main
from lcbench.run.records import read_records

FAULTS_MODULE = """
import os, signal, time
from dataclasses import dataclass
from typing import ClassVar
from lcbench.strategies.base import Prediction, Strategy, Usage, predict

@dataclass
class Raises(Strategy):
    name: ClassVar[str] = "fault_raises"
    def run(self, model, example):
        raise RuntimeError("injected failure")

@dataclass
class Hog(Strategy):
    \"\"\"Allocates far past any sensible cap.\"\"\"
    name: ClassVar[str] = "fault_hog"
    def run(self, model, example):
        ballast = bytearray(3 << 30)
        return Prediction(str(len(ballast)), Usage(calls=0))

@dataclass
class Hangs(Strategy):
    name: ClassVar[str] = "fault_hangs"
    def run(self, model, example):
        time.sleep(3600)

@dataclass
class KillsItself(Strategy):
    name: ClassVar[str] = "fault_kills_itself"
    def run(self, model, example):
        os.kill(os.getpid(), signal.SIGKILL)

@dataclass
class Slow(Strategy):
    \"\"\"Answers as `full`, a fifth of a second later: a run long enough to interrupt.\"\"\"
    name: ClassVar[str] = "fault_slow"
    def run(self, model, example):
        time.sleep(0.2)
        return predict(model, example, model.encode(example.context))

@dataclass
class Fine(Strategy):
    name: ClassVar[str] = "fault_free"
    def run(self, model, example):
        return predict(model, example, model.encode(example.context))
"""
FAULTS = {
    "fault_raises": "Raises",
    "fault_hog": "Hog",
    "fault_hangs": "Hangs",
    "fault_kills_itself": "KillsItself",
    "fault_free": "Fine",
    "fault_slow": "Slow",
}


@pytest.fixture
def faults(tmp_path_factory, monkeypatch):
    """A distribution of faulty strategies on sys.path, found through entry points by this
    process and by the workers it spawns (they inherit sys.path); returns its folder."""
    root = tmp_path_factory.mktemp("faults")
    (root / "lcbench_faults.py").write_text(FAULTS_MODULE)
    info = root / "lcbench_faults-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lcbench-faults\nVersion: 1.0\n")
    entries = "".join(f"{name} = lcbench_faults:{cls}\n" for name, cls in FAULTS.items())
    (info / "entry_points.txt").write_text(f"[lcbench.strategies]\n{entries}")
    monkeypatch.syspath_prepend(str(root))
    registry.strategies.cache_clear()
    yield root
    sys.modules.pop("lcbench_faults", None)
    registry.strategies.cache_clear()


def records_of(out: Path) -> list:
    (run_dir,) = out.iterdir()
    return list(read_records(run_dir / "records.jsonl"))


def address_space_now() -> int:
    return int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def test_isolated_faults_become_records_and_the_sweep_goes_on(faults, suite_file, tmp_path, capsys):
    strategies = "".join(
        f"  - name: {name}\n" for name in ("fault_raises", "fault_hog", "fault_hangs", "fault_kills_itself", "fault_free")
    )
    path = suite_file("samples: 1\n", strategies)
    cap = address_space_now() + (1 << 30)  # room for normal work, not for the 3 GB hog
    args = ["run", str(path), "--isolate", "--cell-timeout", "5", "--max-memory", str(cap), "--out", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    by = {(r.strategy, r.context_length): r for r in records_of(tmp_path / "out")}
    assert by[("fault_raises", 64)].status == "error" and "injected failure" in by[("fault_raises", 64)].message
    assert by[("fault_hog", 64)].status == "oom"
    assert by[("fault_hog", 96)].status == "skipped" and by[("fault_hog", 96)].message == "skipped (oom at 64)"
    assert by[("fault_hangs", 64)].status == "timeout" and "--cell-timeout 5s" in by[("fault_hangs", 64)].message
    assert by[("fault_kills_itself", 64)].status == "error" and "signal 9 (SIGKILL)" in by[("fault_kills_itself", 64)].message
    assert by[("fault_free", 64)].status == "ok" and by[("fault_free", 96)].status == "ok"
    report = next((tmp_path / "out").iterdir()) / "report.md"
    assert "timeout" in report.read_text() and "oom" in report.read_text()


def test_in_process_and_isolated_runs_give_identical_records(suite_file, tmp_path):
    path = suite_file("samples: 2\n")
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 0
    assert main(["run", str(path), "--isolate", "--out", str(tmp_path / "b")]) == 0
    a, b = records_of(tmp_path / "a"), records_of(tmp_path / "b")
    assert [(r.cell_key, r.example_id, r.prediction, r.metrics, r.status) for r in a] == [
        (r.cell_key, r.example_id, r.prediction, r.metrics, r.status) for r in b
    ]


def test_no_skip_after_oom_tries_every_length(faults, suite_file, tmp_path):
    path = suite_file("samples: 1\n", "  - name: fault_hog\n")
    cap = address_space_now() + (1 << 30)
    args = ["run", str(path), "--isolate", "--max-memory", str(cap), "--no-skip-after-oom", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert [r.status for r in records_of(tmp_path / "out")] == ["oom", "oom"]


THREE_STRATEGIES = (
    "  - name: full\n"
    "  - {name: truncation, label: trunc-48, params: {budget: 48}}\n"
    "  - {name: blockwise, params: {block_tokens: 48}}\n"
)


def kill_once_written(command: list[str], out: Path, records: int = 2, timeout: float = 120) -> Path:
    """Start `command` (an `lcbench run`), SIGKILL it once `records` records are on disk, mid-run;
    return its run folder."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(out.glob("*/records.jsonl"))
        if files and len(files[0].read_text().splitlines()) >= records:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (run_dir,) = out.iterdir()
    return run_dir


def comparable(records) -> list:
    return sorted((r.cell_key, r.example_id, r.prediction, sorted(r.metrics.items()), r.status) for r in records)


def test_sigkill_then_resume_equals_an_uninterrupted_run(suite_file, tmp_path):
    path = suite_file("samples: 2\n", THREE_STRATEGIES)
    assert main(["run", str(path), "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    run_dir = kill_once_written([sys.executable, "-m", "lcbench.cli", "run", str(path), "--out", str(out)], out)
    left = list(read_records(run_dir / "records.jsonl"))  # valid: at most the cell in flight is missing
    assert 2 <= len(left) < 12
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert comparable(read_records(run_dir / "records.jsonl")) == comparable(records_of(tmp_path / "whole"))


def test_a_torn_last_line_is_detected_and_its_cell_rerun(suite_file, tmp_path, capsys):
    path = suite_file("samples: 2\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    records_file = run_dir / "records.jsonl"
    whole = comparable(read_records(records_file))
    text = records_file.read_text()
    records_file.write_text(text[: len(text) - 40])  # a power cut in the middle of the last record
    assert len(list(read_records(records_file))) == len(whole) - 1
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert "resuming" in capsys.readouterr().err
    assert comparable(read_records(records_file)) == whole


def test_ctrl_c_finishes_the_cell_writes_the_report_and_says_how_to_resume(faults, suite_file, tmp_path):
    path = suite_file("samples: 2\n", "  - name: fault_slow\n  - name: fault_free\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(faults)}
    command = [sys.executable, "-m", "lcbench.cli", "run", str(path), "--out", str(out)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # Ctrl-C once the first example is on disk: its cell is in flight
        files = list(out.glob("*/records.jsonl"))
        if files and files[0].read_text().strip():
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "lcbench run --resume" in stdout
    (run_dir,) = out.iterdir()
    assert (run_dir / "report.md").is_file()
    statuses = [r.status for r in read_records(run_dir / "records.jsonl")]
    assert statuses and len(statuses) % 2 == 0 and set(statuses) == {"ok"}  # whole cells only


def test_a_run_with_the_network_blocked_succeeds(suite_file, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert main(["run", str(suite_file()), "--out", str(tmp_path / "out")]) == 0
    assert all(r.status == "ok" for r in records_of(tmp_path / "out"))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: !!python/object/apply:os.system [echo pwned]\n", "no tag may build a Python object"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef")),
            "alias bomb",
        ),
        ("name: t\ncontext_lengths: [1000000000000]\ntasks: [{name: needle}]\nstrategies: [{name: full}]\n", "context_lengths"),
        (
            "name: t\ncontext_lengths: [256]\nsamples: 1000000000\ntasks: [{name: needle}]\nstrategies: [{name: full}]\n",
            "samples",
        ),
    ],
    ids=["object-tag", "billion-laughs", "absurd-length", "absurd-samples"],
)
def test_hostile_suites_are_refused_before_any_work(text, expected, tmp_path, capsys):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_isolation_settings_need_isolation(suite_file, capsys):
    assert main(["run", str(suite_file()), "--no-isolate", "--cell-timeout", "5"]) == 2
    assert "add --isolate" in capsys.readouterr().err


def test_an_isolated_run_on_a_bad_model_folder_says_why_and_leaves_nothing(suite_file, tmp_path, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    path = suite_file()
    assert main(["run", str(path), "--isolate", "--model", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has no weights" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["env.json", "suite.json"])
def test_a_broken_run_folder_is_a_clear_error_not_a_traceback(name, suite_file, tmp_path, capsys):
    assert main(["run", str(suite_file()), "--lengths", "64", "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    (run_dir / name).write_text("{ not json")
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert name in err and "not valid JSON" in err and "Traceback" not in err


def test_a_resume_measures_lost_examples_again_and_failures_only_when_asked(faults, suite_file, tmp_path, capsys):
    path = suite_file("samples: 2\n", "  - name: full\n  - name: fault_raises\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    # a cluster lost the second example of full's 96-token cell (as `lcbench collect` records it)
    lost = next(
        i for i, r in enumerate(records) if r.strategy == "full" and r.context_length == 96 and r.example_id.endswith("-1")
    )
    kept = records[lost - 1]
    records[lost] = dataclasses.replace(
        records[lost], status="lost", prediction="", metrics={}, message="job 7_1 ended CANCELLED"
    )
    (run_dir / "records.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    capsys.readouterr()

    assert main(["run", "--resume", str(run_dir)]) == 0
    again = list(read_records(run_dir / "records.jsonl"))
    assert "3 cells done, 1 to run" in capsys.readouterr().err
    assert comparable(again) == comparable(r for r in records_of(tmp_path / "out"))  # only that example ran
    assert [r for r in again if r.status == "lost"] == []
    assert next(r for r in again if r.example_id == kept.example_id and r.cell_key == kept.cell_key) == kept  # not remeasured
    assert [r.status for r in again if r.strategy == "fault_raises"] == ["error"] * 4  # the strategy's own: kept

    assert main(["run", "--resume", str(run_dir), "--rerun", "errors"]) == 0
    rerun = [r for r in read_records(run_dir / "records.jsonl") if r.strategy == "fault_raises"]
    assert [r.status for r in rerun] == ["error"] * 4  # measured again: the strategy still raises
    assert "2 cells done, 2 to run" in capsys.readouterr().err

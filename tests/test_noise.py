"""Timing noise detected, not hidden: the machine's speed probe around every measured example,
noisy cells flagged in the records, the report and the recommendation, and measured again with
`--rerun noisy`; memory differences inside the noise do not order strategies."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lcbench.analysis.intervals import Interval
from lcbench.analysis.pareto import Option, dominates
from lcbench.analysis.recommend import option_text
from lcbench.cli import main
from lcbench.run import noise
from lcbench.run.records import read_records


def test_the_probe_takes_milliseconds_and_learns_the_quiet_speed():
    probe = noise.NoiseProbe(quiet_s=10.0)  # a quiet speed far slower than any real probe ...
    assert probe.slowdown() == 1.0 and probe.quiet_s < 0.5  # ... is replaced by the faster reading
    assert probe.slowdown() >= 1.0  # never faster than the quiet speed: that would become the quiet speed


@pytest.mark.parametrize(
    "slowdown,spread,others,expected",
    [
        (1.1, 0.0, 0.0, ""),
        (1.6, 0.0, None, "1.60x slower"),
        (1.0, 0.4, 0.1, "repeats spread 40%"),
        (2.0, 0.5, 0.0, "2.00x slower than its quiet"),
        (1.0, 0.0, 0.6, "other processes took 60% of the machine's CPU"),
    ],
)
def test_noise_reason(slowdown, spread, others, expected):
    reason = noise.noise_reason(slowdown, spread, 0.25, others)
    assert (expected in reason) if expected else reason == ""


def test_other_processes_cpu_is_seen_over_the_whole_span():
    """A job that runs between two probes is invisible to them; its CPU time is not: one busy
    process per core for half a second takes most of the machine."""
    busy = "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass"
    with noise.OthersCpu() as others:
        jobs = [subprocess.Popen([sys.executable, "-c", busy]) for _ in range(os.cpu_count() or 1)]
        for job in jobs:
            job.wait()
    assert others.share is not None and others.share > noise.OTHERS_SHARE


class Slowed:
    """A machine that turns busy after `quiet` probes."""

    def __init__(self, quiet: int) -> None:
        self.left = quiet

    def slowdown(self) -> float:
        self.left -= 1
        return 1.0 if self.left >= 0 else 2.5


class NoOthers(noise.OthersCpu):
    """A machine where no other process runs (the tests' other worker does, here)."""

    def __exit__(self, *exc: object) -> None:
        self.share = 0.0


def test_a_busy_machine_flags_its_cells_and_rerun_noisy_measures_them_again(suite_file, tmp_path, monkeypatch, capsys):
    path = suite_file()  # needle at 64 and 96, full and trunc-48, 2 examples each
    monkeypatch.setattr("lcbench.run.runner.OthersCpu", NoOthers)
    monkeypatch.setattr(noise, "machine", lambda: busy)
    busy = Slowed(quiet=4)  # two probes per example: the first cell's examples are quiet, the rest run busy
    monkeypatch.setattr("lcbench.run.runner.machine", lambda: busy)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    noisy = [r for r in records if r.noisy]
    assert len(noisy) == 6 and all("2.50x slower than its quiet speed" in r.noisy for r in noisy)
    assert all(r.probe_slowdown == 1.0 and not r.noisy for r in records[:2])
    report = (run_dir / "report.md").read_text()
    assert "noisy timing: needle · full · 96" in report and f"lcbench run --resume {run_dir} --rerun noisy" in report
    capsys.readouterr()
    assert main(["recommend", str(run_dir), "--memory", "1G"]) == 0
    assert "(noisy timing: measure it again)" in capsys.readouterr().out

    calm = Slowed(quiet=10**6)
    monkeypatch.setattr("lcbench.run.runner.machine", lambda: calm)
    assert main(["run", "--resume", str(run_dir), "--rerun", "noisy"]) == 0
    again = list(read_records(run_dir / "records.jsonl"))
    assert len(again) == len(records) and not any(r.noisy for r in again)
    assert [json.loads(r.to_json())["cell_key"] for r in again[:2]] == [r.cell_key for r in records[:2]]  # kept, not rerun


def test_rerun_needs_a_run_to_resume(suite_file, capsys):
    assert main(["run", str(suite_file()), "--rerun", "noisy"]) == 2
    assert "add --resume RUN_DIR" in capsys.readouterr().err


def option(name: str, memory: float, low: float, high: float) -> Option:
    return Option(name, Interval(1.0, 1.0, 1.0, 20), memory, 1.0, memory=Interval(memory, low, high, 20))


def test_memory_inside_the_noise_does_not_make_a_strategy_cheaper():
    a, b = option("a", 10.0, 8.0, 12.0), option("b", 12.0, 11.0, 13.0)  # 20% apart, intervals overlap
    assert not dominates(a, b) and not dominates(b, a)
    c = option("c", 20.0, 19.0, 21.0)  # apart: a is cheaper
    assert dominates(a, c) and not dominates(c, a)
    assert "noisy timing" in option_text(Option("n", Interval(1.0, 1.0, 1.0, 20), 1.0, 1.0, noisy=True), "score")

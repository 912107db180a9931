"""`lcbench compare` and `lcbench regress`: the bootstrap, the gate tripping on a slowed or a
memory-hungry strategy and passing on the real ones, and bad input never passing by accident."""

from __future__ import annotations

import time

import pytest
import torch

from lcbench.analysis.compare import bootstrap_difference
from lcbench.cli import main
from lcbench.run import runner
from lcbench.strategies.truncation import Truncation

STRATEGIES = "  - name: full\n  - {name: truncation, label: trunc-48, params: {budget: 48}}\n"
LOOSE = ["--throughput", "1.5", "--memory", "1.0", "--memory-slack-mb", "16"]


def run_suite(suite_file, tmp_path, name: str, extra: str = "") -> str:
    path = suite_file(extra, STRATEGIES)
    out = tmp_path / name
    assert main(["run", str(path), "--out", str(out), "--lengths", "64"]) == 0
    (run_dir,) = out.iterdir()
    return str(run_dir)


@pytest.fixture
def baseline(suite_file, tmp_path):
    return run_suite(suite_file, tmp_path, "baseline", "measure: {warmup: 1, repeats: 1}\n")


def test_bootstrap_says_when_a_difference_is_noise():
    same = {f"e{i}": float(i % 2) for i in range(20)}
    assert bootstrap_difference(same, dict(same)).within_noise
    better = {k: v + 0.5 for k, v in same.items()}
    diff = bootstrap_difference(same, better)
    assert diff.paired and diff.delta == pytest.approx(0.5) and not diff.within_noise
    unpaired = bootstrap_difference(same, {f"x{i}": float((i + 1) % 2) for i in range(20)})
    assert not unpaired.paired and unpaired.within_noise


def test_gate_passes_on_the_real_strategies(baseline, suite_file, tmp_path, capsys):
    run = run_suite(suite_file, tmp_path, "again", "measure: {warmup: 1, repeats: 1}\n")
    assert main(["regress", "--baseline", baseline, "--run", run, *LOOSE]) == 0, capsys.readouterr().out
    assert "no regression" in capsys.readouterr().out


class Clock:
    """The runner's clock with a settable lag: a strategy's added cost is exact, not slept."""

    def __init__(self) -> None:
        self.lag = 0.0

    def perf_counter(self) -> float:
        return time.perf_counter() + self.lag


def test_gate_trips_on_a_slowed_strategy(baseline, suite_file, tmp_path, capsys, monkeypatch):
    real_run = Truncation.run
    clock = Clock()

    def slowed(self, model, example):
        clock.lag += 1.0  # one second more per example, far beyond any noise in the ratio to full
        return real_run(self, model, example)

    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(Truncation, "run", slowed)
    run = run_suite(suite_file, tmp_path, "slow", "measure: {warmup: 1, repeats: 1}\n")
    assert main(["regress", "--baseline", baseline, "--run", run, *LOOSE]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED needle · trunc-48 · 64: latency_s relative to full" in out


def test_gate_trips_on_a_memory_hungry_strategy(baseline, suite_file, tmp_path, capsys, monkeypatch):
    real_run = Truncation.run

    def hungry(self, model, example):
        ballast = torch.ones(256 << 20, dtype=torch.uint8)  # tensor bytes the strategy holds while it answers
        prediction = real_run(self, model, example)
        del ballast
        return prediction

    monkeypatch.setattr(Truncation, "run", hungry)
    run = run_suite(suite_file, tmp_path, "hungry", "measure: {warmup: 1, repeats: 1}\n")
    assert main(["regress", "--baseline", baseline, "--run", run, *LOOSE]) == 1
    assert "trunc-48 · 64: peak memory" in capsys.readouterr().out


def test_gate_trips_when_a_cell_starts_failing(baseline, suite_file, tmp_path, capsys, monkeypatch):
    def broken(self, model, example):
        raise RuntimeError("deliberately broken")

    monkeypatch.setattr(Truncation, "run", broken)
    run = run_suite(suite_file, tmp_path, "broken", "measure: {warmup: 1, repeats: 1}\n")
    assert main(["regress", "--baseline", baseline, "--run", run, *LOOSE]) == 1
    assert "status ok -> error" in capsys.readouterr().out


def test_compare_two_seeds_calls_the_differences_noise(suite_file, tmp_path, capsys):
    a = run_suite(suite_file, tmp_path, "a")
    b = run_suite(suite_file, tmp_path, "b", "seed: 7\n")
    assert main(["compare", a, b, "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "quality A -> B" in out and "within noise" in out
    assert (tmp_path / "cmp" / "compare.csv").is_file() and (tmp_path / "cmp" / "compare.md").is_file()


@pytest.mark.parametrize("problem", ["missing", "corrupt", "other_suite"])
def test_bad_baselines_are_refused_without_a_traceback(problem, baseline, tmp_path, capsys):
    from pathlib import Path

    bad = tmp_path / "bad"
    bad.mkdir()
    if problem == "corrupt":
        (bad / "records.jsonl").write_text('{"suite": "t", "task"\n{not json\n')
    if problem == "other_suite":
        text = (Path(baseline) / "records.jsonl").read_text().replace('"suite": "t"', '"suite": "other"')
        (bad / "records.jsonl").write_text(text)
    assert main(["regress", "--baseline", str(bad), "--run", baseline]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "lcbench: error:" in err
    expected = {"missing": "has no records.jsonl", "corrupt": "records.jsonl", "other_suite": "compare runs of one suite"}[
        problem
    ]
    assert expected in err

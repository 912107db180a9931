"""Adaptive sampling: examples spent only where a verdict is open, on synthetic runs whose verdicts
are known by construction, and end to end on the tiny model, where a cell extended in rounds equals
the same cell run at its final size at once."""

from __future__ import annotations

import collections

import pytest

from lcbench.analysis.runs import CellId
from lcbench.analysis.undecided import open_verdicts
from lcbench.cli import main
from lcbench.config.suite import Suite
from lcbench.run.records import Record, read_records
from lcbench.settle import Extension, next_round, within
from test_answer import cell, run_of

SCORES = {  # each cell's examples by index: what a run of n examples would measure
    ("steady", 1024): [1.0] * 64,
    ("steady", 4096): [1.0] * 64,  # every example passes, but 4 of 4 fit a share as low as 0.51: holds at 64
    ("falls", 1024): [1.0] * 64,
    ("falls", 4096): [0.0] * 64,  # breaks at once: never extended
    ("edge", 1024): [1.0] * 64,
    ("edge", 4096): [1.0, 1.0, 1.0, 0.0] * 16,  # 75%: below 90%, but four examples cannot tell
    ("coin", 1024): [1.0] * 64,
    ("coin", 4096): [1.0, 0.0] + [1.0] * 62,  # ~98%: one miss in the first four, then none: holds, given examples
}


def suite(low: int = 4, high: int = 64) -> Suite:
    return Suite.model_validate(
        {
            "name": "synthetic",
            "context_lengths": [1024, 4096],
            "samples": {"min": low, "max": high},
            "tasks": [{"name": "needle"}],
            "strategies": [{"name": "full"}],
        }
    )


def records_at(counts: dict[tuple[str, int], int]) -> list[Record]:
    found = []
    for (strategy, length), n in counts.items():
        for r in cell(strategy, length, SCORES[(strategy, length)][:n], mb=10.0 + len(strategy)):
            r.cell_key = f"{strategy}-{length}"
            found.append(r)
    return found


def settle_synthetic(low: int, high: int) -> dict[tuple[str, int], int]:
    """The rounds run_adaptive would run, on the synthetic cells: their final example counts."""
    counts = {key: low for key in SCORES}
    for _ in range(20):
        extensions = next_round(run_of(records_at(counts)), suite(low, high))
        if not extensions:
            return counts
        for e in extensions:
            counts[(e.cell.strategy, e.cell.length)] = e.target
    raise AssertionError("the rounds did not stop")


def test_examples_go_only_where_a_verdict_is_open():
    counts = settle_synthetic(4, 64)
    # clear at once: four examples
    assert counts[("falls", 1024)] == counts[("falls", 4096)] == 4
    # open at four: both cells of the ratio doubled, round by round, until the interval leaves the 90% line;
    # all passing takes 64 (Wilson: 32 of 32 still fit a share of 0.89, 64 of 64 one of 0.94 at least)
    assert counts[("edge", 1024)] == counts[("edge", 4096)] == 32
    assert counts[("steady", 1024)] == counts[("steady", 4096)] == 64
    assert counts[("coin", 1024)] == counts[("coin", 4096)] == 64
    final = run_of(records_at(counts))
    assert not [o for o in open_verdicts(final) if "break" in o.verdict]  # every breaking verdict settled
    assert sum(counts.values()) == 328  # against 512 for a fixed 64 per cell


def test_the_maximum_stops_a_verdict_that_cannot_settle():
    counts = settle_synthetic(4, 8)
    assert max(counts.values()) == 8 and counts[("falls", 1024)] == 4


def test_a_time_budget_takes_the_cheapest_extensions_that_fit():
    cheap = Extension(CellId("t", "a", 1), "a", 4, 8, seconds_each=1.0)  # 4 s to extend
    dear = Extension(CellId("t", "b", 1), "b", 4, 8, seconds_each=10.0)  # 40 s
    assert within([dear, cheap], 50.0) == [cheap, dear]
    assert within([dear, cheap], 10.0) == [cheap]
    assert within([dear, cheap], 3.0) == []


def test_samples_min_max_and_limit_validate_with_the_fix(suite_file, capsys):
    path = suite_file("samples: {min: 8, max: 4}\n")
    assert main(["validate", str(path)]) == 2
    assert "min (8) must be at most max (4)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def adaptive_and_fixed(tiny_dir, tmp_path_factory):
    """One adaptive run (2 to 8 examples per cell) and one fixed run of 8, of the same small suite."""
    root = tmp_path_factory.mktemp("settle")
    text = (
        "# adaptive\nname: t\n"
        f"model: {tiny_dir}\ndevice: cpu\ncontext_lengths: [64, 96]\n"
        "prompt: {format: plain}\ntasks: [{name: needle}]\n"
        "strategies:\n  - name: full\n  - {name: truncation, label: trunc-48, params: {budget: 48}}\n"
        "measure: {warmup: 0, repeats: 1}\n"
    )
    adaptive, fixed = root / "adaptive.yaml", root / "fixed.yaml"
    adaptive.write_text(text + "samples: {min: 2, max: 8}\n")
    fixed.write_text(text + "samples: 8\n")
    assert main(["run", str(adaptive), "--out", str(root / "a")]) == 0
    assert main(["run", str(fixed), "--out", str(root / "f")]) == 0
    (a,) = (root / "a").iterdir()
    (f,) = (root / "f").iterdir()
    return a, f


def test_a_cell_extended_in_rounds_equals_the_same_cell_run_at_once(adaptive_and_fixed):
    a, f = adaptive_and_fixed
    fixed = collections.defaultdict(list)
    for r in read_records(f / "records.jsonl"):
        fixed[(r.strategy, r.context_length)].append(r)
    extended = collections.defaultdict(list)
    for r in read_records(a / "records.jsonl"):
        extended[(r.strategy, r.context_length)].append(r)
    assert set(extended) == set(fixed)
    for key, records in extended.items():
        n = len(records)
        assert 2 <= n <= 8 and len({r.example_id for r in records}) == n  # each example once
        once = fixed[key][:n]
        assert [(r.example_id, r.prediction, r.metrics) for r in records] == [
            (r.example_id, r.prediction, r.metrics) for r in once
        ]
    rounds = {r.round for rs in extended.values() for r in rs}
    assert 0 in rounds


def test_the_report_says_what_adaptive_sampling_left_open(adaptive_and_fixed):
    a, _ = adaptive_and_fixed
    report = (a / "report.md").read_text()
    assert "## Sampling" in report and "examples per cell" in report


def test_a_suite_says_its_sampling_range_and_time_budget():
    settled = Suite.model_validate({**suite().model_dump(), "samples": {"min": 3, "max": 12, "time_budget": "4min"}})
    assert settled.samples == 12 and settled.sampling is not None
    assert (settled.sampling.min, settled.sampling.time_budget) == (3, 240.0)

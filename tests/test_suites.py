"""Every shipped suite validates and runs end to end (a short length, one example per cell, a few
output tokens)."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import SUITES
from lcbench.cli import main
from lcbench.config.suite import load_suite
from lcbench.run.records import read_records

# the suites whose reports are drawn here: each kind of plot once (by length and frontier, needle
# depth, the KV-compression frontier, budget-matched groups); the others' reports are tables only
PLOTTED = {"needle.yaml": "-depth.png", "kv.yaml": "-kv-frontier.png", "kv_budget.yaml": "-kv-budget.png"}


@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_shipped_suite_runs(path, tiny_dir, chat_dirs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # as on a CPU machine: triton_fused is recorded unavailable
    monkeypatch.setenv("LCBENCH_PLOTS", "1" if path.name in PLOTTED else "0")
    # data-set suites read English: a subword tokenizer (with a chat template) represents it
    model = chat_dirs["bpe"] if "data_dir" in path.read_text() else tiny_dir
    suite, _ = load_suite(path, model=str(model))
    assert suite.description and path.read_text().startswith("#")  # says what it shows
    # the shortest length, or 512 where that is longer and the suite's tasks are generated: what
    # runs is every task and strategy of the suite, not its lengths
    shortest = suite.context_lengths[0] if "data_dir" in path.read_text() else min(suite.context_lengths[0], 512)
    # and a few output tokens, no warm-up, one timed run: a translation's 600 tokens, thrice, in every
    # cell of kv.yaml were most of this test's time
    short = yaml.safe_load(path.read_text()) | {"max_new_tokens": 8, "measure": {"warmup": 0, "repeats": 1}}
    copy = tmp_path / "suite" / path.name
    copy.parent.mkdir()
    copy.write_text(yaml.safe_dump(short))
    out = tmp_path / "runs"
    args = ["run", str(copy), "--model", str(model), "--lengths", str(shortest), "--limit", "1", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    (run_dir,) = out.iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    assert sum(r.ends_example for r in records) == len(suite.tasks) * len(suite.strategies)  # one example per cell
    assert {r.status for r in records} <= {"ok", "unavailable"}
    drawn = [p.name for p in (run_dir / "plots").glob("*.png")]
    if path.name in PLOTTED:
        assert any(name.endswith(PLOTTED[path.name]) for name in drawn) and any(n.endswith("-by-length.png") for n in drawn)
    else:
        assert not drawn and "plots not drawn (LCBENCH_PLOTS=0)" in (run_dir / "report.md").read_text()


def test_triton_fused_without_cuda_is_reported_unavailable_while_the_rest_runs(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    path = next(p for p in SUITES if p.name == "mt.yaml")
    args = ["run", str(path), "--model", str(tiny_dir), "--lengths", "256", "--limit", "1", "--out", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    fused = [r for r in records if r.strategy.startswith("triton_fused")]
    assert all(r.status == "ok" for r in records if not r.strategy.startswith("triton_fused"))
    report = (run_dir / "report.md").read_text()
    if torch.cuda.is_available():  # a GPU machine runs the kernels: every cell answers
        assert fused and all(r.status == "ok" for r in fused)
    else:
        assert fused and all(r.status == "unavailable" and "CUDA" in r.message for r in fused)
        assert "unavailable" in report and "triton_fused runs Triton kernels on a CUDA GPU" in report

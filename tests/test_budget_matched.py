"""Equal-cost comparison: KV methods and sparse window patterns set by the same token budget
(`budget_tokens`, KV tokens kept) keep the same cache, say so in their records, and are drawn side
by side per budget."""

from __future__ import annotations

import pandas as pd
import pytest

from lcbench.analysis.plots import budget_groups
from lcbench.cli import main
from lcbench.run.records import read_records
from lcbench.strategies.sparse import Sparse
from test_sparse import long_example


def test_a_sparse_budget_is_the_sinks_plus_the_window():
    assert Sparse(budget_tokens=260).span == 256 and Sparse(budget_tokens=260, sinks=0).span == 260
    assert Sparse(pattern="window", budget_tokens=256).span == 256  # no sinks kept
    assert Sparse().span == 512  # the default window where neither is set


@pytest.mark.parametrize(
    "params,message",
    [
        ({"budget_tokens": 256, "window": 100}, "set window or budget_tokens, not both"),
        ({"pattern": "bigbird", "budget_tokens": 256}, "bigbird keeps every key"),
        ({"pattern": "strided", "budget_tokens": 256}, "strided keeps every key"),
        ({"budget_tokens": 4}, "must exceed the 4 sinks"),
    ],
)
def test_a_budget_that_cannot_be_kept_is_refused_with_the_fix(params, message):
    with pytest.raises(ValueError, match=message):
        Sparse(**params)


def test_a_sparse_budget_decodes_as_its_window_and_keeps_the_budget(llama):
    example = long_example(llama, 300, 40)
    by_budget = Sparse(budget_tokens=68, tile=32).run(llama, example)
    by_window = Sparse(window=64, tile=32).run(llama, example)
    assert by_budget.text == by_window.text
    # between steps the cache holds one less than the budget: the next token's own key completes it
    assert by_budget.extra["budget_tokens"] == 68 and by_budget.extra["kv_cache_tokens"] == 67


STRATEGIES = """\
  - name: full
  - {name: kv_compression, label: snapkv-40, params: {method: snapkv, budget_tokens: 40, window: 8}}
  - {name: kv_compression, label: h2o-40, params: {method: h2o, budget_tokens: 40, window: 8}}
  - {name: sparse, label: streaming-40, params: {pattern: sink_window, budget_tokens: 40, tile: 32}}
  - {name: kv_compression, label: tova-half, params: {method: tova, compression_ratio: 0.5}}
"""


def test_a_run_groups_the_budget_matched_cells_and_draws_them_side_by_side(suite_file, tmp_path, plots):
    path = suite_file(strategies=STRATEGIES, extra="measure: {warmup: 0, repeats: 1}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--lengths", "96"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    budgets = {r.strategy: r.extra.get("budget_tokens") for r in records}
    assert budgets["snapkv-40"] == budgets["h2o-40"] == budgets["streaming-40"] == 40 and budgets["full"] is None
    summary = pd.read_csv(run_dir / "summary.csv")
    groups = budget_groups(summary[summary["task"] == "needle"])
    (length,) = groups
    assert sorted(groups[length][40]["strategy"]) == ["h2o-40", "snapkv-40", "streaming-40"]
    assert all(len(cells) >= 2 for cells in groups[length].values())  # a budget of one strategy is no comparison
    assert (run_dir / "plots" / "needle-kv-budget.png").stat().st_size > 0
    assert "plots/needle-kv-budget.png" in (run_dir / "report.md").read_text()
    assert "plots/needle-depth.png" in (run_dir / "report.md").read_text()  # needle says where its needle was


def test_no_comparison_without_two_strategies_at_one_budget():
    cells = pd.DataFrame(
        {
            "context_length": [96, 96, 96],
            "strategy": ["full", "snapkv-40", "h2o-30"],
            "status": ["ok"] * 3,
            "budget_tokens": [None, 40.0, 30.0],
        }
    )
    assert budget_groups(cells) == {}

"""The run's answer: breaking lengths, the Pareto set and `lcbench recommend`, on synthetic runs
whose answers are known by construction, and on a real run of the shipped model's mt suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lcbench.analysis.answer import Question, answer, pareto_sets
from lcbench.analysis.breaking import breaking_lengths
from lcbench.analysis.intervals import Interval, examples_to_settle, mean_interval, ratio_interval
from lcbench.analysis.pareto import Option, dominated_by, dominates
from lcbench.analysis.recommend import recommend
from lcbench.analysis.runs import Run
from lcbench.analysis.summary import strategy_order, summarize
from lcbench.cli import main
from lcbench.config.budget import Budget
from lcbench.run.records import Record, RecordWriter
from lcbench.units import parse_mb, parse_seconds

LENGTHS = (1024, 4096, 16384)


def cell(
    strategy: str, length: int, scores: list[float], mb: float = 10.0, seconds: float = 1.0, status: str = "ok"
) -> list[Record]:
    return [
        Record(
            "synthetic",
            "qa",
            strategy,
            strategy,
            {"window": 64},
            length,
            f"e{i}",
            f"{strategy}-{length}",
            task_name="qa",
            status=status,
            metrics={"score": s} if status == "ok" else {},  # type: ignore[arg-type]
            peak_mem_bytes=int(mb * 2**20),
            latency_s=seconds,
            prefill_tokens=length,
            decode_tokens=1,
            calls=1,
            prefill_s=seconds,
            decode_s=0.0,
        )
        for i, s in enumerate(scores)
    ]


def run_of(records: list[Record], path: Path = Path("synthetic")) -> Run:
    return Run(path, records, summarize(records, strategy_order(records)), {"model": "m", "device": "cpu", "cpu": "c"})


STEADY = [1.0] * 48  # all pass: 48 are enough for a share above 0.9 at 95% (Wilson)
HALF = [1.0, 0.0] * 10  # mean 0.5, wide interval


def verdict_of(records: list[Record], strategy: str, threshold: float = 0.9):
    return next(v for v in breaking_lengths(run_of(records), threshold) if v.strategy == strategy)


def test_a_strategy_that_collapses_breaks_at_that_length_and_one_that_does_not_holds():
    records = cell("collapses", 1024, STEADY) + cell("collapses", 4096, STEADY) + cell("collapses", 16384, [0.0] * 20)
    records += [r for n in LENGTHS for r in cell("steady", n, STEADY)]
    broken = verdict_of(records, "collapses")
    assert (broken.verdict, broken.length) == ("breaks", 16384)
    assert broken.ratio is not None and broken.ratio.high < 0.9
    assert "collapses breaks at 16384" in broken.sentence()
    held = verdict_of(records, "steady")
    assert (held.verdict, held.longest) == ("holds", 16384) and held.cell() == "holds to 16384"


def test_a_drop_inside_the_noise_is_not_measurable_and_says_how_many_examples_would_settle_it():
    # 0.85 of the shortest length's quality, but a 0/1 metric on 20 examples cannot tell it from 0.9
    records = cell("noisy", 1024, [1.0] * 20) + cell("noisy", 4096, [1.0] * 17 + [0.0] * 3)
    unsure = verdict_of(records, "noisy")
    assert unsure.verdict == "unsure" and unsure.length == 4096
    assert unsure.ratio is not None and unsure.ratio.low < 0.9 <= unsure.ratio.high
    assert unsure.settle is not None and unsure.settle > 20
    assert f"about {unsure.settle} examples per cell would settle it" in unsure.sentence()


def test_a_sure_break_after_an_unsure_length_bounds_the_verdict():
    records = cell("s", 1024, STEADY) + cell("s", 4096, [1.0] * 17 + [0.0] * 3) + cell("s", 16384, [0.0] * 20)
    verdict = verdict_of(records, "s")
    assert (verdict.verdict, verdict.length, verdict.broken_by) == ("unsure", 4096, 16384)
    assert verdict.cell() == "4096? (by 16384)"


def test_running_out_of_memory_is_a_break_and_a_strategy_with_no_quality_has_none_to_lose():
    records = cell("big", 1024, STEADY) + cell("big", 4096, [0.0], status="oom") + cell("zero", 1024, [0.0] * 4)
    records += cell("zero", 4096, [0.0] * 4)
    assert verdict_of(records, "big").cell() == "4096 (oom)"
    assert verdict_of(records, "zero").verdict == "no quality"


def test_a_shortest_length_that_scored_mostly_zero_gives_an_unbounded_interval_not_a_crash():
    # a resample of the shortest length's examples can be all zeros: the ratio's upper end is unbounded
    records = cell("rare", 1024, [1.0] + [0.0] * 7) + cell("rare", 4096, [1.0] + [0.0] * 7)
    verdict = verdict_of(records, "rare")
    assert verdict.verdict == "unsure" and verdict.ratio is not None and verdict.ratio.high == float("inf")
    assert "not measurable at 4096" in verdict.sentence()
    assert examples_to_settle(Interval(0.5, 0.0, float("inf"), 8), 0.9) is None  # the side across is unbounded


def test_the_threshold_is_the_users():
    records = cell("s", 1024, STEADY) + cell("s", 4096, [1.0] * 15 + [0.0] * 5)  # 75%
    assert verdict_of(records, "s", threshold=0.5).verdict == "holds"
    assert verdict_of(records, "s", threshold=0.99).verdict == "breaks"  # 20 pass-or-fail examples: not sure of 0.95


def test_intervals_cover_their_estimate_and_shrink_with_more_examples():
    few, many = mean_interval([1.0, 0.0] * 5), mean_interval([1.0, 0.0] * 500)
    assert few is not None and many is not None and few.value == many.value == 0.5
    assert few.holds(0.5) and (many.high - many.low) < (few.high - few.low) / 5
    ratio = ratio_interval([0.5] * 10, [1.0] * 10)
    assert ratio is not None and ratio.value == pytest.approx(0.5)
    assert ratio_interval([1.0], [0.0]) is None
    # the interval's half-width toward the threshold halves with 4x the examples
    assert examples_to_settle(Interval(0.85, 0.75, 0.95, 25), 0.9) == 100


def option(name: str, quality: float, low: float, high: float, mb: float, seconds: float) -> Option:
    return Option(name, Interval(quality, low, high, 20), mb, seconds)


def test_a_cheaper_better_strategy_dominates_and_a_tie_within_noise_does_not():
    cheap_good = option("cheap_good", 0.95, 0.9, 1.0, 5.0, 1.0)
    dear_bad = option("dear_bad", 0.6, 0.5, 0.7, 50.0, 2.0)
    dear_close = option("dear_close", 0.93, 0.85, 0.99, 50.0, 2.0)  # cheap_good's 0.95 is inside its interval
    fast = option("fast", 0.6, 0.5, 0.7, 60.0, 0.1)  # worse and bigger, but faster: not dominated
    assert dominates(cheap_good, dear_bad) and not dominates(dear_bad, cheap_good)
    assert not dominates(cheap_good, dear_close)
    beaten = dominated_by([cheap_good, dear_bad, dear_close, fast])
    assert beaten == {"cheap_good": [], "dear_bad": ["cheap_good", "dear_close"], "dear_close": [], "fast": []}


def test_costs_within_the_tolerance_are_a_tie_not_a_win():
    a = option("a", 0.8, 0.8, 0.8, 10.0, 1.0)
    b = option("b", 0.8, 0.8, 0.8, 10.5, 1.0)  # 5% more memory: noise
    assert not dominates(a, b) and not dominates(b, a)
    assert dominates(a, option("c", 0.8, 0.8, 0.8, 20.0, 1.0))


def test_recommend_picks_the_best_within_the_budget_and_says_what_a_looser_one_buys():
    found = [
        option("small", 0.5, 0.4, 0.6, 4.0, 1.0),
        option("medium", 0.8, 0.7, 0.9, 8.0, 1.0),
        option("large", 0.95, 0.9, 1.0, 30.0, 1.0),
    ]
    pick = recommend(found, Budget(memory_mb=10.0))
    assert pick.best is not None and pick.best.strategy == "medium"
    assert pick.runner_up is not None and pick.runner_up.strategy == "small" and not pick.tied
    assert pick.looser is not None and pick.looser.strategy == "large"
    none = recommend(found, Budget(memory_mb=1.0))
    assert none.best is None and none.cheapest is not None and none.cheapest.strategy == "small"
    assert recommend(found, Budget(memory_mb=100.0, min_quality=0.99)).best is None


@pytest.mark.parametrize("text,mb", [("5MB", 5.0), ("5M", 5.0), ("2G", 2048.0), ("2 GiB", 2048.0), ("512k", 0.5), ("1.5mb", 1.5)])
def test_memory_budgets_read_as_the_tables_print_them(text, mb):
    assert parse_mb(text) == mb


@pytest.mark.parametrize("text,seconds", [("1s", 1.0), ("500ms", 0.5), ("2min", 120.0), ("0.25", 0.25)])
def test_latency_budgets(text, seconds):
    assert parse_seconds(text) == seconds


def write_run(folder: Path, records: list[Record], recommend_section: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    with RecordWriter(folder / "records.jsonl") as writer:
        writer.write(records)
    (folder / "env.json").write_text(json.dumps({"model": "m", "device": "cpu", "cpu": "c", "suite": "synthetic"}))
    (folder / "suite.json").write_text(json.dumps({"name": "synthetic", "recommend": recommend_section or {}}))
    return folder


SYNTHETIC = (
    [r for n in LENGTHS for r in cell("full", n, STEADY if n < 16384 else [0.1] * 20, mb=n / 256)]
    + [r for n in LENGTHS for r in cell("chunked", n, [0.95] * 20, mb=6.0, seconds=3.0)]
    + [r for n in LENGTHS for r in cell("window", n, [0.5] * 20, mb=3.0)]
)


def test_recommend_answers_each_run_apart_and_refuses_to_extrapolate(tmp_path, capsys):
    a = write_run(tmp_path / "a", SYNTHETIC)
    b = write_run(tmp_path / "b", [r for r in SYNTHETIC if r.strategy != "chunked"])
    assert main(["recommend", str(a), str(b), "--memory", "10MB", "--length", "16k"]) == 0
    out = capsys.readouterr().out
    first, second = out.split(f"## {b}")
    assert "full breaks at 16384" in first and "chunked: score 0.950" in first and "chunked" not in second
    assert "window: score 0.500" in second
    assert main(["recommend", str(a), "--length", "32k"]) == 2
    err = capsys.readouterr().err
    assert "past the longest length measured" in err and "does not extrapolate" in err and "Traceback" not in err
    assert main(["recommend", str(a), "--length", "2k"]) == 2
    assert "was not measured" in capsys.readouterr().err


def test_the_report_opens_with_the_answer_and_the_suites_budgets(tmp_path):
    from lcbench.analysis.report import write_report

    folder = write_run(tmp_path / "r", SYNTHETIC, {"memory": ["5MB", "20MB"]})
    write_report(folder)
    report = (folder / "report.md").read_text()
    first_screen = report[: report.index("## Plots")]
    assert "## The answer" in first_screen and "full breaks at 16384" in first_screen
    assert "under peak memory <= 5 MB: window" in first_screen and "under peak memory <= 20 MB: chunked" in first_screen
    assert "dominated by window" in first_screen  # full at 16k: worse, bigger and no faster (chunked is slower)
    assert pareto_sets(run_of(SYNTHETIC))[("qa", 16384)] == {"chunked", "window"}


def test_a_suite_refuses_a_bad_budget_with_the_fix(suite_file, capsys):
    path = suite_file("recommend: {memory: [5XB]}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a memory budget: '5XB'" in err and "Traceback" not in err


def test_on_the_shipped_translation_model_full_breaks_past_its_training_length(tmp_path, capsys):
    suite = Path(__file__).parents[1] / "suites" / "mt.yaml"
    out = tmp_path / "results"
    argv = ["run", str(suite), "--lengths", "256,512", "--strategies", "full,truncation-256", "--limit", "3", "--out", str(out)]
    assert main(argv) == 0
    folder = next(out.iterdir())
    report = (folder / "report.md").read_text()
    assert "full breaks at 512" in report[: report.index("## Plots")]
    capsys.readouterr()
    assert main(["recommend", str(folder), "--memory", "20MB", "--length", "512"]) == 0
    assert "full breaks at 512" in capsys.readouterr().out
    assert answer(Run.load(folder), Question())


def test_summary_gives_time_to_first_token_and_per_output_token_as_median_and_p90():
    import dataclasses

    records = [
        dataclasses.replace(r, ttft_s=0.1 * (i + 1), tpot_s=0.001 * (i + 1)) for i, r in enumerate(cell("full", 1024, [1.0] * 10))
    ]
    records.append(dataclasses.replace(records[0], example_id="e-old", ttft_s=None, tpot_s=None))  # written before these existed
    row = summarize(records).iloc[0]
    assert row["ttft_s"] == pytest.approx(0.55) and row["ttft_p90_s"] == pytest.approx(0.91)
    assert row["tpot_ms"] == pytest.approx(5.5) and row["tpot_p90_ms"] == pytest.approx(9.1)


def test_a_compression_whose_peak_is_not_below_full_is_flagged_beside_what_it_promised():
    import dataclasses

    from lcbench.analysis.report import promise_notes, tables

    promise = {"kv_promised_bytes": float(2 << 20)}
    records = cell("full", 1024, [1.0] * 4, mb=10.0)
    records += [dataclasses.replace(r, extra=promise) for r in cell("snapkv-50%", 1024, [1.0] * 4, mb=12.0)]
    records += [dataclasses.replace(r, extra=promise) for r in cell("h2o-50%", 1024, [1.0] * 4, mb=6.0)]
    summary = summarize(records, strategy_order(records))
    notes = promise_notes(summary)
    assert len(notes) == 1 and "qa · snapkv-50% · 1024: peak 12.0 MB is not below full's 10.0 MB" in notes[0]
    assert "promises 2.00 MB" in notes[0]
    titles = [title for title, _ in tables(summary)]
    assert "qa: KV cache its method promises to keep (MB) (lower is better)" in titles
    plain = summarize(cell("full", 1024, [1.0] * 4), ["full"])
    assert not any("promises" in title for title, _ in tables(plain))  # no method promised anything: no table

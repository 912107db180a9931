"""The report flags a cell whose strategy ran the attention path it names for under 90% of its
prefill calls (the records' `extra["named_path_share"]`), and no other."""

from __future__ import annotations

from lcbench.analysis.report import named_path_notes, render_markdown
from lcbench.analysis.summary import strategy_order, summarize
from lcbench.run.records import Record


def record(strategy: str, length: int, extra: dict[str, float], index: int = 0, status: str = "ok") -> Record:
    return Record(
        suite="s",
        task="needle",
        strategy=strategy,
        strategy_name=strategy.split("-")[0],
        params={},
        context_length=length,
        example_id=f"needle-{length}-{index}",
        cell_key=f"needle/{strategy}/{length}",
        task_name="needle",
        status=status,  # type: ignore[arg-type]
        input_tokens=length,
        metrics={"exact_match": 1.0},
        prediction="a",
        references=["a"],
        calls=1,
        prefill_tokens=length,
        decode_tokens=4,
        max_call_tokens=length,
        prefill_s=0.1,
        decode_s=0.1,
        latency_s=0.2,
        repeats=1,
        extra=extra,
    )


def test_the_report_flags_a_cell_whose_named_path_ran_half_its_prefill_calls():
    records = [
        record("triton_fused-256", 2048, {"named_path_share": 0.5, "prefill_calls": 2.0}),
        record("sparse-flex", 2048, {"named_path_share": 1.0, "prefill_calls": 2.0}),
        record("full", 2048, {}),
    ]
    summary = summarize(records, strategy_order(records))
    report = render_markdown(summary, {"suite": "s", "device": "cpu"}, records=records)
    top = report.split("\n## ")[0]  # the notes before the first section
    flagged = [line for line in top.splitlines() if "names ran" in line]
    assert len(flagged) == 1 and "triton_fused-256 · 2048" in flagged[0] and "50.0%" in flagged[0]
    assert "sparse-flex" not in top and "· full ·" not in top


def test_a_cell_is_judged_on_all_its_prefill_calls_once():
    records = [
        record("sparse-flex", 1024, {"named_path_share": 1.0, "prefill_calls": 9.0}, index=0),
        record("sparse-flex", 1024, {"named_path_share": 0.0, "prefill_calls": 1.0}, index=1),  # 90% of the calls in all
        record("triton_fused", 1024, {"named_path_share": 0.8}, index=0),
        record("triton_fused", 1024, {"named_path_share": 0.8}, index=1),
        record("triton_fused", 4096, {"named_path_share": 0.2}, status="error"),  # what did not run says nothing
    ]
    notes = named_path_notes(records)
    assert len(notes) == 1 and "triton_fused · 1024" in notes[0] and "80.0%" in notes[0]

"""From records to one row per cell: quality means, cost figures and status counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd

from lcbench.run.records import Record

CELL = ["task", "strategy", "context_length"]
REFERENCE_STRATEGY = "full"  # the reference row of every table
METRIC_SEPARATOR = "|"  # the `metrics` column: the cell's metric names, headline first
SEVERITY = ["oom", "timeout", "error", "lost", "unavailable", "skipped", "ok"]  # first present names the cell

# cost columns: name -> (label, higher_is_better, format)
COST = {
    "peak_mem_mb": ("peak memory (MB)", False, ".1f"),
    "kv_decode_mb": ("KV cache at decode (MB)", False, ".2f"),
    "kv_promised_mb": ("KV cache its method promises to keep (MB)", False, ".2f"),
    "prefill_tok_s": ("prefill tok/s", True, ".0f"),
    "decode_tok_s": ("decode tok/s", True, ".1f"),
    "latency_s": ("latency (s)", False, ".3f"),
    "ttft_s": ("time to first token, median (s)", False, ".3f"),
    "tpot_ms": ("time per output token, median (ms)", False, ".1f"),
    "calls": ("model calls", False, ".1f"),
    "tokens_processed": ("tokens processed", False, ".0f"),
}


def strategy_order(records: Sequence[Record]) -> list[str]:
    """`full` first (the reference row), then the order of the suite."""
    seen = list(dict.fromkeys(r.strategy for r in records))
    return sorted(seen, key=lambda s: (s != REFERENCE_STRATEGY, seen.index(s)))


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {k: v for k, v in asdict(r).items() if k not in ("metrics", "memory", "extra", "metadata", "params")}
        row.update({f"metric.{k}": v for k, v in r.metrics.items()})
        row["tokens_processed"] = r.tokens_processed
        row["decode_steps"] = None if r.decode_tokens is None or r.calls is None else r.decode_tokens - r.calls
        rows.append(row)
    return pd.DataFrame(rows)


def corpus_scores(task: str, ok: pd.DataFrame) -> dict[str, float]:
    """The task's corpus-level metrics over the cell (e.g. corpus BLEU), where it defines any."""
    from lcbench.registry import tasks

    cls = tasks().get(str(ok["task_name"].iloc[0]) or task)
    if cls is None:
        return {}
    return cls.corpus_scores(list(ok["prediction"]), [refs[0] for refs in ok["references"]])


def _ratio(numerator: pd.Series, denominator: pd.Series) -> float | None:
    total = denominator.sum()
    return float(numerator.sum() / total) if total and total > 0 else None


def serving_times(ok: pd.DataFrame) -> dict[str, float | None]:
    """Time to first token and time per output token as serving reports them: the median and the
    90th percentile over the cell's examples."""
    out: dict[str, float | None] = {}
    for column, name, scale in (("ttft_s", "ttft", 1.0), ("tpot_s", "tpot", 1e3)):
        values = ok[column].dropna() if column in ok.columns else pd.Series(dtype=float)
        unit = "s" if scale == 1.0 else "ms"
        out[f"{name}_{unit}"] = float(values.median()) * scale if len(values) else None
        out[f"{name}_p90_{unit}"] = float(values.quantile(0.9)) * scale if len(values) else None
    return out


def summarize(records: Sequence[Record], strategy_order: Sequence[str] = ()) -> pd.DataFrame:
    """One row per cell. Throughput is total tokens / total seconds over the cell's examples."""
    frame = records_frame(records)
    if frame.empty:  # a run with no records yet (a cluster's jobs still queued): an empty table
        return pd.DataFrame(columns=[*CELL, "status", "n", "n_ok", "message", "metrics"])
    metric_cols = sorted(c for c in frame.columns if c.startswith("metric."))
    cell_records: dict[tuple[str, str, int], list[Record]] = {}
    for r in records:
        cell_records.setdefault((r.task, r.strategy, r.context_length), []).append(r)
    rows = []
    for (task, strategy, length), group in frame.groupby(CELL, sort=False):
        ok = group[group["status"] == "ok"]
        statuses = group["status"].value_counts().to_dict()
        status = next(s for s in SEVERITY if s in statuses)
        messages = group.loc[group["status"] != "ok", "message"]
        row = {
            "task": task,
            "strategy": strategy,
            "context_length": int(length),
            "status": status,
            "n": len(group),
            "n_ok": len(ok),
            "message": messages.iloc[0] if len(messages) else "",
            "input_tokens": ok["input_tokens"].mean() if len(ok) else None,
        }
        for col in metric_cols:
            row[col.removeprefix("metric.")] = ok[col].mean() if len(ok) and ok[col].notna().any() else None
        reported = [r.metrics for r in cell_records[(task, strategy, length)] if r.status == "ok" and r.metrics]
        row["metrics"] = METRIC_SEPARATOR.join(reported[0]) if reported else ""
        if len(ok):
            row.update(corpus_scores(task, ok))
            peak = ok["peak_mem_bytes"].dropna()
            row["peak_mem_mb"] = peak.max() / 2**20 if len(peak) else None
            for column in ("kv_peak", "kv_decode"):
                kv = ok[f"{column}_bytes"].dropna()
                row[f"{column}_mb"] = kv.max() / 2**20 if len(kv) and kv.max() > 0 else None
            cell = cell_records[(task, strategy, length)]
            promised = [r.extra["kv_promised_bytes"] for r in cell if r.status == "ok" and "kv_promised_bytes" in r.extra]
            row["kv_promised_mb"] = max(promised) / 2**20 if promised else None
            budgets = [r.extra["budget_tokens"] for r in cell if r.status == "ok" and "budget_tokens" in r.extra]
            row["budget_tokens"] = float(pd.Series(budgets).median()) if budgets else None  # KV tokens kept, as set
            row["prefill_tok_s"] = _ratio(ok["prefill_tokens"], ok["prefill_s"])
            row["decode_tok_s"] = _ratio(ok["decode_steps"], ok["decode_s"])
            row["latency_s"] = ok["latency_s"].mean()
            row.update(serving_times(ok))
            row["calls"] = ok["calls"].mean()
            row["tokens_processed"] = ok["tokens_processed"].mean()
        rows.append(row)
    summary = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(strategy_order)}
    summary["_order"] = summary["strategy"].map(lambda s: order.get(s, len(order)))
    return summary.sort_values(["task", "_order", "context_length"], kind="stable").drop(columns="_order").reset_index(drop=True)


def task_metrics(summary: pd.DataFrame, task: str) -> list[str]:
    """The task's quality columns, in the order the task reported them (headline first), then its
    corpus-level ones: what tables, plots and comparisons show for it."""
    rows = summary[summary["task"] == task]
    corpus = [c for c in rows.columns if c.startswith("corpus_") and rows[c].notna().any()]
    reported = next((m for m in rows.get("metrics", pd.Series(dtype=str)) if isinstance(m, str) and m), "")
    return [m for m in reported.split(METRIC_SEPARATOR) if m and m in summary.columns] + corpus

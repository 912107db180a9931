"""The report: `summary.csv` and `report.md`. It opens with the run's answer (where each strategy
breaks, the Pareto set, the best pick within the suite's budgets: `answer.py`), then one table
per metric (rows strategies, columns context lengths, the best of each column in bold, `full`
first as the reference row)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tabulate import tabulate

from lcbench.analysis.answer import Question
from lcbench.analysis.plots import plot_run
from lcbench.analysis.summary import COST, REFERENCE_STRATEGY, strategy_order, summarize, task_metrics
from lcbench.run.records import Record, write_atomic

if TYPE_CHECKING:
    from lcbench.run.run_dir import RunDir

PLOTS = "plots"
NO_PLOTS = "plots not drawn (LCBENCH_PLOTS=0): `lcbench report {run}` draws them"


def plots_wanted() -> bool:
    """Whether a report draws its PNGs: `LCBENCH_PLOTS=0` leaves them out, for runs whose tables
    are all that is read (a CI gate, a test): matplotlib takes about a third of a second a figure,
    four figures a task, often more than the cells of a short run."""
    return os.environ.get("LCBENCH_PLOTS", "1").strip().lower() not in ("0", "no", "off", "false")


def _cell_text(row: pd.Series | None, column: str, fmt: str) -> str:
    if row is None:
        return ""
    if row["status"] != "ok" and row["n_ok"] == 0:
        return str(row["status"])
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = format(value, fmt)
    return text if row["status"] == "ok" else f"{text} ({row['n_ok']}/{row['n']} ok)"


def metric_table(summary: pd.DataFrame, task: str, column: str, higher_is_better: bool, fmt: str) -> str:
    """Rows strategies, columns context lengths; the best value of each column in bold."""
    part = summary[summary["task"] == task]
    lengths = sorted(part["context_length"].unique())
    strategies = list(dict.fromkeys(part["strategy"]))
    cells = {(r["strategy"], r["context_length"]): r for _, r in part.iterrows()}
    best: dict[int, str] = {}  # compared as printed, so equal-looking figures are marked alike
    for length in lengths:
        values = [
            r[column]
            for s in strategies
            if (r := cells.get((s, length))) is not None
            and r["status"] == "ok"
            and r.get(column) is not None
            and not pd.isna(r.get(column))
        ]
        if len({format(v, fmt) for v in values}) > 1:  # a tie everywhere marks nothing
            best[length] = format(max(values) if higher_is_better else min(values), fmt)
    rows = []
    for s in strategies:
        row = [s]
        for length in lengths:
            r = cells.get((s, length))
            text = _cell_text(r, column, fmt)
            if r is not None and length in best and r["status"] == "ok" and text == best[length]:
                text = f"**{text}**"
            row.append(text)
        rows.append(row)
    return tabulate(rows, headers=["strategy", *map(str, lengths)], tablefmt="pipe", disable_numparse=True)


def tables(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """(title, markdown table) for every quality metric of every task, then every cost figure."""
    out = []
    for task in dict.fromkeys(summary["task"]):
        for metric in task_metrics(summary, task):
            out.append((f"{task}: {metric} (higher is better)", metric_table(summary, task, metric, True, ".3f")))
        rows = summary[summary["task"] == task]
        for column, (label, higher, fmt) in COST.items():
            if column in summary.columns and rows[column].notna().any():
                direction = "higher" if higher else "lower"
                out.append((f"{task}: {label} ({direction} is better)", metric_table(summary, task, column, higher, fmt)))
    return out


def environment_notes(env: dict[str, Any]) -> list[str]:
    models = env.get("models") or {}
    answered = f"model `{env.get('model')}`"
    if len(set(models.values())) > 1:  # `reference`: each task on the shipped model of its family
        answered += " (" + ", ".join(f"{task}: `{model}`" for task, model in models.items()) + ")"
    notes = [
        f"{answered} on `{env.get('device')}` ({env.get('gpu') or env.get('cpu')}), "
        f"torch {env.get('torch')}, transformers {env.get('transformers')}, lcbench {env.get('lcbench')}"
    ]
    device = str(env.get("device", ""))
    if not (device.startswith("cuda") or (device != "cpu" and env.get("cuda_available"))):
        notes.append(
            "peak memory is the peak of live tensor bytes allocated during each example, counted from the allocator "
            "(the strategy's own tensors, exact from run to run; the process's peak RSS rise is in each record's memory)"
        )
    else:
        view = "beside it" if env.get("nvml_available") else "not available here (no NVML)"
        notes.append(
            "peak memory is the GPU allocator's peak of allocated bytes above the level before each example "
            f"(the strategy's own tensors); NVML's per-process view (CUDA context and cached blocks included) is {view}"
        )
    return notes


def device_notes(records: Sequence[Record]) -> list[str]:
    """Where cells ran on more than one kind of GPU, their figures do not compare: said first."""
    kinds: dict[str, set[tuple[str, str]]] = {}
    for r in records:
        if r.gpu:
            kinds.setdefault(r.gpu, set()).add((r.task, r.strategy))
    if len(kinds) < 2:
        return []
    return [
        "**cells ran on different GPU types** ("
        + "; ".join(f"{gpu}: {len(cells)} task-strategy pairs" for gpu, cells in sorted(kinds.items()))
        + "): memory and speed compare only within one type"
    ]


NAMED_PATH_SHARE = "named_path_share"  # a record's extra: the share of its prefill attention calls on the path it names
NAMED_PATH_FLOOR = 0.9


def named_path_notes(records: Sequence[Record]) -> list[str]:
    """Cells whose strategy ran the attention path it names for under 90% of its prefill calls
    (`extra["named_path_share"]`, weighted by `extra["prefill_calls"]` where recorded): their
    times measure another path. One line per cell, in record order."""
    cells: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for r in records:
        if r.status == "ok" and NAMED_PATH_SHARE in r.extra:
            weight = float(r.extra.get("prefill_calls", 1.0))
            cells.setdefault((r.task, r.strategy, r.context_length), []).append((float(r.extra[NAMED_PATH_SHARE]), weight))
    notes = []
    for (task, strategy, length), shares in cells.items():
        total = sum(weight for _, weight in shares)
        share = sum(s * w for s, w in shares) / total if total else min(s for s, _ in shares)
        if share < NAMED_PATH_FLOOR:
            notes.append(
                f"**{task} · {strategy} · {length}: the attention path the strategy names ran {share:.1%} of its prefill "
                f"calls** (under {NAMED_PATH_FLOOR:.0%}): its prefill figures measure another path"
            )
    return notes


def promise_notes(summary: pd.DataFrame) -> list[str]:
    """Cells of a strategy that promises to keep less KV cache (`kv_promised_mb`) whose measured peak
    is not below `full`'s at the same task and length: the saving it promises is not one it delivers."""
    if "kv_promised_mb" not in summary.columns or "peak_mem_mb" not in summary.columns:
        return []
    references = summary[summary["strategy"] == REFERENCE_STRATEGY]
    full = {(r["task"], r["context_length"]): r["peak_mem_mb"] for _, r in references.iterrows()}
    notes = []
    for _, r in summary[summary["kv_promised_mb"].notna()].iterrows():
        reference = full.get((r["task"], r["context_length"]))
        if reference is not None and not pd.isna(r["peak_mem_mb"]) and r["peak_mem_mb"] >= reference:
            notes.append(
                f"**{r['task']} · {r['strategy']} · {r['context_length']}: peak {r['peak_mem_mb']:.1f} MB is not below "
                f"full's {reference:.1f} MB** though its method promises {r['kv_promised_mb']:.2f} MB of KV cache"
            )
    return notes


def noisy_notes(records: Sequence[Record], run_path: str = "RUN") -> list[str]:
    """Cells with examples whose timing is not to be trusted (`Record.noisy`: a slowed speed probe,
    a wide spread of repeats), said once per cell with how to measure them again."""
    cells: dict[tuple[str, str, int], list[str]] = {}
    for r in records:
        if r.status == "ok" and r.noisy:
            cells.setdefault((r.task, r.strategy, r.context_length), []).append(r.noisy)
    notes = [
        f"**noisy timing: {task} · {strategy} · {length}** ({len(reasons)} examples; {reasons[0]})"
        for (task, strategy, length), reasons in cells.items()
    ]
    if notes:
        notes.append(f"measure the noisy cells again on a quiet machine: `lcbench run --resume {run_path} --rerun noisy`")
    return notes


def render_markdown(
    summary: pd.DataFrame,
    env: dict[str, Any],
    plots: Sequence[str] = (),
    records: Sequence[Record] = (),
    answer_lines: Sequence[str] = (),
    run_path: str = "RUN",
    sampling: Sequence[str] = (),
    undrawn: bool = False,
) -> str:
    """`undrawn`: the plots were left out (`LCBENCH_PLOTS=0`), which the report says."""
    lines = [f"# lcbench report: {env.get('suite', '')}", ""]
    notes = device_notes(records) + named_path_notes(records) + noisy_notes(records, run_path) + promise_notes(summary)
    notes += environment_notes(env)
    lines += [f"- {note}" for note in notes]
    lines += ["- cells that did not run show their status (oom, error, unavailable, ...) instead of a number", ""]
    if answer_lines:
        lines += ["## The answer", "", *answer_lines]
    lines += sampling
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    elif undrawn:
        lines += ["## Plots", "", NO_PLOTS.format(run=run_path), ""]
    for title, table in tables(summary):
        lines += [f"## {title}", "", table, ""]
    problems = summary[summary["status"] != "ok"]
    if len(problems):
        lines += ["## Cells that did not run cleanly", ""]
        for _, r in problems.iterrows():
            lines.append(f"- {r['task']} · {r['strategy']} · {r['context_length']}: {r['status']}: {r['message']}")
        lines.append("")
    return "\n".join(lines)


def write_report(path: Path, run_dir: RunDir | None = None) -> pd.DataFrame:
    """(Re)write `summary.csv` and `report.md` in the run folder `path` from its records (those
    `run_dir` already read, where the caller has it)."""
    from lcbench.analysis.answer import answer, pareto_sets
    from lcbench.analysis.runs import Run
    from lcbench.analysis.undecided import sampling_lines
    from lcbench.run.run_dir import RunDir

    folder = run_dir or RunDir(path)
    records = folder.records()
    summary = summarize(records, strategy_order(records))
    write_atomic(path / "summary.csv", summary.to_csv(index=False))
    headline_metrics = {task: metrics[0] for task in dict.fromkeys(summary["task"]) if (metrics := task_metrics(summary, task))}
    run = Run(path, records, summary, folder.env)
    question = question_of(folder.suite_data) if (path / "suite.json").is_file() else Question()
    answered = answer(run, question) if len(summary) else []
    pareto = pareto_sets(run, question.tolerance) if len(summary) else {}
    drawn = bool(len(summary)) and plots_wanted()
    plots = plot_run(summary, headline_metrics, path / PLOTS, pareto, records) if drawn else []
    sampling = (folder.suite_data.get("sampling") if (path / "suite.json").is_file() else None) or {}
    adaptive = []
    if sampling:  # an adaptive run: what its rounds spent and what stays open
        adaptive = sampling_lines(run, sampling["min"], sampling["max"], question.budgets, question.threshold, question.lengths)
    plot_names = [f"{PLOTS}/{p.name}" for p in plots]
    markdown = render_markdown(
        summary, folder.env, plot_names, records, answered, str(path), adaptive, undrawn=bool(len(summary)) and not drawn
    )
    write_atomic(path / "report.md", markdown)
    return summary


def question_of(suite_data: dict[str, Any]) -> Question:
    """What the suite asks of its report (`recommend:`): the breaking threshold and its budgets."""
    from lcbench.config.suite import Recommend

    settings = Recommend.model_validate(suite_data.get("recommend") or {})
    return Question(settings.breaks_below, settings.budgets())


def headline(summary: pd.DataFrame) -> str:
    """The table printed at the end of a run: each cell's headline quality and its cost."""
    rows = []
    for _, r in summary.iterrows():
        metrics = task_metrics(summary, r["task"])
        quality = _cell_text(r, metrics[0], ".3f") if metrics else str(r["status"])
        rows.append(
            [r["task"], r["strategy"], r["context_length"], f"{metrics[0] if metrics else ''} {quality}".strip()]
            + [_cell_text(r, c, COST[c][2]) for c in ("peak_mem_mb", "prefill_tok_s", "decode_tok_s", "latency_s")]
        )
    headers = ["task", "strategy", "length", "quality", "peak MB", "prefill tok/s", "decode tok/s", "latency s"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)

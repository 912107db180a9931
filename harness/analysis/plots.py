"""PNG plots of a run, drawn from the summary (the records' one source): per task, quality, peak
memory, prefill and decode tok/s against context length (log-2 axis, one line per strategy), and
the frontier: quality against peak memory at each length, where the best trade-off sits at the
top left; and where strategies were set to the same KV budget (`budget_tokens`, or the same ratio),
their quality side by side per budget; for a task that says where its needle was (needle), the
score by needle depth and context length per strategy, as needle-in-a-haystack plots draw it. A
cell that did not run (oom, error, unavailable, ...) is marked with its status where its point
would be, never drawn as a zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lcbench.analysis.summary import COST
from lcbench.run.records import Record

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANELS = ("peak_mem_mb", "prefill_tok_s", "decode_tok_s")
MARKERS = "osD^v<>pXh*"
# The least span of a frontier axis, as a share of its scale. Peak memory of the same work moves by a
# few per cent from cell to cell (examples differ by some tokens, the allocator rounds up to its blocks,
# RSS keeps what malloc kept), and the tables print memory to 0.1 MB: an axis zoomed below a tenth of
# its value draws that noise as a spread of choices (3.73 to 3.76 MB filling a panel).
MIN_RELATIVE_SPAN = 0.1


def plot_run(
    summary: pd.DataFrame,
    headline: dict[str, str],
    out_dir: Path,
    pareto: dict[tuple[str, int], set[str]] | None = None,
    records: Sequence[Record] = (),
) -> list[Path]:
    """Write the plots of every task into `out_dir`; return their paths (relative names for markdown)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task, metric in headline.items():
        part = summary[summary["task"] == task]
        if part.empty:
            continue
        stem = re.sub(r"[^\w.-]", "-", task)  # `longbench/hotpotqa` names a file, not a folder
        written.append(plot_against_length(part, task, metric, out_dir / f"{stem}-by-length.png"))
        front = {length: names for (name, length), names in (pareto or {}).items() if name == task}
        spread = cost_ranges(records, task, "peak_mem_bytes")
        written.append(plot_frontier(part, task, metric, out_dir / f"{stem}-frontier.png", front=front, spread=spread))
        if "kv_decode_mb" in part and part["kv_decode_mb"].notna().any():  # the KV-compression trade-off
            spread = cost_ranges(records, task, "kv_decode_bytes")
            written.append(plot_frontier(part, task, metric, out_dir / f"{stem}-kv-frontier.png", "kv_decode_mb", spread=spread))
        if budget_groups(part):  # methods set to the same KV budget: compared at equal cost
            written.append(plot_budget_matched(part, task, metric, out_dir / f"{stem}-kv-budget.png"))
        depths = depth_frame(records, task, metric)
        if not depths.empty:  # a retrieval task that says where its needle was
            written.append(plot_depth(depths, task, metric, list(dict.fromkeys(part["strategy"])), out_dir / f"{stem}-depth.png"))
    return written


def depth_frame(records: Sequence[Record], task: str, metric: str) -> pd.DataFrame:
    """(strategy, context_length, depth, score) of the task's examples that ran and say their
    needle's depth (a share of the context: 0 at its start, 1 at its end)."""
    rows = [
        (r.strategy, r.context_length, float(r.metadata["depth"]), float(r.metrics[metric]))
        for r in records
        if r.task == task and r.status == "ok" and isinstance(r.metadata.get("depth"), (int, float)) and metric in r.metrics
    ]
    return pd.DataFrame(rows, columns=["strategy", "context_length", "depth", "score"])


def plot_depth(depths: pd.DataFrame, task: str, metric: str, strategies: list[str], path: Path) -> Path:
    """The needle-in-a-haystack picture: per strategy, the mean score by needle depth (rows, the
    context's start at the top) and context length (columns), one colour scale for all, side by side."""
    import matplotlib.pyplot as plt

    shown = [s for s in strategies if s in set(depths["strategy"])]
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), constrained_layout=True, squeeze=False)
    low, high = float(depths["score"].min()), float(depths["score"].max())
    image = None
    for ax, strategy in zip(axes.flat, shown):
        grid = depths[depths["strategy"] == strategy].pivot_table(index="depth", columns="context_length", values="score")
        image = ax.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=low, vmax=high if high > low else low + 1, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [str(int(c)) for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{d:.0%}" for d in grid.index])
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("needle depth")
        ax.set_title(strategy, fontsize="medium")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, label=f"{metric} (mean over examples)", shrink=0.8)
    fig.suptitle(f"{task}: {metric} by needle depth and context length", wrap=True)
    return save(fig, path)


def plot_against_length(part: pd.DataFrame, task: str, metric: str, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    columns = [(metric, f"{metric} (higher is better)")] + [(c, f"{COST[c][0]}") for c in PANELS]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for ax, (column, title) in zip(axes.flat, columns):
        for i, (strategy, rows) in enumerate(part.groupby("strategy", sort=False)):
            rows = rows.sort_values("context_length")
            good = rows[(rows["status"] == "ok") & rows[column].notna()] if column in rows else rows.iloc[0:0]
            label = strategy + failures(rows)
            line = ax.plot(good["context_length"], good[column], marker=MARKERS[i % len(MARKERS)], color=f"C{i}", label=label)[0]
            mark_failures(ax, rows, line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if column == "peak_mem_mb" and column in part and (part[column].dropna() > 0).all() and part[column].notna().any():
            ax.set_yscale("log")  # memory spans orders of magnitude between strategies
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(f"{task}: quality and cost against context length")
    return save(fig, path)


def failures(rows: pd.DataFrame) -> str:
    """` (unavailable at 256, 1024)`: what a strategy's legend entry says of its cells that did not run."""
    failed = rows[rows["status"] != "ok"]
    by_status = {status: ", ".join(str(int(x)) for x in group["context_length"]) for status, group in failed.groupby("status")}
    return "".join(f" ({status} at {lengths})" for status, lengths in by_status.items())


def mark_failures(ax: object, rows: pd.DataFrame, color: str) -> None:
    """An 'x' on the top edge of the panel at each length where the strategy's cell did not run
    (its legend entry says why): clear of the data, the axis labels and the other marks' text."""
    import matplotlib.pyplot as plt

    failed = rows[rows["status"] != "ok"]
    axis = ax if isinstance(ax, plt.Axes) else None
    if axis is None or failed.empty:
        return
    top = [1.0] * len(failed)
    axis.plot(failed["context_length"], top, "x", color=color, transform=axis.get_xaxis_transform(), clip_on=False, markersize=7)


FRONTIER_COSTS = {"peak_mem_mb": ("peak memory", "memory"), "kv_decode_mb": ("KV cache at decode", "KV cache bytes")}
Ranges = dict[tuple[str, int], tuple[float, float]]


def cost_ranges(records: Sequence[Record], task: str, field: str) -> Ranges:
    """(strategy, length) -> the lowest and highest MB of a per-example cost (`peak_mem_bytes`, ...)
    over the task's examples that ran: how far the same cell's measurement moves."""
    values: dict[tuple[str, int], list[float]] = {}
    for r in records:
        value = getattr(r, field)
        if r.task == task and r.status == "ok" and value:
            values.setdefault((r.strategy, r.context_length), []).append(value / 2**20)
    return {cell: (min(mb), max(mb)) for cell, mb in values.items()}


def plot_frontier(
    part: pd.DataFrame,
    task: str,
    metric: str,
    path: Path,
    cost: str = "peak_mem_mb",
    front: dict[int, set[str]] | None = None,
    spread: Ranges | None = None,
) -> Path:
    """`frontier_figure` written to `path`."""
    return save(frontier_figure(part, task, metric, cost, front, spread), path)


def frontier_figure(
    part: pd.DataFrame,
    task: str,
    metric: str,
    cost: str = "peak_mem_mb",
    front: dict[int, set[str]] | None = None,
    spread: Ranges | None = None,
) -> Figure:
    """Quality against a cost (peak memory, or the KV cache's bytes while decoding) at each length;
    the strategies of each length's Pareto set (`front`) ringed and joined by a dashed line; where
    `spread` gives a cell's per-example cost range, a bar across it. No axis spans less than
    `MIN_RELATIVE_SPAN` of its scale."""
    import matplotlib.pyplot as plt

    label, title = FRONTIER_COSTS[cost]
    lengths = sorted(part["context_length"].unique())
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 4), constrained_layout=True, squeeze=False)
    strategies = list(dict.fromkeys(part["strategy"]))
    bars = ""
    for ax, length in zip(axes[0], lengths):
        at = part[part["context_length"] == length]
        for i, strategy in enumerate(strategies):
            row = at[at["strategy"] == strategy]
            if row.empty:
                continue
            r = row.iloc[0]
            ok = r["status"] == "ok" and not _missing(r.get(metric)) and not _missing(r.get(cost))
            if ok:
                ax.scatter(r[cost], r[metric], marker=MARKERS[i % len(MARKERS)], s=60, color=f"C{i}", label=strategy)
                low, high = (spread or {}).get((strategy, int(length)), (r[cost], r[cost]))
                if high > low:
                    ax.plot([low, high], [r[metric]] * 2, "|-", color=f"C{i}", alpha=0.6, linewidth=1.5)
                    bars = "; bars: the examples' range"
        pareto = at[at["strategy"].isin((front or {}).get(length, set()))].dropna(subset=[cost, metric]).sort_values(cost)
        if len(pareto):
            ax.scatter(pareto[cost], pareto[metric], s=220, facecolors="none", edgecolors="black", linewidths=1.2)
            ax.plot(pareto[cost], pareto[metric], "--", color="black", alpha=0.5, linewidth=1)
        floor_span(ax, "x", sum(ax.get_xlim()) / 2)  # memory's resolution is relative to its own value
        floor_span(ax, "y", _largest(part, metric))  # quality keeps one scale at every length
        ax.set_xlabel(f"{label} (MB, lower is better)")
        ax.set_ylabel(f"{metric} (higher is better)")
        ax.set_title(f"{length} tokens")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small")
    ringed = "; ringed: the Pareto set over quality, memory and latency" if front else ""
    fig.suptitle(f"{task}: quality against {title} (best trade-off: top left{ringed}{bars})", fontsize="medium", wrap=True)
    return fig


def floor_span(ax: Axes, axis: str, scale: float) -> None:
    """Widen `ax`'s x or y axis about its centre to span at least `MIN_RELATIVE_SPAN` x |`scale`|."""
    limits, set_limits = (ax.get_xlim, ax.set_xlim) if axis == "x" else (ax.get_ylim, ax.set_ylim)
    low, high = limits()
    least = MIN_RELATIVE_SPAN * abs(scale)
    if high - low < least:
        centre = (low + high) / 2
        set_limits(centre - least / 2, centre + least / 2)


def _largest(part: pd.DataFrame, column: str) -> float:
    values = pd.to_numeric(part[column], errors="coerce").abs().dropna() if column in part else pd.Series(dtype=float)
    return float(values.max()) if len(values) else 0.0


def budget_groups(part: pd.DataFrame) -> dict[int, dict[int, pd.DataFrame]]:
    """length -> KV tokens kept -> the cells (two or more) whose strategies keep that many: the
    budget-matched comparisons of a run, read from each cell's `budget_tokens`."""
    if "budget_tokens" not in part:
        return {}
    ok = part[(part["status"] == "ok") & part["budget_tokens"].notna()]
    groups: dict[int, dict[int, pd.DataFrame]] = {}
    for (length, budget), cells in ok.groupby([ok["context_length"], ok["budget_tokens"].round()], sort=True):
        if cells["strategy"].nunique() >= 2:
            groups.setdefault(int(length), {})[int(budget)] = cells
    return groups


def plot_budget_matched(part: pd.DataFrame, task: str, metric: str, path: Path) -> Path:
    """Quality of the strategies that keep the same number of KV tokens, side by side per budget
    (one panel per length), each bar labelled with the KV cache it measured while decoding: at
    equal KV bytes, which method keeps what the task needs."""
    import matplotlib.pyplot as plt

    groups = budget_groups(part)
    strategies = list(dict.fromkeys(part["strategy"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), constrained_layout=True, squeeze=False)
    for ax, (length, by_budget) in zip(axes[0], groups.items()):
        for g, cells in enumerate(by_budget.values()):
            width = 0.8 / len(cells)
            for j, (_, r) in enumerate(cells.iterrows()):
                i = strategies.index(r["strategy"])
                x = g - 0.4 + width * (j + 0.5)
                value = 0.0 if _missing(r.get(metric)) else float(r[metric])
                ax.bar(x, value, width * 0.9, color=f"C{i}", label=r["strategy"])
                kv = r.get("kv_decode_mb")
                if not _missing(kv):
                    ax.annotate(f"{kv:.2f} MB", (x, value), ha="center", va="bottom", fontsize="x-small", rotation=90)
        ax.set_xticks(range(len(by_budget)), [f"{b} KV tokens" for b in by_budget])
        ax.set_ylabel(f"{metric} (higher is better)")
        ax.set_title(f"{length} tokens")
        ax.grid(True, axis="y", alpha=0.3)
    unique = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(unique.values(), unique.keys(), loc="outside right center", fontsize="small")
    fig.suptitle(f"{task}: quality at equal KV budgets (bars: KV cache at decode)", wrap=True)
    return save(fig, path)


def save(fig: object, path: Path) -> Path:
    """Write through a temporary file and rename, so that a reader never sees half a PNG."""
    import matplotlib.pyplot as plt

    temporary = path.with_name(f".{path.name}.tmp")
    fig.savefig(temporary, dpi=110, format="png")  # type: ignore[attr-defined]
    temporary.replace(path)
    plt.close(fig)  # type: ignore[arg-type]
    return path


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

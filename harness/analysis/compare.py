"""`lcbench compare RUN_A RUN_B [...]`: each run against the first, cell by cell.

Quality: the difference of the headline metric's means with a 95% bootstrap interval. Where
the runs scored the same examples (same ids), the bootstrap is paired (resampling examples,
each run's score of an example stays together), which removes the spread between examples;
otherwise each run is resampled on its own. A difference whose interval holds 0 is reported as
within noise. Time: prefill and decode tok/s as a ratio B / A, with the spread of the per-example
ratios; memory: the change in peak MB.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from lcbench.analysis.runs import CellId, Run, environment_differences, shared_cells
from lcbench.run.records import write_atomic

RESAMPLES = 2000


@dataclass(frozen=True)
class Difference:
    delta: float
    low: float
    high: float
    paired: bool

    @property
    def within_noise(self) -> bool:
        return self.low <= 0.0 <= self.high


def bootstrap_difference(
    a: dict[str, float], b: dict[str, float], seed: int = 0, resamples: int = RESAMPLES
) -> Difference | None:
    """mean(b) - mean(a) and its 95% interval; paired over shared example ids where there are any."""
    if not a or not b:
        return None
    rng = random.Random(seed)
    shared = sorted(set(a) & set(b))
    if shared:
        diffs = [b[k] - a[k] for k in shared]
        means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(resamples))
        delta, paired = sum(diffs) / len(diffs), True
    else:
        xs, ys = list(a.values()), list(b.values())
        means = sorted(
            sum(rng.choices(ys, k=len(ys))) / len(ys) - sum(rng.choices(xs, k=len(xs))) / len(xs) for _ in range(resamples)
        )
        delta, paired = sum(ys) / len(ys) - sum(xs) / len(xs), False
    return Difference(delta, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1], paired)


def compare_rows(a: Run, b: Run) -> list[dict[str, object]]:
    rows = []
    cells_a, cells_b = a.cells, b.cells
    for cell in shared_cells(a, b):
        ra, rb = cells_a[cell], cells_b[cell]
        row: dict[str, object] = {"task": cell.task, "strategy": cell.strategy, "context_length": cell.length, "run": str(b.path)}
        if ra["status"] != rb["status"]:
            row["status"] = f"{ra['status']} -> {rb['status']}"
        else:
            row["status"] = ra["status"]
        metric = a.headline(cell.task)
        if metric and ra["status"] == "ok" and rb["status"] == "ok":
            diff = bootstrap_difference(a.scores(cell, metric), b.scores(cell, metric))
            row.update({"metric": metric, "a": ra.get(metric), "b": rb.get(metric)})
            if diff is not None:
                row.update({"delta": diff.delta, "ci_low": diff.low, "ci_high": diff.high, "paired": diff.paired})
                row["verdict"] = "within noise" if diff.within_noise else ("better" if diff.delta > 0 else "worse")
            for column in ("prefill_tok_s", "decode_tok_s"):
                row[f"{column}_ratio"] = _ratio(rb.get(column), ra.get(column))
            row["latency_spread"] = _spread(a, b, cell)
            if ra.get("peak_mem_mb") is not None and rb.get("peak_mem_mb") is not None:
                row["peak_mem_delta_mb"] = float(rb["peak_mem_mb"]) - float(ra["peak_mem_mb"])
        rows.append(row)
    return rows


def _ratio(b: object, a: object) -> float | None:
    try:
        return float(b) / float(a) if a and b and float(a) > 0 else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _spread(a: Run, b: Run, cell: CellId) -> str:
    """The middle half (p25..p75) of per-example latency ratios B / A, where examples match."""
    la = {r.example_id: r.latency_s for r in a.records if (r.task, r.strategy, r.context_length) == cell and r.latency_s}
    lb = {r.example_id: r.latency_s for r in b.records if (r.task, r.strategy, r.context_length) == cell and r.latency_s}
    ratios = sorted(lb[k] / la[k] for k in set(la) & set(lb) if la[k])
    if not ratios:
        return ""
    return f"{ratios[len(ratios) // 4]:.2f}..{ratios[(3 * len(ratios)) // 4]:.2f}"


def render(rows: list[dict[str, object]], notes: list[str]) -> str:
    lines = ["# lcbench compare", ""] + [f"- {n}" for n in notes] + [""]
    table = []
    for r in rows:
        quality = ""
        if "delta" in r:
            interval = f"95% CI {r['ci_low']:+.3f}..{r['ci_high']:+.3f}"
            quality = f"{r['a']:.3f} -> {r['b']:.3f} ({r['delta']:+.3f}, {interval}, {r['verdict']})"
        table.append(
            [
                r["task"], r["strategy"], r["context_length"], r["status"], f"{r.get('metric', '')}", quality,
                _fmt(r.get("prefill_tok_s_ratio"), ".2fx"), _fmt(r.get("decode_tok_s_ratio"), ".2fx"),
                r.get("latency_spread", ""),
                _fmt(r.get("peak_mem_delta_mb"), "+.1f"),
            ]
        )  # fmt: skip
    headers = [
        "task",
        "strategy",
        "length",
        "status",
        "metric",
        "quality A -> B",
        "prefill B/A",
        "decode B/A",
        "latency B/A p25..p75",
        "peak MB B-A",
    ]
    lines.append(tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True))
    return "\n".join(lines) + "\n"


def _fmt(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return format(value, fmt.rstrip("x")) + ("x" if fmt.endswith("x") else "")


def compare(paths: list[Path], out: Path | None = None) -> str:
    """The comparison of every run with the first, as markdown; also compare.md and .csv in `out`."""
    runs = [Run.load(p) for p in paths]
    base = runs[0]
    notes = [f"A = `{base.path}`; quality intervals are 95% bootstrap intervals ({RESAMPLES} resamples)"]
    rows: list[dict[str, object]] = []
    for other in runs[1:]:
        differences = environment_differences(base, other)
        if differences:
            notes.append(f"`{other.path}` ran on a different machine or software: {'; '.join(differences)}")
        rows += compare_rows(base, other)
    text = render(rows, notes)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "compare.md", text)
        write_atomic(out / "compare.csv", pd.DataFrame(rows).to_csv(index=False))
    return text

"""A finished run read back for the analysis (`compare`, `regress`, `recommend`, the report's
answer): its records, summary and environment, and its cells by `CellId`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from lcbench.analysis.summary import strategy_order, summarize, task_metrics
from lcbench.errors import UserError
from lcbench.run.records import RECORDS, Record
from lcbench.run.run_dir import RunDir


class CellId(NamedTuple):
    """A cell as runs are compared: a task, a strategy label and a context length."""

    task: str
    strategy: str
    length: int


@dataclass
class Run:
    path: Path
    records: list[Record]
    summary: pd.DataFrame
    env: dict[str, Any]

    @classmethod
    def load(cls, path: Path, what: str = "run") -> Run:
        run_dir = RunDir(path)
        if not run_dir.records_path.is_file():
            raise UserError(f"{what} `{path}` has no {RECORDS}; give a folder written by `lcbench run`")
        try:
            records = run_dir.records()
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(
                f"{what} `{run_dir.records_path}` is corrupt ({exc}); rerun it or restore it from version control"
            ) from exc
        if not records:
            raise UserError(f"{what} `{run_dir.records_path}` holds no records; the run did not get to its first example")
        return cls(path, records, summarize(records, strategy_order(records)), run_dir.env)

    @property
    def suite(self) -> str:
        return self.records[0].suite

    @functools.cached_property
    def cells(self) -> dict[CellId, pd.Series]:
        """The summary's rows by cell, computed once (compare and regress look cells up often)."""
        return {CellId(r["task"], r["strategy"], int(r["context_length"])): r for _, r in self.summary.iterrows()}

    def headline(self, task: str) -> str | None:
        metrics = task_metrics(self.summary, task)
        return metrics[0] if metrics else None

    @functools.cached_property
    def ok_records(self) -> dict[CellId, list[Record]]:
        """Each cell's examples that ran, grouped once."""
        grouped: dict[CellId, list[Record]] = {}
        for r in self.records:
            if r.status == "ok":
                grouped.setdefault(CellId(r.task, r.strategy, r.context_length), []).append(r)
        return grouped

    def scores(self, cell: CellId, metric: str) -> dict[str, float]:
        """example id -> the metric, over the cell's ok examples."""
        return {r.example_id: r.metrics[metric] for r in self.ok_records.get(cell, []) if metric in r.metrics}

    def values(self, cell: CellId, metric: str) -> list[float]:
        """The metric of each of the cell's ok examples (repeated example ids each count)."""
        return [float(r.metrics[metric]) for r in self.ok_records.get(cell, []) if r.metrics.get(metric) is not None]


def shared_cells(a: Run, b: Run) -> list[CellId]:
    """Cells both runs hold, or a clear error saying what differs."""
    if a.suite != b.suite:
        raise UserError(f"`{a.path}` ran suite `{a.suite}` and `{b.path}` ran `{b.suite}`; compare runs of one suite")
    cells_a, cells_b = a.cells, b.cells
    shared = [c for c in cells_a if c in cells_b]
    if not shared:
        raise UserError(
            [
                f"`{a.path}` and `{b.path}` share no cells (task, strategy, length)",
                f"only in `{a.path}`: {', '.join(map(str, list(cells_a)[:8]))}",
                f"only in `{b.path}`: {', '.join(map(str, list(cells_b)[:8]))}",
            ]
        )
    return shared


def environment_differences(a: Run, b: Run) -> list[str]:
    """What differs between the machines and software of two runs, said up front."""
    keys = ("device", "gpu", "cpu", "torch", "transformers", "lcbench", "python", "model")
    return [f"{k}: {a.env.get(k)!r} vs {b.env.get(k)!r}" for k in keys if a.env.get(k) != b.env.get(k)]

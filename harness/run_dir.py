"""A finished run read back for comparison: its records, summary and environment, with every
problem (missing folder, no records, a corrupt line) a clear error instead of a traceback."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lcbench.errors import UserError
from lcbench.records import RECORDS, Record, read_records
from lcbench.report import strategy_order
from lcbench.summary import quality_metrics, summarize

Cell = tuple[str, str, int]  # (task, strategy label, context length)


@dataclass
class Run:
    path: Path
    records: list[Record]
    summary: pd.DataFrame
    env: dict[str, Any]

    @classmethod
    def load(cls, path: Path, what: str = "run") -> Run:
        records_path = path / RECORDS
        if not records_path.is_file():
            raise UserError(f"{what} `{path}` has no {RECORDS}; give a folder written by `lcbench run`")
        try:
            records = list(read_records(records_path))
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{what} `{records_path}` is corrupt ({exc}); rerun it or restore it from version control") from exc
        if not records:
            raise UserError(f"{what} `{records_path}` holds no records; the run did not get to its first example")
        env_path = path / "env.json"
        try:
            env = json.loads(env_path.read_text()) if env_path.is_file() else {}
        except ValueError as exc:
            raise UserError(f"{what} `{env_path}` is not valid JSON ({exc})") from exc
        return cls(path, records, summarize(records, strategy_order(records)), env)

    @property
    def suite(self) -> str:
        return self.records[0].suite

    @functools.cached_property
    def cells(self) -> dict[Cell, pd.Series]:
        """The summary's rows by cell, computed once (compare and regress look cells up often)."""
        return {(r["task"], r["strategy"], int(r["context_length"])): r for _, r in self.summary.iterrows()}

    def headline(self, task: str) -> str | None:
        metrics = quality_metrics(self.summary, self.records, task)
        return metrics[0] if metrics else None

    def scores(self, cell: Cell, metric: str) -> dict[str, float]:
        """example id -> the metric, over the cell's ok examples."""
        return {
            r.example_id: r.metrics[metric]
            for r in self.records
            if (r.task, r.strategy, r.context_length) == cell and r.status == "ok" and metric in r.metrics
        }


def shared_cells(a: Run, b: Run) -> list[Cell]:
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

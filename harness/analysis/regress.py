"""`lcbench regress --baseline DIR --run DIR`: the performance gate. Exits 1 when a cell got worse
than its tolerance and prints why, cell by cell; 0 when none did; 2 on bad input.

- status: a cell ok in the baseline must be ok in the run (an error or oom is a regression, and
  compared as a status, never as a number); a cell of the baseline missing from the run fails.
- quality: on a CPU both runs decode greedily and deterministically, so the headline metric must
  match within `quality` (default exactly); on a GPU the drop must be outside the 95% bootstrap
  interval and larger than `quality`.
- speed: latency and prefill tok/s are taken relative to `full` at the same length in the same
  run, so that the machine's own speed cancels out (shared CI machines vary by 2x), and compared
  with the baseline's relative figure within `throughput`.
- memory: peak memory may rise by `memory` relative plus `memory_slack_mb` absolute.
Tolerances come from the suite's `regress:` section, or the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lcbench.analysis.compare import bootstrap_difference
from lcbench.analysis.runs import CellId, Run, environment_differences, shared_cells
from lcbench.analysis.summary import REFERENCE_STRATEGY
from lcbench.config.suite import Regress
from lcbench.errors import UserError
from lcbench.run.run_dir import SUITE, RunDir


@dataclass(frozen=True)
class Finding:
    cell: CellId
    what: str

    def __str__(self) -> str:
        task, strategy, length = self.cell
        return f"{task} · {strategy} · {length}: {self.what}"


def tolerances(run: Run, overrides: dict[str, float | None]) -> Regress:
    try:
        base = Regress(**RunDir(run.path).suite_data.get("regress", {}))
    except (ValueError, TypeError) as exc:
        raise UserError(f"`{run.path / SUITE}`: its `regress` tolerances are not valid ({exc})") from exc
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def relative(cells: dict[CellId, pd.Series], cell: CellId, column: str) -> float | None:
    """The cell's figure divided by `full`'s at the same task and length, in the same run."""
    reference = cells.get(CellId(cell.task, REFERENCE_STRATEGY, cell.length))
    mine = cells.get(cell)
    if reference is None or mine is None or reference["status"] != "ok" or mine["status"] != "ok":
        return None
    a, b = mine.get(column), reference.get(column)
    if a is None or b is None or pd.isna(a) or pd.isna(b) or not b:
        return None
    return float(a) / float(b)


def check_cell(base: Run, run: Run, cell: CellId, limits: Regress, deterministic: bool) -> list[Finding]:
    was, now = base.cells[cell], run.cells[cell]
    if was["status"] == "ok" and now["status"] != "ok":
        return [Finding(cell, f"status ok -> {now['status']}: {now['message']}")]
    if was["status"] != "ok" or now["status"] != "ok":
        return []  # not ok in the baseline: nothing to hold it to
    found = []
    metric = base.headline(cell.task)
    if metric is not None and not pd.isna(was.get(metric)) and pd.isna(now.get(metric)):
        found.append(Finding(cell, f"{metric} {float(was[metric]):.4f} -> missing"))
    elif metric is not None and not pd.isna(was.get(metric)):
        before, after = float(was[metric]), float(now[metric])
        if deterministic and before - after > limits.quality + 1e-9:
            found.append(
                Finding(cell, f"{metric} {before:.4f} -> {after:.4f} (deterministic CPU run; tolerance {limits.quality})")
            )
        if not deterministic:
            diff = bootstrap_difference(base.scores(cell, metric), run.scores(cell, metric))
            if diff is not None and diff.high < 0 and -diff.delta > limits.quality:
                found.append(
                    Finding(cell, f"{metric} {before:.4f} -> {after:.4f}, 95% CI of the change {diff.low:+.4f}..{diff.high:+.4f}")
                )
    if cell.strategy != REFERENCE_STRATEGY:
        for column, higher_is_better in (("latency_s", False), ("prefill_tok_s", True)):
            b, r = relative(base.cells, cell, column), relative(run.cells, cell, column)
            if b is None or r is None:
                continue
            worse = r < b * (1 - limits.throughput) if higher_is_better else r > b * (1 + limits.throughput)
            if worse:
                found.append(Finding(cell, f"{column} relative to full {b:.2f} -> {r:.2f} (tolerance {limits.throughput:.0%})"))
    before_mb, after_mb = was.get("peak_mem_mb"), now.get("peak_mem_mb")
    if before_mb is not None and after_mb is not None and not (math.isnan(before_mb) or math.isnan(after_mb)):
        if after_mb > before_mb * (1 + limits.memory) + limits.memory_slack_mb:
            found.append(
                Finding(
                    cell,
                    f"peak memory {before_mb:.1f} -> {after_mb:.1f} MB "
                    f"(tolerance {limits.memory:.0%} + {limits.memory_slack_mb} MB)",
                )
            )
    return found


def regress(baseline: Path, run_path: Path, overrides: dict[str, float | None]) -> tuple[list[Finding], list[str]]:
    """(regressions, notes)."""
    base = Run.load(baseline, "baseline")
    run = Run.load(run_path, "run")
    limits = tolerances(run, overrides)
    shared = shared_cells(base, run)
    findings = [Finding(c, "missing from the run") for c in base.cells if c not in run.cells]
    deterministic = str(base.env.get("device", "cpu")).startswith("cpu") and str(run.env.get("device", "cpu")).startswith("cpu")
    for cell in shared:
        findings += check_cell(base, run, cell, limits, deterministic)
    notes = [f"{len(shared)} cells compared; tolerances {limits.model_dump()}"]
    differences = environment_differences(base, run)
    if differences:
        notes.append(
            "baseline and run differ in: "
            + "; ".join(differences)
            + " (speed is compared relative to full, which absorbs the machine)"
        )
    return findings, notes

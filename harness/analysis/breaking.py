"""Where a strategy breaks: the first measured length at which its headline quality falls below
`threshold` (90% by default) of its own quality at the shortest length, with a bootstrap interval
over examples on that ratio.

A length is a break only when the whole interval lies below the threshold, and held only when the
whole interval lies at or above it; otherwise the sample cannot say, and the verdict names the
examples per cell that would settle it. A cell that ran out of memory or time breaks there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lcbench.analysis.intervals import Interval, examples_to_settle, mean_interval, ratio_interval

if TYPE_CHECKING:
    from lcbench.analysis.runs import Run

THRESHOLD = 0.9
FAILED = ("oom", "timeout", "error")  # a cell that could not finish: the strategy breaks there


@dataclass(frozen=True)
class Breaking:
    task: str
    strategy: str
    verdict: str  # breaks, holds, unsure, no quality, failed, unavailable
    base_length: int | None = None
    base: Interval | None = None  # quality at the shortest length
    length: int | None = None  # breaks: where; unsure: the first length the sample cannot settle
    ratio: Interval | None = None  # quality at `length` / `base`
    status: str = "ok"  # breaks: the cell's status where it did not finish
    broken_by: int | None = None  # unsure: a later length where it surely breaks
    settle: int | None = None  # unsure: examples per cell that would settle it
    longest: int | None = None  # the longest length measured

    def cell(self) -> str:
        """The table's short form: `1024`, `holds`, `1024?`."""
        if self.verdict == "breaks":
            return f"{self.length}" + (f" ({self.status})" if self.status != "ok" else "")
        if self.verdict == "unsure":
            return f"{self.length}?" + (f" (by {self.broken_by})" if self.broken_by else "")
        return {"holds": f"holds to {self.longest}"}.get(self.verdict, self.verdict)

    def sentence(self, threshold: float = THRESHOLD) -> str:
        share = f"{threshold:.0%} of its quality at {self.base_length}"
        if self.verdict == "breaks" and self.status != "ok":
            return f"{self.strategy} breaks at {self.length}: {self.status}"
        if self.verdict == "breaks" and self.ratio is not None:
            return f"{self.strategy} breaks at {self.length}: {self.ratio.text('.0%')} of its quality at {self.base_length}"
        if self.verdict == "holds":
            return f"{self.strategy} holds to the longest length measured ({self.longest}), above {share}"
        if self.verdict == "unsure" and self.ratio is not None:
            settle = f"about {self.settle} examples per cell would settle it" if self.settle else "more examples would settle it"
            later = f"; it surely breaks by {self.broken_by}" if self.broken_by else ""
            return (
                f"{self.strategy}: not measurable at {self.length} with {self.ratio.n} examples "
                f"({self.ratio.text('.0%')} of its quality at {self.base_length}, around the {threshold:.0%} line; "
                f"{settle}){later}"
            )
        if self.verdict == "no quality":
            return f"{self.strategy} scores 0 at {self.base_length}: it has no quality to lose"
        if self.verdict == "failed":
            return f"{self.strategy} did not run at its shortest length ({self.status})"
        return f"{self.strategy} is unavailable here"


def breaking_lengths(run: Run, threshold: float = THRESHOLD) -> list[Breaking]:
    """One verdict per task and strategy of the run, in the report's order."""
    out = []
    for (task, strategy), rows in run.summary.groupby(["task", "strategy"], sort=False):
        metric = run.headline(str(task))
        cells = [(int(r["context_length"]), str(r["status"]), int(r["n_ok"])) for _, r in rows.iterrows()]
        values = {length: run.values((str(task), str(strategy), length), metric) for length, _, _ in cells} if metric else {}
        out.append(verdict(str(task), str(strategy), sorted(cells), values, threshold))
    return out


def verdict(
    task: str, strategy: str, cells: list[tuple[int, str, int]], values: dict[int, list[float]], threshold: float
) -> Breaking:
    """`cells`: (length, status, ok examples) ascending; `values`: the headline metric per length."""
    ran = [c for c in cells if c[1] not in ("unavailable", "skipped", "lost")]  # lost: nothing said of the strategy
    if not ran:
        return Breaking(task, strategy, "unavailable")
    longest = ran[-1][0]
    (base_length, base_status, base_ok), rest = ran[0], ran[1:]
    base = mean_interval(values.get(base_length, []))
    if base_ok == 0 or base is None:
        return Breaking(task, strategy, "failed", base_length, status=base_status, longest=longest)
    if base.value <= 0:
        return Breaking(task, strategy, "no quality", base_length, base, longest=longest)
    unsure: Breaking | None = None
    for length, status, ok in rest:
        ratio = ratio_interval(values.get(length, []), values[base_length])
        if ok == 0 or ratio is None:
            if status in FAILED:
                return surely_broken(
                    unsure, Breaking(task, strategy, "breaks", base_length, base, length, status=status, longest=longest)
                )
            continue
        if ratio.high < threshold:
            return surely_broken(unsure, Breaking(task, strategy, "breaks", base_length, base, length, ratio, longest=longest))
        if ratio.low < threshold and unsure is None:
            unsure = Breaking(
                task,
                strategy,
                "unsure",
                base_length,
                base,
                length,
                ratio,
                settle=examples_to_settle(ratio, threshold),
                longest=longest,
            )
    return unsure or Breaking(task, strategy, "holds", base_length, base, longest=longest)


def surely_broken(unsure: Breaking | None, broken: Breaking) -> Breaking:
    """A sure break after an unsure length: the verdict stays unsure, bounded by the break."""
    if unsure is None:
        return broken
    return Breaking(**{**unsure.__dict__, "broken_by": broken.length})

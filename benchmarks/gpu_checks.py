"""PASS/FAIL/SKIP checks over the records of a `benchmarks/gpu_check.sh` run: does lcbench's GPU
path measure what it should?

    python benchmarks/gpu_checks.py RUN_DIR                  # RUN_DIR/records.jsonl, or the newest RUN_DIR/*/records.jsonl
    python benchmarks/gpu_checks.py RUN_DIR --cpu-dry-run    # relax what cannot hold on a CPU at tiny sizes, and say so

One line per check, `PASS name: detail`, `FAIL ...` or `SKIP ...`; exit 1 when any check FAILs.
A CPU dry run measures peaks at 256 and 512 tokens on a tiny model, where noise outweighs what a
cell allocates (and a peak can be zero): the memory checks still run there, and print
`SKIP (cpu dry run)` with the values where they do not hold, instead of FAIL.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lcbench.run.records import RECORDS, Record, read_records

MiB = 1 << 20
DRY = "SKIP (cpu dry run)"
NAMED_PATH_SHARE = "named_path_share"  # in a record's `extra`: the share of its prefill calls on the path it names
NAMED_PATH_FLOOR = 0.9  # below this the report says a cell's prefill figures measure another path


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # PASS, FAIL, SKIP or SKIP (cpu dry run)
    detail: str

    def line(self) -> str:
        return f"{self.verdict} {self.name}: {self.detail}"

    @property
    def failed(self) -> bool:
        return self.verdict == "FAIL"


def relaxed(name: str, ok: bool, detail: str, cpu_dry_run: bool, why: str) -> Check:
    """PASS when `ok`; otherwise FAIL, or on a CPU dry run SKIP with the reason it cannot hold there."""
    if ok:
        return Check(name, "PASS", detail)
    return Check(name, DRY, f"{detail} ({why})") if cpu_dry_run else Check(name, "FAIL", detail)


def mb(value: int | None) -> str:
    return "none" if value is None else f"{value / MiB:.1f} MB"


def bounded(record: Record) -> bool:
    """Strategies whose peak does not grow with the context: truncation, blockwise, sparse sink_window."""
    if record.strategy_name in ("truncation", "blockwise"):
        return True
    return record.strategy_name == "sparse" and record.params.get("pattern", "sink_window") == "sink_window"


def named_path(record: Record) -> str | None:
    """The path a triton or flex cell names (`triton`, `flex`), else None."""
    if record.strategy_name == "triton_fused":
        return "triton"
    if record.strategy_name == "sparse" and record.params.get("path", "blocks") == "flex":
        return "flex"
    return None


def cell_peaks(records: Iterable[Record]) -> dict[tuple[str, str, int], int]:
    """(task, strategy label, length) -> the cell's peak (max over its ok examples with a peak)."""
    peaks: dict[tuple[str, str, int], int] = {}
    for r in records:
        if r.status == "ok" and r.peak_mem_bytes is not None:
            key = (r.task, r.strategy, r.context_length)
            peaks[key] = max(peaks.get(key, 0), r.peak_mem_bytes)
    return peaks


def check_records_present(records: Sequence[Record]) -> Check:
    if not records:
        return Check("records", "FAIL", "no records: the run wrote nothing")
    cells = {(r.task, r.strategy, r.context_length) for r in records}
    return Check("records", "PASS", f"{len(records)} records in {len(cells)} cells")


def check_no_error(records: Sequence[Record]) -> Check:
    errors = [r for r in records if r.status == "error"]
    if not errors:
        return Check("no-error", "PASS", f"none of {len(records)} records has status error")
    shown = "; ".join(f"{r.task}/{r.strategy}@{r.context_length}: {r.message[:160]}" for r in errors[:3])
    return Check("no-error", "FAIL", f"{len(errors)} records with status error: {shown}")


def check_every_cell_ran(records: Sequence[Record]) -> Check:
    """Every record ok: an `unavailable` triton cell or a `timeout` means part of the path did not run."""
    bad = Counter((r.strategy, r.status) for r in records if r.status != "ok")
    if not bad:
        return Check("every-cell-ran", "PASS", f"all {len(records)} records have status ok")
    shown = ", ".join(f"{strategy} {status} x{n}" for (strategy, status), n in sorted(bad.items()))
    first = next(r for r in records if r.status != "ok")
    return Check("every-cell-ran", "FAIL", f"{shown}; first: {first.strategy}@{first.context_length}: {first.message[:160]}")


def check_nonzero_peak(records: Sequence[Record], cpu_dry_run: bool) -> Check:
    ok = [r for r in records if r.status == "ok"]
    zero = [r for r in ok if not r.peak_mem_bytes]
    if not ok:
        return Check("nonzero-peak", "FAIL", "no ok records to check")
    detail = (
        f"all {len(ok)} ok records have a nonzero peak_mem_bytes"
        if not zero
        else f"{len(zero)} of {len(ok)} ok records have no or a zero peak_mem_bytes: "
        + ", ".join(f"{r.task}/{r.strategy}@{r.context_length}" for r in zero[:6])
    )
    return relaxed("nonzero-peak", not zero, detail, cpu_dry_run, "a CPU headline peak can be zero at tiny sizes")


def check_full_grows(records: Sequence[Record], cpu_dry_run: bool) -> Check:
    peaks = cell_peaks(records)
    lengths = sorted({r.context_length for r in records})
    tasks = sorted({r.task for r in records})
    problems, shown = [], []
    for task in tasks:
        series = [(n, peaks.get((task, "full", n))) for n in lengths]
        shown.append(f"{task}: " + " -> ".join(f"{mb(p)}@{n}" for n, p in series))
        missing = [n for n, p in series if p is None]
        if missing:
            problems.append(f"{task}: full has no ok peak at {', '.join(map(str, missing))}")
            continue
        values = [p for _, p in series if p is not None]
        if len(values) < 2:
            problems.append(f"{task}: one length only, nothing to compare")
        elif any(b <= a for a, b in zip(values, values[1:])):
            problems.append(f"{task}: full's peak does not grow with length")
    detail = "; ".join(problems + shown)
    return relaxed("full-peak-grows", not problems, detail, cpu_dry_run, "CPU peaks at 256-512 tokens are noise")


def _full_above(records: Sequence[Record], name: str, chosen: list[Record], cpu_dry_run: bool) -> Check:
    peaks = cell_peaks(records)
    longest = max(r.context_length for r in records)
    labels = sorted({(r.task, r.strategy) for r in chosen})
    if not labels:
        return Check(name, "FAIL", "the run has none of these strategies")
    problems, shown = [], []
    for task, label in labels:
        full, other = peaks.get((task, "full", longest)), peaks.get((task, label, longest))
        if full is None or other is None:
            problems.append(f"{task}: no ok peak at {longest} for {'full' if full is None else label}")
            continue
        shown.append(f"{task}/{label} {mb(other)}")
        if other >= full:
            problems.append(f"{task}: {label} {mb(other)} >= full {mb(full)}")
    full_peaks = ", ".join(f"{t} {mb(peaks.get((t, 'full', longest)))}" for t in sorted({t for t, _ in labels}))
    detail = f"at {longest}: full {full_peaks}; " + "; ".join(problems or shown)
    return relaxed(name, not problems, detail, cpu_dry_run, "CPU peaks at 256-512 tokens are noise")


def check_full_above_bounded(records: Sequence[Record], cpu_dry_run: bool) -> Check:
    """At the longest length, full's peak above truncation's, blockwise's and sparse sink_window's."""
    return _full_above(records, "full-above-bounded", [r for r in records if bounded(r)], cpu_dry_run)


def check_full_above_kv_compression(records: Sequence[Record], cpu_dry_run: bool) -> Check:
    """At the longest length, full's peak above every kv_compression cell's. A separate line: these
    methods prefill the whole cache before cutting it, so their peak is the one most likely to
    reach full's."""
    chosen = [r for r in records if r.strategy_name == "kv_compression"]
    return _full_above(records, "full-above-kv_compression", chosen, cpu_dry_run)


def check_named_path(records: Sequence[Record]) -> Check:
    """In the triton and flex cells, the named path ran: `extra[named_path_share]` (the share of a
    record's prefill calls on the path its strategy names) at least NAMED_PATH_FLOOR, over at least
    one prefill call where `extra[prefill_calls]` is recorded. SKIP where no record carries the share."""
    cells = [r for r in records if named_path(r) is not None]
    if not cells:
        return Check("named-path", "FAIL", "the run has no triton_fused or sparse path=flex cells")
    ok = [r for r in cells if r.status == "ok"]
    shares: dict[tuple[str, str], list[float]] = defaultdict(list)
    problems = []
    for r in ok:
        if NAMED_PATH_SHARE not in r.extra:
            continue
        shares[(r.strategy, str(named_path(r)))].append(float(r.extra[NAMED_PATH_SHARE]))
        if r.extra.get("prefill_calls", 1.0) <= 0:
            problems.append(f"{r.task}/{r.strategy}@{r.context_length}: no prefill call, so its share says nothing")
    if not shares:
        return Check("named-path", "SKIP", f"no record carries extra[{NAMED_PATH_SHARE!r}] ({len(ok)} ok triton/flex records)")
    missing = [r for r in ok if NAMED_PATH_SHARE not in r.extra]
    problems += [
        f"{label}: {path} ran {min(v):.0%} of the prefill calls at its lowest (under {NAMED_PATH_FLOOR:.0%})"
        for (label, path), v in sorted(shares.items())
        if min(v) < NAMED_PATH_FLOOR
    ]
    if missing:
        problems.append(f"{len(missing)} ok triton/flex records lack {NAMED_PATH_SHARE}")
    shown = ", ".join(
        f"{label} ({path}) share >= {min(v):.2f} over {len(v)} records" for (label, path), v in sorted(shares.items())
    )
    if problems:
        return Check("named-path", "FAIL", "; ".join(problems) + f"; {shown}")
    return Check("named-path", "PASS", shown)


def run_checks(records: Sequence[Record], cpu_dry_run: bool = False) -> list[Check]:
    """Every check, in order; with no records, the one that says so (the rest have nothing to read)."""
    first = check_records_present(records)
    if first.failed:
        return [first]
    return [
        first,
        check_no_error(records),
        check_every_cell_ran(records),
        check_nonzero_peak(records, cpu_dry_run),
        check_full_grows(records, cpu_dry_run),
        check_full_above_bounded(records, cpu_dry_run),
        check_full_above_kv_compression(records, cpu_dry_run),
        check_named_path(records),
    ]


def find_records(path: Path) -> Path:
    """`path/records.jsonl`, else the newest `path/*/records.jsonl` (what `lcbench run --out path` wrote)."""
    if path.is_file():
        return path
    if (path / RECORDS).is_file():
        return path / RECORDS
    found = sorted(path.glob(f"*/{RECORDS}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else path / RECORDS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder, its records.jsonl, or the --out folder holding one run")
    parser.add_argument("--cpu-dry-run", action="store_true", help="a CPU run at tiny sizes: relax the memory checks, and say so")
    args = parser.parse_args(argv)
    path = find_records(args.run)
    if not path.is_file():
        print(f"FAIL records: no {RECORDS} under {args.run}")
        return 1
    records = list(read_records(path))
    print(f"checks over {path}{' (cpu dry run)' if args.cpu_dry_run else ''}")
    checks = run_checks(records, args.cpu_dry_run)
    for check in checks:
        print(check.line())
    failed = sum(c.failed for c in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks did not fail" + (f"; {failed} FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

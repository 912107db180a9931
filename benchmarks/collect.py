"""What merging a cluster run's records costs as the sweep grows: a run folder of `--records`
records (one per example: 100 strategies x 10 lengths x the samples that make the count) spread
over `--shards` part files, as a Slurm array's shards leave it, merged by `collect_run` (what
`lcbench collect` and the waiting driver do), then the report written from it. Prints the
seconds, the bytes and the peak memory of each step.

    python benchmarks/collect.py                       # 100,000 records in 100 shards
    python benchmarks/collect.py --records 10000 --shards 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

LENGTHS = 10


def build(folder: Path, records: int, shards: int, strategies: int = 100) -> Path:
    """A run folder whose jobs all completed: suite.json, env.json, slurm/jobs.json and the parts."""
    from lcbench.config.plan import plan
    from lcbench.config.suite import validate
    from lcbench.run.run_dir import RunDir
    from lcbench.run.runner import cell_record

    samples = max(1, records // (strategies * LENGTHS))
    data = {
        "name": "scale",
        "model": "reference",
        "context_lengths": [1024 * (i + 1) for i in range(LENGTHS)],
        "samples": samples,
        "tasks": [{"name": "needle"}],
        "strategies": [{"name": "truncation", "label": f"t{i}", "params": {"budget": 64 + i}} for i in range(strategies)],
    }
    suite = validate(data)
    run_dir = RunDir.create(folder, "scale")
    run_dir.write_suite(suite.model_dump_json(indent=2))
    run_dir.write_env({"suite_hash": "", "executor": "slurm"})
    run_dir.append([])
    cells = plan(suite, "")
    jobs = []
    per_shard = -(-len(cells) // shards)
    for s in range(shards):
        part = run_dir.part(f"s1-{s:04d}")
        mine = cells[s * per_shard : (s + 1) * per_shard]
        lines = []
        for cell in mine:
            for i in range(samples):
                record = replace(
                    cell_record(suite, cell, i, "ok", ""),
                    prediction="the answer is 42",
                    references=["42"],
                    metrics={"exact_match": 1.0, "contains": 1.0},
                    input_tokens=cell.length,
                    calls=1,
                    prefill_tokens=cell.length,
                    decode_tokens=8,
                    prefill_s=0.01,
                    decode_s=0.02,
                    latency_s=0.03,
                    repeats=1,
                    peak_mem_bytes=1 << 20,
                    memory={"rss_rise_bytes": 1 << 21, "counted": "tensor_bytes"},
                    host="node-17",
                    node=f"slurm job 1_{s}",
                )
                lines.append(record.to_json() + "\n")
        part.write_text("".join(lines))
        jobs.append({"shard": part.stem, "job_id": f"1_{s}", "part": str(part), "cells": [c.key for c in mine]})
    (run_dir.path / "slurm").mkdir()
    info = {"cluster": "slurm", "folder": str(run_dir.path / "slurm"), "submission": 1, "jobs": jobs}
    (run_dir.path / "slurm" / "jobs.json").write_text(json.dumps(info))
    return run_dir.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--strategies", type=int, default=100, help="strategies in the suite (x 10 lengths: its cells)")
    args = parser.parse_args()

    from rich.console import Console

    from lcbench.analysis.report import write_report
    from lcbench.run.run_dir import RunDir
    from lcbench.run.slurm_engine import collect_run

    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp), args.records, args.shards, args.strategies)
        parts = sum(p.stat().st_size for p in (path / "parts").glob("*.jsonl"))
        start = time.perf_counter()
        added = collect_run(RunDir(path), console=Console(stderr=True, quiet=True))
        merged = time.perf_counter() - start
        start = time.perf_counter()
        write_report(path)
        reported = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = (path / "records.jsonl").stat().st_size
    print("| records | shards | part files | merge (collect) | records.jsonl | report | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {added:,} | {args.shards:,} | {parts / 1e6:.0f} MB | {merged:.1f} s | {size / 1e6:.0f} MB "
        f"| {reported:.1f} s | {peak:.0f} MB |"
    )


if __name__ == "__main__":
    main()

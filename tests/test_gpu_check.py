"""`benchmarks/gpu_check.sh`: its CPU dry run end to end (every step and check, tiny sizes), and
`benchmarks/gpu_checks.py` on hand-made records (what it passes, fails and skips)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import ROOT
from lcbench.run.records import Record

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["install", "env", "model", "validate", "run", "tests", "attention", "triton", "checks"]
VERDICT = re.compile(r"^(PASS|FAIL|SKIP)\b")


def load_checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_checks", ROOT / "benchmarks" / "gpu_checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


checks = load_checks()
MB = 1 << 20


def record(strategy: str, length: int, peak_mb: float, name: str = "", status: str = "ok", **fields) -> Record:
    return Record(
        suite="gpu-check", task="needle", strategy=strategy, strategy_name=name or strategy, params=fields.pop("params", {}),
        context_length=length, example_id=f"needle-{length}-0", cell_key=f"{strategy}-{length}", status=status,  # type: ignore[arg-type]
        peak_mem_bytes=int(peak_mb * MB), **fields,
    )  # fmt: skip


def healthy(share: float | None = 1.0) -> list[Record]:
    """A GPU run as it should be: full grows and tops every bounded strategy at 32k; the named paths ran."""
    extra = {} if share is None else {"named_path_share": share, "prefill_calls": 4.0}
    rows = [record("full", n, mb) for n, mb in ((4096, 300), (16384, 1200), (32768, 2400))]
    for n in (4096, 16384, 32768):
        rows += [
            record("truncation-2048", n, 150, "truncation", params={"budget": 2048}),
            record("blockwise-2048", n, 160, "blockwise", params={"block_tokens": 2048}),
            record("sparse-blocks", n, 200, "sparse", params={"pattern": "sink_window", "path": "blocks"}),
            record("sparse-flex", n, 210, "sparse", params={"pattern": "sink_window", "path": "flex"}, extra=dict(extra)),
            record("triton_fused", n, 190, "triton_fused", params={"pattern": "sink_window"}, extra=dict(extra)),
            record("snapkv-50%", n, 0.8 * {4096: 300, 16384: 1200, 32768: 2400}[n], "kv_compression"),
        ]
    return rows


def verdicts(records: list[Record], cpu_dry_run: bool = False) -> dict[str, str]:
    return {c.name: c.verdict for c in checks.run_checks(records, cpu_dry_run)}


def test_a_healthy_gpu_run_passes_every_check():
    assert set(verdicts(healthy()).values()) == {"PASS"}


def test_full_whose_peak_does_not_grow_fails_on_a_gpu_and_is_skipped_on_a_cpu_dry_run():
    rows = [r for r in healthy() if not (r.strategy == "full" and r.context_length == 16384)]
    rows.append(record("full", 16384, 250))  # below its 4k peak
    assert verdicts(rows)["full-peak-grows"] == "FAIL"
    assert verdicts(rows, cpu_dry_run=True)["full-peak-grows"] == "SKIP (cpu dry run)"


def test_an_error_record_fails():
    rows = [*healthy(), record("blockwise-2048", 32768, 0, "blockwise", status="error", message="CUDA error: illegal access")]
    found = {c.name: c for c in checks.run_checks(rows)}
    assert found["no-error"].verdict == "FAIL" and "illegal access" in found["no-error"].detail
    assert found["every-cell-ran"].verdict == "FAIL"
    assert verdicts(rows, cpu_dry_run=True)["no-error"] == "FAIL"  # never relaxed


def test_a_bounded_strategy_at_or_above_full_at_the_longest_length_fails():
    rows = [*healthy(), record("sparse-blocks", 32768, 2500, "sparse", params={"pattern": "sink_window", "path": "blocks"})]
    assert verdicts(rows)["full-above-bounded"] == "FAIL"
    rows = [*healthy(), record("snapkv-50%", 32768, 2600, "kv_compression")]
    found = verdicts(rows)
    assert found["full-above-kv_compression"] == "FAIL" and found["full-above-bounded"] == "PASS"


def test_zero_peaks_fail_on_a_gpu_and_are_skipped_on_a_cpu_dry_run():
    rows = [*healthy(), record("truncation-2048", 4096, 0, "truncation")]
    assert verdicts(rows)["nonzero-peak"] == "FAIL"
    assert verdicts(rows, cpu_dry_run=True)["nonzero-peak"] == "SKIP (cpu dry run)"


def test_the_named_path_share_is_judged_where_recorded_and_skipped_where_not():
    assert verdicts(healthy(share=None))["named-path"] == "SKIP"
    assert verdicts(healthy(share=0.5))["named-path"] == "FAIL"


def test_the_command_line_prints_one_line_per_check_and_exits_1_on_a_fail(tmp_path, capsys):
    run = tmp_path / "runs" / "gpu-check-20260101-000000"
    run.mkdir(parents=True)
    (run / "records.jsonl").write_text("".join(r.to_json() + "\n" for r in healthy()))
    assert checks.main([str(tmp_path / "runs")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if VERDICT.match(line)]
    assert len(lines) == 8 and all(line.startswith("PASS") for line in lines)
    (run / "records.jsonl").write_text("".join(r.to_json() + "\n" for r in [*healthy(), record("full", 4096, 0, status="error")]))
    assert checks.main([str(run)]) == 1
    assert "FAIL no-error" in capsys.readouterr().out
    assert checks.main([str(tmp_path / "nothing")]) == 1


def steps_log(out: Path) -> dict[str, int]:
    """{step name: exit code} from steps.log's lines `NN-name rc=R wall=...`."""
    found = {}
    for line in (out / "steps.log").read_text().splitlines():
        if match := re.match(r"^(\d\d)-(\S+)\s+rc=(\d+)\s+wall=\s*[\d.]+s", line):
            found[match[2]] = int(match[3])
    return found


@pytest.mark.slow
def test_the_cpu_dry_run_passes_every_step_and_check(tmp_path):
    out = tmp_path / "gpu-check"
    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--no-install", "--out", str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"writing everything under {out}" in done.stdout.splitlines()[0]
    assert steps_log(out) == {name: 0 for name in STEPS}, (out / "steps.log").read_text()
    for number, name in enumerate(STEPS, 1):
        assert (out / f"{number:02d}-{name}.log").is_file()
    attention = (out / "07-attention.log").read_text()  # its --profile: the block path's and decode's top entries
    assert "profile: block path at 512" in attention and "profile: 4 decode steps after 512 tokens" in attention
    assert "| N | decode tok/s (one over the median step" in attention and "| 512 |" in attention
    lines = [line for line in (out / "09-checks.log").read_text().splitlines() if VERDICT.match(line)]
    names = {line.split(":")[0].split()[-1] for line in lines}
    assert {"records", "no-error", "nonzero-peak", "full-peak-grows", "full-above-bounded", "named-path"} <= names, lines
    assert not [line for line in lines if line.startswith("FAIL")], lines
    assert all(line in done.stdout for line in lines)  # the summary repeats them
    assert "all steps and checks passed" in done.stdout

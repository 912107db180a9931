"""The CLI, run in-process: exit codes, output, and the files a run leaves."""

from __future__ import annotations

import json
import sys

import pytest

from lcbench.cli import main
from lcbench.run.measure import load_nvml
from lcbench.run.records import read_records

FILES = {"records.jsonl", "summary.csv", "report.md", "env.json"}


def run_dirs(path):
    return sorted(p for p in (path / "results").glob("*") if p.is_dir()) if (path / "results").exists() else []


def test_run_writes_records_summary_report_env(suite_file, capsys):
    path = suite_file(extra="measure: {warmup: 1, repeats: 2}\n")
    assert main(["run", str(path)]) == 0
    (run_dir,) = run_dirs(path.parent)
    assert FILES <= {p.name for p in run_dir.iterdir()}
    records = list(read_records(run_dir / "records.jsonl"))
    assert len(records) == 2 * 2 * 2  # lengths x strategies x samples
    for r in records:  # quality and cost in the same row
        assert r.status == "ok" and "exact_match" in r.metrics
        assert r.prefill_tokens and r.prefill_s and r.latency_s and r.peak_mem_bytes is not None and r.repeats == 2
    trunc = [r for r in records if r.strategy == "trunc-48"]
    assert all(r.max_call_tokens == 48 for r in trunc)
    report = (run_dir / "report.md").read_text()
    assert "## needle: exact_match" in report and "peak memory" in report and "decode tok/s" in report
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] and env["seed"] == 0 and len(env["suite_hash"]) == 16
    assert env["nvml_available"] == (load_nvml() is not None)  # a GPU machine has NVML
    out = capsys.readouterr().out
    assert "prefill tok/s" in out and "trunc-48" in out


def test_run_filters(suite_file, capsys):
    path = suite_file()
    assert main(["run", str(path), "--lengths", "80", "--strategies", "trunc-48", "--limit", "1"]) == 0
    (run_dir,) = run_dirs(path.parent)
    records = list(read_records(run_dir / "records.jsonl"))
    assert [(r.strategy, r.context_length) for r in records] == [("trunc-48", 80)]


def test_report_rerenders_from_records(suite_file):
    path = suite_file()
    assert main(["run", str(path), "--limit", "1"]) == 0
    (run_dir,) = run_dirs(path.parent)
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "exact_match" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--strategies", "fulll"], ["did you mean `full`"]),
        (["--lengths", "0"], ["context_lengths", "greater than 0"]),
        (["--lengths", "4q"], ["not a length"]),
        (["--model", "/no/such/model"], ["/no/such/model", "does not exist"]),
        (["--limit", "0"], ["--limit"]),
        (["--device", "tpu"], ["device", "tpu"]),
    ],
)
def test_bad_input_exits_2_without_traceback_or_folder(suite_file, capsys, args, words):
    path = suite_file()
    assert main(["run", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lcbench: error:") and "Traceback" not in err
    for word in words:
        assert word in err
    assert run_dirs(path.parent) == []


def test_model_folder_without_weights_is_refused(suite_file, tmp_path, tiny_dir, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_dir / "config.json").read_text())
    assert main(["run", str(suite_file()), "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "no weights" in err and "no tokenizer" in err


def test_validate_ok_and_bad(suite_file, tmp_path, capsys):
    assert main(["validate", str(suite_file())]) == 0
    assert "ok (4 cells, 8 examples)" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2


def test_ls_lists_strategies_tasks_suites(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "strategy  full" in out and "strategy  truncation" in out and "task      needle" in out
    for line in out.splitlines():
        if line.startswith(("strategy", "task")):
            assert line.rstrip().endswith("."), line  # the first sentence, whole


def test_help_carries_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "lcbench run suites/mt.yaml" in capsys.readouterr().out


def test_report_of_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_a_cluster_executor_without_its_extra_names_the_pip_command(suite_file, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if `lcbench[slurm]` were not installed
    assert main(["run", str(suite_file()), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'lcbench[slurm]'" in err and "Traceback" not in err


def test_an_execution_profile_is_checked_and_stays_out_of_the_suite(suite_file, tmp_path, capsys):
    profile = tmp_path / "site.yaml"
    profile.write_text("slurm: {partition: gpu, acount: x}\n")
    assert main(["run", str(suite_file()), "--executor", "slurm", "--profile", str(profile)]) == 2
    assert "unknown slurm setting acount" in capsys.readouterr().err
    assert main(["run", str(suite_file()), "--profile", str(profile)]) == 2
    assert "add --executor ray or --executor slurm" in capsys.readouterr().err


def test_the_report_warns_when_cells_ran_on_different_gpu_types():
    from lcbench.analysis.report import device_notes
    from lcbench.run.records import Record

    def record(strategy: str, gpu: str) -> Record:
        return Record("s", "needle", strategy, strategy, {}, 1024, "e", "k", gpu=gpu, host="h", device=f"cuda:0 {gpu}")

    assert device_notes([record("full", "NVIDIA H200"), record("sparse", "NVIDIA H200")]) == []
    (note,) = device_notes([record("full", "NVIDIA H200"), record("sparse", "NVIDIA A100")])
    assert "different GPU types" in note and "NVIDIA A100" in note and "NVIDIA H200" in note


def test_several_models_give_one_run_folder_each(suite_file, tiny_dirs, tmp_path):
    models = f"{tiny_dirs['llama']},{tiny_dirs['qwen2']}"
    assert main(["run", str(suite_file()), "--models", models, "--lengths", "64", "--out", str(tmp_path / "out")]) == 0
    runs = sorted((tmp_path / "out").iterdir())
    assert len(runs) == 2
    assert sorted(json.loads((r / "env.json").read_text())["model"] for r in runs) == sorted(models.split(","))

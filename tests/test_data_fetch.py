"""`lcbench data fetch`, offline: it fails with the fix, lays each set out as its task reads it (from a hub the
test stands in for), fetches once; a suite with no data_dir runs from the cache; a missing set names the command."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from lcbench import data_fetch
from lcbench.cli import main
from lcbench.run.records import read_records

SAMPLE = ROOT / "data" / "sample"
NAMES = ["longbench", "longbench_v2", "infinitebench", "ruler-qa"]
WHERE = {
    "longbench": "https://huggingface.co/datasets/THUDM/LongBench/resolve/main/data.zip",
    "longbench_v2": "https://huggingface.co/datasets/THUDM/LongBench-v2/resolve/main/data.json",
    "infinitebench": "https://huggingface.co/datasets/xinrongzhang2022/InfiniteBench/resolve/main/",
    "ruler-qa": "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json as squad.json",
}


@pytest.mark.parametrize("name", NAMES)
def test_fetch_offline_fails_in_one_line_with_the_fix(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "fetch", name, "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "offline mode is on here (HF_HUB_OFFLINE=1)" in err and f"`lcbench data fetch {name}`" in err
    assert WHERE[name] in err and str(tmp_path / name) in err
    assert list(tmp_path.iterdir()) == []  # nothing half-fetched


def test_an_unknown_set_gets_did_you_mean(tmp_path, capsys):
    assert main(["data", "fetch", "infinitbench", "--cache", str(tmp_path)]) == 2
    assert "did you mean `infinitebench`?" in capsys.readouterr().err


def stand_in_hub(monkeypatch, tmp_path: Path) -> list[str]:
    """The hub and RULER's two sites, served from the sample: LongBench's data.zip built from its files (and a
    set of another language, which stays out of the cache), the others file by file."""
    served = tmp_path / "hub"
    served.mkdir()
    with zipfile.ZipFile(served / "data.zip", "w") as archive:
        for path in sorted((SAMPLE / "longbench").glob("*.jsonl")):
            archive.write(path, f"data/{path.name}")
        archive.writestr("data/lsht.jsonl", "{}\n")
    shutil.copy(SAMPLE / "longbench_v2" / "data.json", served / "data.json")
    for path in (SAMPLE / "infinitebench").glob("*.jsonl"):
        shutil.copy(path, served / path.name)
    asked: list[str] = []

    def hub_file(repo: str, file: str, folder: Path) -> Path:
        asked.append(f"{repo}/{file}")
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(served / file, folder / file))

    def url_file(url: str, path: Path) -> Path:
        asked.append(url)
        path.write_text(json.dumps({"from": url}))
        return path

    monkeypatch.setattr(data_fetch, "offline", lambda: "")
    monkeypatch.setattr(data_fetch, "hub_file", hub_file)
    monkeypatch.setattr(data_fetch, "url_file", url_file)
    return asked


def test_each_set_is_laid_out_as_its_task_reads_it_and_fetched_once(tmp_path, monkeypatch, capsys):
    asked = stand_in_hub(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LCBENCH_DATA", str(cache))
    for name in NAMES:
        assert main(["data", "fetch", name]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)  # no staging folder left
    lb = {p.name for p in (SAMPLE / "longbench").glob("*.jsonl")}
    assert {p.name for p in (cache / "longbench").iterdir()} == lb  # the English files, by their own names
    assert (cache / "longbench" / "hotpotqa_e.jsonl").read_bytes() == (SAMPLE / "longbench" / "hotpotqa_e.jsonl").read_bytes()
    assert (cache / "longbench_v2" / "data.json").read_bytes() == (SAMPLE / "longbench_v2" / "data.json").read_bytes()
    assert {p.name for p in (cache / "infinitebench").iterdir()} == {p.name for p in (SAMPLE / "infinitebench").iterdir()}
    assert {p.name for p in (cache / "ruler-qa").iterdir()} == {"squad.json", "hotpotqa.json"}
    assert "dev-v2.0.json" in (cache / "ruler-qa" / "squad.json").read_text()
    assert asked[:2] == ["THUDM/LongBench/data.zip", "THUDM/LongBench-v2/data.json"] and len(asked) == 2 + 9 + 2
    out = capsys.readouterr().out
    assert f"infinitebench: 9 files in {cache / 'infinitebench'}" in out
    assert main(["data", "fetch", "longbench"]) == 0  # all there: nothing is asked again
    assert len(asked) == 13 and "longbench: already in" in capsys.readouterr().out


def test_a_download_without_a_file_leaves_no_set_behind(tmp_path, monkeypatch, capsys):
    stand_in_hub(monkeypatch, tmp_path)
    (tmp_path / "hub" / "math_find.jsonl").unlink()
    assert main(["data", "fetch", "infinitebench", "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "cannot fetch InfiniteBench" in err and "math_find.jsonl" in err and "lcbench data fetch infinitebench" in err
    assert list((tmp_path / "cache").iterdir()) == []


def suite_without_data_dir(tmp_path: Path, name: str, tasks: list[dict] | None = None) -> Path:
    """A shipped suite with its data_dir dropped (so its tasks read the cache), with full attention only."""
    data = yaml.safe_load((ROOT / "suites" / f"{name}.yaml").read_text())
    data.pop("data_dir")
    data |= {"strategies": [{"name": "full"}], "max_new_tokens": 8} | ({"tasks": tasks} if tasks else {})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_longbench_suite_runs_from_the_cache(tmp_path, monkeypatch, chat_dirs, capsys, plots):
    folder = tmp_path / "cache" / "longbench"
    folder.mkdir(parents=True)
    for name in ("hotpotqa_e.jsonl", "trec_e.jsonl"):  # the cached files, told apart from the sample by their ids
        lines = [json.loads(line) for line in (SAMPLE / "longbench" / name).read_text().splitlines()]
        folder.joinpath(name).write_text("".join(json.dumps({**r, "_id": f"cached-{r['_id']}"}) + "\n" for r in lines))
    monkeypatch.setenv("LCBENCH_DATA", str(tmp_path / "cache"))
    tasks = [{"name": "longbench", "params": {"dataset": d}} for d in ("hotpotqa", "trec")]
    suite = suite_without_data_dir(tmp_path, "longbench", tasks)
    out = tmp_path / "runs"
    args = ["run", str(suite), "--model", str(chat_dirs["bpe"]), "--lengths", "4k", "--limit", "1", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    (run_dir,) = out.iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    assert len(records) == 2 and all(r.status == "ok" and r.example_id.startswith("cached-") for r in records)
    assert (run_dir / "plots" / "longbench-hotpotqa-by-length.png").stat().st_size > 0  # a file, not a folder per data set


@pytest.mark.parametrize("name", ["longbench", "longbench_v2", "infinitebench"])
def test_a_set_in_no_folder_and_not_in_the_cache_names_the_fetch_command(name, tmp_path, monkeypatch, chat_dirs, capsys):
    monkeypatch.setenv("LCBENCH_DATA", str(tmp_path / "empty"))
    suite = suite_without_data_dir(tmp_path, name)
    assert main(["validate", str(suite), "--model", str(chat_dirs["bpe"])]) == 2
    err = capsys.readouterr().err
    assert f"`lcbench data fetch {name}`" in err and str(tmp_path / "empty" / name) in err and "Traceback" not in err


def test_ruler_synth_qa_reads_the_cache_where_its_data_folder_lacks_the_file(tmp_path, monkeypatch, chat_dirs, capsys):
    from lcbench.tasks.ruler_synth import RulerSynth

    monkeypatch.setenv("LCBENCH_DATA", str(tmp_path / "cache"))
    task = RulerSynth(task="qa_1", data_dir=str(SAMPLE / "ruler_synth"))
    (problem,) = task.data_problems()
    assert "`lcbench data fetch ruler-qa`" in problem
    question = {"question": "Who wrote the first program?", "answers": [{"text": "Ada Lovelace"}], "is_impossible": False}
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "Ada Lovelace wrote the first program.", "qas": [question]}]}]}
    (tmp_path / "cache" / "ruler-qa").mkdir(parents=True)
    (tmp_path / "cache" / "ruler-qa" / "squad.json").write_text(json.dumps(squad))
    assert task.data_problems() == []
    assert task.qa_set().questions

"""`--model org/name[@revision]`: a Hugging Face hub id found in the local Hugging Face cache,
never downloaded at run time; an absent one is one clear line with the command that fetches it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lcbench.cli import main
from lcbench.model import resolve_model
from lcbench.run.records import read_records

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding `some-org/tiny-llama` at `main` (and by its commit), laid out
    as `hf download` leaves it."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--some-org--tiny-llama"
    shutil.copytree(tiny_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolve_model.cache_clear()
    yield cache
    resolve_model.cache_clear()


@pytest.mark.parametrize("model", ["some-org/tiny-llama", f"some-org/tiny-llama@{COMMIT}"])
def test_a_hub_model_runs_from_the_cache(hub_cache, model, tmp_path, capsys):
    args = ["run", "suites/needle.yaml", "--model", model, "--lengths", "512", "--limit", "2", "--strategies", "full"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    (run_dir,) = (tmp_path / "out").iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    assert records and all(r.status == "ok" for r in records)
    assert f'"model": "{model}"' in (run_dir / "env.json").read_text()


def test_a_hub_model_absent_from_the_cache_names_the_fix(hub_cache, tmp_path, capsys):
    args = ["run", "suites/needle.yaml", "--model", "some-org/absent@v2", "--lengths", "512", "--limit", "1"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "`some-org/absent@v2` is neither a local folder nor in the Hugging Face cache" in err
    assert str(hub_cache) in err and "hf download some-org/absent --revision v2" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

"""Strategies and tasks come from entry points; a third-party distribution plugs in the same way."""

from __future__ import annotations

import sys
import textwrap

import pytest

from lcbench import registry
from lcbench.cli import main
from lcbench.errors import UserError
from lcbench.run.records import read_records


def test_builtins_register_through_entry_points():
    assert {"full", "truncation"} <= set(registry.strategies())
    assert "needle" in registry.tasks()


def test_unknown_name_suggests():
    with pytest.raises(UserError, match="did you mean `truncation`"):
        registry.strategy_class("truncaton")


@pytest.fixture
def plugin_distribution(tmp_path, monkeypatch):
    """A distribution installed on sys.path with one strategy in the `lcbench.strategies` group."""
    (tmp_path / "echo_plugin.py").write_text(
        textwrap.dedent('''
        from dataclasses import dataclass
        from typing import ClassVar
        from lcbench.strategies.base import Prediction, Strategy, Usage

        @dataclass
        class Echo(Strategy):
            """Answers the first word of the context, without calling the model."""
            name: ClassVar[str] = "echo"
            word: int = 0

            def run(self, model, example):
                return Prediction(example.context.split()[self.word], Usage(calls=0))
    ''')
    )
    info = tmp_path / "echo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lcbench.strategies]\necho = echo_plugin:Echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.strategies.cache_clear()
    yield
    sys.modules.pop("echo_plugin", None)
    registry.strategies.cache_clear()


def test_third_party_strategy_runs_from_a_suite(plugin_distribution, suite_file):
    assert "echo" in registry.strategies()
    path = suite_file(strategies="  - {name: echo, params: {word: 0}}\n")
    assert main(["run", str(path), "--limit", "1"]) == 0
    (run_dir,) = (path.parent / "results").iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    assert {r.strategy for r in records} == {"echo"} and all(r.status == "ok" for r in records)
    assert all(r.calls == 0 for r in records)


def test_third_party_params_are_checked(plugin_distribution, suite_file, capsys):
    assert main(["validate", str(suite_file(strategies="  - {name: echo, params: {wrd: 1}}\n"))]) == 2
    assert "did you mean `word`" in capsys.readouterr().err

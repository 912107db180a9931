"""What a newcomer's mistakes get: a damaged model folder, a key given twice in a suite, a length
of 0, each one line naming the file or field and the fix, exit 2, before any cell runs; and a
frontier plot that does not zoom into measurement noise."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lcbench.analysis.plots import MIN_RELATIVE_SPAN, frontier_figure
from lcbench.cli import main
from lcbench.config.suite import read_yaml


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], results: Path) -> str:
    """The one-line error of a command that must exit 2 and leave no run folder."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lcbench: error:") and "Traceback" not in err
    assert err.strip().count("\n") == 0, err  # one line
    assert not results.exists()
    return err


def cut_weights(model: Path) -> None:
    weights = model / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)


def damage_tokenizer(model: Path) -> None:
    text = (model / "tokenizer.json").read_text()
    (model / "tokenizer.json").write_text(text[: len(text) // 2])


def unknown_architecture(model: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "llamax", "architectures": ["LlamaxForCausalLM"]}))


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(
    "damage, words",
    [
        (cut_weights, ["model.safetensors`", "is cut short", "download or save the model again"]),
        (damage_tokenizer, ["tokenizer.json`", "is not valid JSON", "save the tokenizer again"]),
        (unknown_architecture, ["config.json`", "model_type `llamax`", "did you mean `llama`", "upgrade transformers"]),
    ],
)
def test_a_damaged_model_folder_is_named_with_the_fix(suite_file, tiny_dir, tmp_path, capsys, command, damage, words):
    model = shutil.copytree(tiny_dir, tmp_path / "model")
    damage(model)
    err = refused(capsys, [command, str(suite_file()), "--model", str(model)], tmp_path / "results")
    assert str(model) in err
    for word in words:
        assert word in err


def test_a_key_given_twice_is_named_with_both_lines(suite_file, tmp_path, capsys):
    path = suite_file()
    path.write_text(path.read_text() + "name: again\n")  # the factory would replace its own `name`
    last = len(path.read_text().splitlines())
    for command in ("run", "validate"):
        err = refused(capsys, [command, str(path)], tmp_path / "results")
        assert f"line {last}, `name`: key given twice (first on line 2)" in err and "delete one" in err


def test_a_key_over_a_merged_one_is_no_duplicate(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {budget: 48, keep: head}\nparams: {<<: *b, budget: 32}\n")
    data, _, _ = read_yaml(path)
    assert data["params"] == {"budget": 32, "keep": "head"}


@pytest.mark.parametrize("value, words", [("0", ["greater than 0"]), ("-5", ["not a length"])])
def test_a_bad_length_is_one_problem_in_the_users_words(suite_file, tmp_path, capsys, value, words):
    err = refused(capsys, ["run", str(suite_file()), f"--lengths={value}"], tmp_path / "results")
    assert f"--lengths `{value}`" in err and "4096 or 4k" in err and "Tuple" not in err
    for word in words:
        assert word in err


def test_a_bad_length_in_the_suite_is_one_problem(suite_file, tmp_path, capsys):
    path = suite_file()
    path.write_text(path.read_text().replace("context_lengths: [64, 96]", "context_lengths: [0]"))
    err = refused(capsys, ["validate", str(path)], tmp_path / "results")
    assert "line 5, `context_lengths[0]`: a context length must be greater than 0 tokens" in err and "(got 0)" in err


def frontier_part(memory_256: list[float]) -> pd.DataFrame:
    """An mt-like summary: three strategies doing the same work at 256 tokens (memory within a
    percent), apart at 1k; quality on a 0-100 scale (chrf)."""
    cells = [("full", 23.0, 8.27), ("truncation-256", 31.0, 3.76), ("blockwise-256", 96.0, 3.75)]
    rows = [(name, 256, 100.0, mb) for (name, _, _), mb in zip(cells, memory_256)]
    rows += [(name, 1024, q, mb) for name, q, mb in cells]
    part = pd.DataFrame(rows, columns=["strategy", "context_length", "chrf", "peak_mem_mb"])
    return part.assign(task="mt", status="ok")


@pytest.mark.parametrize("memory_256", [[3.73, 3.745, 3.76], [2.066, 2.066, 2.066]])
def test_no_frontier_axis_spans_less_than_its_floor_and_the_title_fits(memory_256):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spread = {("full", 256): (memory_256[0] * 0.99, memory_256[0])}  # the examples' range
    fig = frontier_figure(frontier_part(memory_256), "mt", "chrf", front={256: {"full"}, 1024: {"blockwise-256"}}, spread=spread)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["256 tokens", "1024 tokens"]
    for ax in panels:
        low, high = ax.get_xlim()
        assert high - low >= MIN_RELATIVE_SPAN * (low + high) / 2 * 0.999
        low, high = ax.get_ylim()
        assert high - low >= MIN_RELATIVE_SPAN * 100.0 * 0.999  # the metric's largest value sets its scale
    low, high = panels[0].get_xlim()
    assert low <= min(memory_256) and max(memory_256) <= high and high - low < 1.0  # widened about the data, not lost
    low, high = panels[1].get_xlim()
    assert low <= 3.75 and 8.27 <= high  # a real spread is kept as it is
    title = fig.get_suptitle()
    assert "quality against memory" in title
    extent = fig._suptitle.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
    assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1 and extent.y1 <= fig.bbox.y1
    plt.close(fig)


def test_the_title_of_a_one_panel_frontier_fits():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = frontier_part([3.73, 3.745, 3.76])
    fig = frontier_figure(part[part["context_length"] == 256], "longbench/hotpotqa", "chrf", front={256: {"full"}})
    fig.canvas.draw()
    extent = fig._suptitle.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
    assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1 and extent.y1 <= fig.bbox.y1
    assert fig.get_suptitle().startswith("longbench/hotpotqa: quality against memory")
    plt.close(fig)

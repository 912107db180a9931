from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lcbench.config.suite import load_suite
from lcbench.errors import UserError
from lcbench.units import parse_length


@pytest.mark.parametrize("text, tokens", [(4096, 4096), ("4096", 4096), ("4k", 4096), ("32K", 32768), ("1m", 1 << 20)])
def test_lengths_parse(text, tokens):
    assert parse_length(text) == tokens


@pytest.mark.parametrize("bad", ["4x", "", "k", 1.5, True])
def test_bad_lengths_refused(bad):
    with pytest.raises(ValueError):
        parse_length(bad)


def test_valid_suite_is_frozen_and_typed(suite_file):
    suite, digest = load_suite(suite_file(extra="max_new_tokens: 7\nmeasure: {warmup: 1, repeats: 3}\n"))
    assert suite.context_lengths == (64, 96)
    assert suite.strategies[1].key == "trunc-48"
    assert suite.measure.repeats == 3 and suite.max_new_tokens == 7
    assert len(digest) == 16
    with pytest.raises(ValidationError):
        suite.samples = 3  # type: ignore[misc]


def problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as info:
        load_suite(path)
    return info.value.problems


def test_unknown_key_named_with_line_and_suggestion(suite_file):
    (problem,) = problems(suite_file(extra="sample: 3\n"))
    assert "line 13" in problem and "`sample`" in problem and "did you mean `samples`" in problem


def test_five_mistakes_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\n"
        "context_lengths: [256, 0x]\n"  # 1: unparsable length
        "samples: 0\n"  # 2: non-positive
        "tasks: [{name: needel}]\n"  # 3: unknown task
        "strategies:\n"
        "  - name: ful\n"  # 4: unknown strategy
        "  - {name: truncation, params: {budget: many}}\n"  # 5: wrong type
        "colour: blue\n"  # 6: unknown key
    )
    found = problems(path)
    assert len(found) == 6, found
    text = "\n".join(found)
    for needle in ["0x", "samples", "did you mean `needle`", "did you mean `full`", "budget", "colour"]:
        assert needle in text


def test_duplicate_strategy_needs_a_label(suite_file):
    strategies = "  - {name: truncation, params: {budget: 48}}\n  - {name: truncation, params: {budget: 32}}\n"
    (problem,) = problems(suite_file(strategies=strategies))
    assert "appears twice" in problem and "label" in problem


def test_same_strategy_twice_with_labels(suite_file):
    strategies = (
        "  - {name: truncation, label: head, params: {budget: 48, keep: head}}\n"
        "  - {name: truncation, label: tail, params: {budget: 48, keep: tail}}\n"
    )
    suite, _ = load_suite(suite_file(strategies=strategies))
    assert [s.key for s in suite.strategies] == ["head", "tail"]


def test_truncation_budget_larger_than_context(suite_file):
    (problem,) = problems(suite_file(strategies="  - {name: truncation, params: {budget: 5000}}\n"))
    assert "budget 5000" in problem and "larger than every context length" in problem


def test_strategy_param_checks_run_without_a_model(tmp_path, suite_file):
    (problem,) = problems(suite_file(strategies="  - {name: truncation, params: {budget: -3}}\n"))
    assert "budget must be a positive" in problem


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncontext_lengths: [1, 2\ntasks: []\n")
    (problem,) = problems(path)
    assert "line" in problem and "malformed YAML" in problem


def test_python_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    (problem,) = problems(path)
    assert "no tag may build a Python object" in problem and "python/object" in problem and "line 1" in problem


def test_missing_file(tmp_path):
    (problem,) = problems(tmp_path / "nope.yaml")
    assert "does not exist" in problem


def test_model_path_that_is_not_a_model(suite_file, tmp_path):
    path = suite_file()
    path.write_text(path.read_text().replace("model: ", f"model: {tmp_path}/missing #"))
    (problem,) = problems(path)
    assert "does not exist" in problem and "`model`" in problem

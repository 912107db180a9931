"""The jsonl loader (LongBench / RULER form) on good and broken files."""

from __future__ import annotations

import json

import pytest

from lcbench.errors import UserError
from lcbench.prompt import Prompter
from lcbench.tasks.jsonl import Jsonl, token_f1


class Words:
    def encode(self, text: str) -> list[int]:
        return list(range(len(text.split())))


def write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def record(n_words: int, answer: str = "paris", length: int | None = None) -> dict:
    item = {"context": " ".join(["word"] * n_words), "input": "capital of france ?", "answers": [answer]}
    if length is not None:
        item["length"] = length
    return item


def test_records_by_measured_length(tmp_path):
    path = write(tmp_path / "data.jsonl", [record(10), record(100), record(120), record(500)])
    examples = Jsonl(path=str(path), metric="exact_match").examples(Prompter(Words()), 128, 5, seed=0)
    assert [e.actual_length for e in examples] == [104, 124]  # context + 4 query words, in (64, 128]
    assert examples[0].id == "data-2" and examples[0].references == ("paris",)


def test_records_by_length_field(tmp_path):
    path = write(tmp_path / "data.jsonl", [record(10, length=4096), record(12, length=8192), record(14, length=4096)])
    examples = Jsonl(path=str(path)).examples(Prompter(Words()), 4096, 5, seed=0)
    assert [e.metadata["line"] for e in examples] == [1, 3]
    with pytest.raises(UserError, match=r"no record fits context length 1024 \(lengths in the file: \[4096, 8192\]\)"):
        Jsonl(path=str(path)).examples(Prompter(Words()), 1024, 5, seed=0)


def test_broken_lines_are_named_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [record(100), "{not json", {"context": "a", "input": "b"}, record(100, answer=3)])
    with pytest.raises(UserError) as info:
        Jsonl(path=str(path)).examples(Prompter(Words()), 128, 5, seed=0)
    problems = info.value.problems
    assert problems == [
        f"{path}:2: not valid JSON (Expecting property name enclosed in double quotes)",
        f"{path}:3: missing field answers",
        f"{path}:4: field answers must be a non-empty list of strings",
    ]


def test_broken_lines_skipped_and_counted_on_request(tmp_path):
    path = write(tmp_path / "bad.jsonl", [record(100), "[1, 2]", record(110)])
    examples = Jsonl(path=str(path), on_error="skip").examples(Prompter(Words()), 128, 5, seed=0)
    assert len(examples) == 2 and examples[0].metadata["skipped_lines"] == 1


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Jsonl(path=str(tmp_path / "none.jsonl")).examples(Prompter(Words()), 128, 1, seed=0)


def test_scoring_takes_the_best_reference(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"context": "x " * 80, "input": "q", "answers": ["the eiffel tower", "eiffel"]}])
    task = Jsonl(path=str(path), metric="f1")
    (example,) = task.examples(Prompter(Words()), 128, 1, seed=0)
    assert task.score("eiffel", example) == {"score": 1.0}
    assert token_f1("the big tower", "the eiffel tower") == pytest.approx(2 / 3)

"""`longbench_v2`: LongBench v2's multiple-choice questions from disk, with its prompt and scoring.

Bai et al., "LongBench v2: Towards Deeper Understanding and Reasoning on Realistic Long-context
Multitasks", 2024. Asked with its zero-shot prompt (`prompts/0shot.txt`) and scored by its answer extraction: accuracy of the
letter after "The correct answer is". A record longer than the cell is cut in the middle of its
context, as LongBench v2 cuts its prompts. `difficulty` and `lengths` select its splits (easy/hard;
short/medium/long); records say theirs, so results can be read per split. File: `data_dir/data.json`
(the JSON array THUDM/LongBench-v2 publishes) or a .jsonl of the same records; with no data_dir, the
cache `lcbench data fetch longbench_v2` fills.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task
from lcbench.tasks.data_files import DataError, check_fields, cut_middle, data_folder, read_records, resolve

FIELDS: dict[str, type] = {
    "_id": str, "difficulty": str, "length": str, "question": str,
    "choice_A": str, "choice_B": str, "choice_C": str, "choice_D": str, "answer": str, "context": str,
}  # fmt: skip
TEMPLATE = "Please read the following text and answer the question below.\n\n<text>\n{context}\n</text>\n\n{question}"
QUESTION = (
    "What is the correct answer to this question: {question}\nChoices:\n(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}\n\n"
    'Format your response as follows: "The correct answer is (insert answer here)".'
)
ANSWER = (re.compile(r"The correct answer is \(([A-D])\)"), re.compile(r"The correct answer is ([A-D])"))


def extract_answer(response: str) -> str | None:
    """LongBench v2's reading of a response: the letter after "The correct answer is", with or
    without parentheses, markdown stars ignored."""
    response = response.replace("*", "")
    for pattern in ANSWER:
        if match := pattern.search(response):
            return match.group(1)
    return None


@dataclass
class LongBenchV2(Task):
    name: ClassVar[str] = "longbench_v2"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    template: ClassVar[str] = TEMPLATE

    data_dir: str = ""  # the folder of data.json (the suite's `data_dir`; none: the fetched cache)
    file: str = "data.json"
    difficulty: tuple[str, ...] = ("easy", "hard")
    lengths: tuple[str, ...] = ("short", "medium", "long")

    def __post_init__(self) -> None:
        self.difficulty, self.lengths = tuple(self.difficulty), tuple(self.lengths)
        if not self.difficulty or not set(self.difficulty) <= {"easy", "hard"}:
            raise ValueError(f"difficulty must list easy and/or hard, got {list(self.difficulty)}")
        if not self.lengths or not set(self.lengths) <= {"short", "medium", "long"}:
            raise ValueError(f"lengths must list short, medium and/or long, got {list(self.lengths)}")

    @property
    def path(self) -> Path:
        return resolve(data_folder(self.data_dir, "longbench_v2"), self.file)

    def data_problems(self, lengths: Sequence[int] = ()) -> list[str]:
        try:
            records = read_records(self.path, fetch="longbench_v2")
        except DataError as exc:
            return [str(exc)]
        problems = check_fields(self.path, records, FIELDS, "LongBench v2 (task `longbench_v2`)")
        if not problems and not self.selected(records):
            problems.append(f"{self.path}: no record is {'/'.join(self.difficulty)} and {'/'.join(self.lengths)}")
        return problems

    def selected(self, records: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
        return [(i, r) for i, r in records if r["difficulty"] in self.difficulty and r["length"] in self.lengths]

    def examples(self, prompter: Prompter, length: int, n: int, seed: int) -> list[Example]:
        chosen = self.selected(read_records(self.path, fetch="longbench_v2"))
        if not chosen:
            raise DataError(f"{self.path}: no record is {'/'.join(self.difficulty)} and {'/'.join(self.lengths)}")
        return [self.from_record(prompter, length, line, record) for line, record in chosen[:n]]

    def from_record(self, prompter: Prompter, length: int, line: int, record: dict[str, Any]) -> Example:
        choices = {letter: record[f"choice_{letter}"].strip() for letter in "ABCD"}
        question = QUESTION.format(question=record["question"].strip(), **choices)
        frame = prompter.frame(Parts(question, question))
        if length - frame.tokens < 1:
            raise LengthError(f"length {length} does not hold the question's {frame.tokens} tokens without the context")
        context, tokens = cut_middle(prompter, record["context"].strip(), length - frame.tokens)
        return Example(
            id=record["_id"],
            context=context,
            query=question,
            references=(record["answer"],),
            requested_length=length,
            actual_length=frame.tokens + tokens,
            answer_tokens=128,
            metadata={
                "line": line,
                "difficulty": record["difficulty"],
                "length_class": record["length"],
                "cut": context != record["context"].strip(),
            },
            frame=frame,
            first_line=False,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        return {"accuracy": float(extract_answer(prediction.strip()) == example.references[0])}

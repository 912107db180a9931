"""`jsonl`: your own data from disk, in the LongBench / RULER form: one JSON object per line
with `context`, `input` (the question), `answers` (a list) and optionally `length` (tokens).

For a requested context length the task takes the records whose `length` equals it, or, where
records have no `length`, those whose prompt in the model's tokens is at most that length and
more than half of it. Records are used in file order; `metric` names the scorer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from lcbench.errors import UserError
from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, Frame, Task, exact_match, normalize
from lcbench.tasks.metrics import chrf, edit_similarity, rouge_l, set_f1

MAX_LINE_BYTES = 64 << 20


def token_f1(prediction: str, reference: str) -> float:
    """LongBench's QA F1: word overlap between the normalized prediction and reference."""
    p, r = normalize(prediction).split(), normalize(reference).split()
    common = sum(min(p.count(w), r.count(w)) for w in set(p))
    if common == 0:
        return float(p == r)
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


SCORERS: dict[str, Callable[[str, str], float]] = {
    "exact_match": lambda p, r: exact_match(p, [r]),
    "f1": token_f1,
    "rouge_l": rouge_l,
    "edit_sim": edit_similarity,
    "chrf": chrf,
    "set_f1": lambda p, r: set_f1(normalize(p).split(), normalize(r).split()),
}


@dataclass(frozen=True)
class Row:
    line: int
    context: str
    input: str
    answers: tuple[str, ...]
    length: int | None


def read_rows(path: Path, on_error: str) -> tuple[list[Row], list[str]]:
    """(rows, problems as `file:line: problem`). With `on_error: stop` any problem is fatal."""
    if not path.is_file():
        raise UserError(f"jsonl file `{path}` does not exist; give `path:` a local file")
    rows, problems = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            problem = None
            try:
                item: Any = json.loads(line) if len(line) <= MAX_LINE_BYTES else None
                if not isinstance(item, dict):
                    problem = "not a JSON object"
                else:
                    missing = [k for k in ("context", "input", "answers") if k not in item]
                    answers = item.get("answers")
                    if missing:
                        problem = f"missing field {', '.join(missing)}"
                    elif not isinstance(answers, list) or not all(isinstance(a, str) for a in answers) or not answers:
                        problem = "field answers must be a non-empty list of strings"
                    elif not isinstance(item["context"], str) or not isinstance(item["input"], str):
                        problem = "fields context and input must be strings"
                    elif "length" in item and not (isinstance(item["length"], int) and item["length"] > 0):
                        problem = f"field length must be a positive integer, got {item['length']!r}"
                    else:
                        rows.append(Row(number, item["context"], item["input"], tuple(answers), item.get("length")))
            except json.JSONDecodeError as exc:
                problem = f"not valid JSON ({exc.msg})"
            if problem:
                problems.append(f"{path}:{number}: {problem}")
    if problems and on_error == "stop":
        raise UserError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
    return rows, problems


@dataclass
class Jsonl(Task):
    name: ClassVar[str] = "jsonl"
    metrics: ClassVar[tuple[str, ...]] = ("score",)

    path: str = ""
    metric: Literal["exact_match", "f1", "rouge_l", "edit_sim", "chrf", "set_f1"] = "f1"
    on_error: Literal["stop", "skip"] = "stop"  # a malformed line stops the run, or is skipped and counted
    answer_tokens: int = 32

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path is required: the local .jsonl file to read")
        if self.metric not in SCORERS:
            raise ValueError(f"metric must be one of {', '.join(SCORERS)}; got {self.metric!r}")

    def examples(self, prompter: Prompter, length: int, n: int, seed: int) -> list[Example]:
        rows, problems = read_rows(Path(self.path), self.on_error)
        chosen = []
        for row in rows:
            frame = prompter.frame(Parts(row.input, row.input, "Answer:"))
            actual = len(prompter.encode(row.context)) + frame.tokens
            fits = row.length == length if row.length is not None else length // 2 < actual <= length
            if fits:
                chosen.append(self.from_row(row, length, actual, len(problems), frame))
            if len(chosen) == n:
                break
        if not chosen:
            available = sorted({r.length for r in rows if r.length is not None})
            hint = f" (lengths in the file: {available})" if available else ""
            raise UserError(f"{self.path}: no record fits context length {length}{hint}")
        return chosen

    def from_row(self, row: Row, length: int, actual: int, skipped: int, frame: Frame | None = None) -> Example:
        return Example(
            id=f"{Path(self.path).stem}-{row.line}",
            context=row.context,
            query=row.input,
            references=row.answers,
            requested_length=length,
            actual_length=actual,
            answer_tokens=self.answer_tokens,
            metadata={"line": row.line, "skipped_lines": skipped},
            frame=frame,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        scorer = SCORERS[self.metric]
        return {"score": max(scorer(prediction, r) for r in example.references)}

"""`ruler`: RULER's prepared files from disk (already rendered prompts), sent and scored as RULER does.

Hsieh et al., "RULER: What's the Real Context Size of Your Long-Context Language Models?", 2024.

RULER's `prepare.py` writes, per sequence length and task, `LENGTH/data/TASK/validation.jsonl`
lines with the prompt already rendered (`input`, in the model template chosen when preparing) and
the `answer_prefix` split off; RULER sends `input + answer_prefix` and scores the output with
string_match_all (string_match_part for qa), after stripping it and turning control characters into
newlines. lcbench does the same, and finds the context inside `input` by the text RULER's task
template puts around it, so that strategies can cut it and wrap each piece in the rest. The
suite's `format` does not apply: the files carry their own template.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lcbench.prompt import Frame, Prompter
from lcbench.tasks.base import Example, Task
from lcbench.tasks.data_files import DataError, check_fields, read_records, resolve
from lcbench.tasks.metrics import string_match_all, string_match_part

FIELDS: dict[str, type] = {"input": str, "outputs": list, "length": int, "answer_prefix": str}


@dataclass(frozen=True)
class Family:
    """Where a RULER task template's context starts and ends (whitespace-tolerant, so that files
    prepared with `--remove_newline_tab` are read too), its generation cap and its metric."""

    start: str  # the context starts after this; `last`: its last match (a few-shot example comes first)
    end: str  # the context ends where the last match of this begins
    max_new_tokens: int
    metric: str = "string_match_all"
    last: bool = False


FAMILIES = {
    "niah": Family(r"afterwards\.\s", r"\s+What (?:are all|is) the special magic", 128),
    "vt": Family(r"variable assignment hidden in the following text\.\s+", r"\s+Question: Find all variables", 30, last=True),
    "cwe": Family(
        r"Memorize the ones that appear most often\.\s", r"\s+Question: What are the \d+ most common words", 120, last=True
    ),
    "fwe": Family(
        r"Find the three most frequently appeared coded words\.\s", r"\s+Question: Do not provide any explanation\.", 50
    ),
    "qa": Family(
        r"The following are given documents\.\s+",
        r"\s+Answer the question based on the given documents\.",
        32,
        "string_match_part",
    ),
}
PREFIXES = {
    "niah": "niah",
    "vt": "vt",
    "variable_tracking": "vt",
    "cwe": "cwe",
    "common_words": "cwe",
    "fwe": "fwe",
    "freq_words": "fwe",
    "qa": "qa",
}


def family_of(task: str) -> str | None:
    """RULER's task family from its task name (niah_single_1 -> niah, qa_2 -> qa, vt -> vt)."""
    return next((family for prefix, family in PREFIXES.items() if task == prefix or task.startswith(prefix + "_")), None)


def postprocess(prediction: str) -> str:
    """RULER's postprocess_pred: stripped, control characters made newlines."""
    return re.sub(r"[\x00-\x1f]", "\n", prediction.strip()).strip()


@dataclass
class Ruler(Task):
    name: ClassVar[str] = "ruler"
    metrics: ClassVar[tuple[str, ...]] = ("string_match_all", "string_match_part")

    task: str = "niah_single_1"  # RULER's task name, as in its synthetic.yaml
    data_dir: str = ""  # RULER's benchmark_root/MODEL/synthetic (the suite's `data_dir` by default)
    path: str = "{length}/data/{task}/validation.jsonl"  # under data_dir, per cell length
    family: str = ""  # niah, vt, cwe, fwe or qa; by default from the task name

    def __post_init__(self) -> None:
        self.family = self.family or family_of(self.task) or ""
        if self.family not in FAMILIES:
            raise ValueError(f"family of task {self.task!r} is unknown: set family to one of {', '.join(FAMILIES)}")
        if "{length}" not in self.path:
            raise ValueError(f"path must name the cell's {{length}} (RULER prepares one file per length), got {self.path!r}")

    def label(self) -> str:
        return f"{self.name}/{self.task}"

    def file(self, length: int) -> Path:
        return resolve(self.data_dir, self.path.format(length=length, task=self.task))

    def chat_by_default(self) -> bool:
        return False  # the files carry RULER's model template already

    def data_problems(self, lengths: Sequence[int] = ()) -> list[str]:
        problems: list[str] = []
        for length in lengths:
            try:
                records = read_records(self.file(length))
            except DataError as exc:
                problems.append(str(exc))
                continue
            problems += check_fields(self.file(length), records, FIELDS, "RULER prepared (task `ruler`)")
            for number, record in records[:1] if not problems else []:
                try:
                    self.split(record["input"])
                except DataError as exc:
                    problems.append(f"{self.file(length)}:{number}: {exc}")
        return problems

    def split(self, text: str) -> tuple[int, int]:
        """Where the context starts and ends in a rendered input."""
        family = FAMILIES[self.family]
        starts = list(re.finditer(family.start, text))
        ends = list(re.finditer(family.end, text))
        if not starts or not ends:
            raise DataError(f"its input does not read as RULER's {self.family} template; set `family` to the task's own")
        start = (starts[-1] if family.last else starts[0]).end()
        end = ends[-1].start()
        if end < start:
            raise DataError(f"its input does not read as RULER's {self.family} template (the question comes before the context)")
        return start, end

    def examples(self, prompter: Prompter, length: int, n: int, seed: int) -> list[Example]:
        return [self.from_record(prompter, length, line, r) for line, r in read_records(self.file(length))[:n]]

    def from_record(self, prompter: Prompter, length: int, line: int, record: dict[str, Any]) -> Example:
        text = record["input"]
        bos = prompter.style.bos
        start, end = self.split(text)
        before = ("" if text.startswith(bos) else bos) + text[:start]
        after = text[end:] + record["answer_prefix"]
        context = text[start:end]
        tokens = len(prompter.encode(before)) + len(prompter.encode(after))
        return Example(
            id=f"{self.task}-{length}-{record.get('index', line)}",
            context=context,
            query=after,
            references=tuple(record["outputs"]),
            requested_length=length,
            actual_length=tokens + len(prompter.encode(context)),
            answer_tokens=FAMILIES[self.family].max_new_tokens,
            metadata={"line": line, "ruler_length": record["length"]},
            frame=Frame(before, after, tokens, "instruct", record["answer_prefix"]),
            first_line=False,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        said = postprocess(prediction)
        if FAMILIES[self.family].metric == "string_match_part":
            return {"string_match_part": string_match_part(said, example.references)}
        return {"string_match_all": string_match_all(said, example.references)}

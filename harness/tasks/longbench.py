"""`longbench`: LongBench's 16 English data sets from disk, with their authors' prompts and metrics.

Asked and scored as LongBench asks and scores them (Bai et al., "LongBench: A Bilingual,
Multitask Benchmark for Long Context Understanding", 2023).

Each data set keeps its authors' prompt, generation cap and metric (`prompts/longbench.json`:
qa_f1, rouge, classification, retrieval, count, code_sim; the first-line rule of trec, triviaqa and
samsum; the best score over the references). A record longer than the cell is cut in the middle of
its context, as LongBench cuts its prompts, so that the whole prompt fits the cell's length. With
`longbench_e` (LongBench-E, `{dataset}_e.jsonl`) a cell takes the records of one of LongBench-E's
length buckets: cells up to 4k the 0-4k records, up to 8k the 4-8k records, longer cells the 8k+
records (by the records' `length`, in words); otherwise every cell takes the first records of
`{dataset}.jsonl`. Files: `data_dir/{dataset}.jsonl`, as THUDM/LongBench's data.zip unpacks, or,
with no data_dir, the cache `lcbench data fetch longbench` fills.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task
from lcbench.tasks.data_files import DataError, check_fields, cut_middle, data_folder, read_records, resolve
from lcbench.tasks.longbench_metrics import METRICS, best

FIELDS: dict[str, type] = {"context": str, "input": str, "answers": list, "length": int}
BUCKETS = (("0-4k", 0, 4000, 4096), ("4-8k", 4000, 8000, 8192), ("8k+", 8000, 1 << 62, 1 << 62))  # name, words, cells up to


@functools.cache
def data_sets() -> dict[str, dict[str, Any]]:
    table = json.loads((Path(__file__).parent / "prompts" / "longbench.json").read_text())
    return {name: spec for name, spec in table.items() if not name.startswith("_")}


def bucket(length: int) -> tuple[str, int, int]:
    """LongBench-E's bucket for a cell of `length` tokens: (name, first word count, past the last)."""
    name, low, high, _ = next(b for b in BUCKETS if length <= b[3])
    return name, low, high


@dataclass
class LongBench(Task):
    name: ClassVar[str] = "longbench"
    metrics: ClassVar[tuple[str, ...]] = ("qa_f1", "rouge", "classification", "retrieval", "count", "code_sim")

    dataset: str = "hotpotqa"
    data_dir: str = ""  # the folder of the data set's .jsonl files (the suite's `data_dir`; none: the fetched cache)
    longbench_e: bool = True  # LongBench-E's file, its length buckets as the cells

    def __post_init__(self) -> None:
        if self.dataset not in data_sets():
            raise ValueError(f"dataset must be one of LongBench's English sets: {', '.join(data_sets())}; got {self.dataset!r}")
        if self.longbench_e and not self.spec["e"]:
            raise ValueError(f"{self.dataset} has no LongBench-E file; set longbench_e: false")

    @property
    def spec(self) -> dict[str, Any]:
        return data_sets()[self.dataset]

    @property
    def path(self) -> Path:
        return resolve(data_folder(self.data_dir, "longbench"), f"{self.dataset}{'_e' if self.longbench_e else ''}.jsonl")

    def label(self) -> str:
        return f"{self.name}/{self.dataset}"

    def instruction(self) -> str:
        return str(self.spec["prompt"])

    def chat_by_default(self) -> bool:
        return bool(self.spec["chat"])

    def data_problems(self, lengths: Sequence[int] = ()) -> list[str]:
        try:
            records = read_records(self.path, fetch="longbench")
        except DataError as exc:
            return [str(exc)]
        problems = check_fields(self.path, records, FIELDS, "LongBench v1 (task `longbench`)")
        named = {r.get("dataset") for _, r in records} - {None, self.dataset, f"{self.dataset}_e"}
        if named:
            problems.append(
                f"{self.path} holds records of {', '.join(sorted(map(str, named)))}, not {self.dataset}; check the file name"
            )
        if self.longbench_e and not problems:
            for length in lengths:
                name, low, high = bucket(length)
                if not any(low <= r["length"] < high for _, r in records):
                    problems.append(f"{self.path}: no record in LongBench-E's {name} bucket for the cells of length {length}")
        return problems

    def examples(self, prompter: Prompter, length: int, n: int, seed: int) -> list[Example]:
        """The first `n` records of the cell (of its LongBench-E bucket), in file order."""
        name, low, high = bucket(length)
        records = read_records(self.path, fetch="longbench")
        chosen = [(i, r) for i, r in records if not self.longbench_e or low <= r["length"] < high]
        if not chosen:
            raise DataError(f"{self.path}: no record in LongBench-E's {name} bucket for the cells of length {length}")
        return [self.from_record(prompter, length, line, record) for line, record in chosen[:n]]

    def from_record(self, prompter: Prompter, length: int, line: int, record: dict[str, Any]) -> Example:
        spec = self.spec
        frame = prompter.frame(Parts(record["input"], record["input"]))
        if length - frame.tokens < 1:
            raise LengthError(
                f"length {length} does not hold {self.dataset}'s prompt of {frame.tokens} tokens without its context"
            )
        context, tokens = cut_middle(prompter, record["context"], length - frame.tokens)
        return Example(
            id=str(record.get("_id") or f"{self.dataset}-{line}"),
            context=context,
            query=record["input"],
            references=tuple(record["answers"]),
            requested_length=length,
            actual_length=frame.tokens + tokens,
            answer_tokens=int(spec["max_new_tokens"]),
            metadata={
                "line": line,
                "words": record["length"],
                "cut": context != record["context"],
                "all_classes": record.get("all_classes"),
            },
            frame=frame,
            stop=tuple(spec["stop"]),
            first_line=bool(spec["first_line"]),
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        metric = str(self.spec["metric"])
        classes = example.metadata.get("all_classes") or ()
        return {metric: best(METRICS[metric], prediction, example.references, classes)}

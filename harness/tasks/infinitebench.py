"""`infinitebench`: InfiniteBench's nine English tasks from disk, with its authors' prompts and scoring.

Zhang et al., "∞Bench: Extending Long Context Evaluation Beyond 100K Tokens", 2024
(https://arxiv.org/abs/2402.13718); the prompts, generation caps and scorers are OpenBMB/InfiniteBench's
`src/prompt.py`, `src/eval_utils.py` and `src/compute_scores.py`.

`task` is one of passkey (Retrieve.PassKey), number_string (Retrieve.Number), kv_retrieval
(Retrieve.KV), longbook_sum_eng (En.Sum), longbook_qa_eng (En.QA), longbook_choice_eng (En.MC),
longdialogue_qa_eng (En.Dia), math_find (Math.Find) and code_debug (Code.Debug). Its prompt is
InfiniteBench's, word for word: `templates: open` (default) the one it asks its open models with
(Yarn-Mistral, Yi, ChatGLM3), which ends in an answer prefix where it has one ("The pass key is"),
`templates: gpt4` the one it asks GPT-4 with. Scores: accuracy as each task's scorer reads the
output, token F1 for En.QA and ROUGE-Lsum for En.Sum (`infinitebench_metrics`). A record longer than
the cell is cut in the middle of its context, as InfiniteBench cuts its prompts to 128k tokens (the
instruction and question are kept whole here). Every cell takes the first records of
`data_dir/{task}.jsonl` (xinrongzhang2022/InfiniteBench's files), or, with no data_dir, of the cache
`lcbench data fetch infinitebench` fills.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lcbench.errors import did_you_mean
from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task
from lcbench.tasks.data_files import DataError, check_fields, cut_middle, data_folder, read_records, resolve
from lcbench.tasks.infinitebench_metrics import SCORERS

FAMILY = "InfiniteBench (task `infinitebench`)"
FIELDS: dict[str, type] = {"context": str, "input": str, "answer": object}
CHOICES = ("longbook_choice_eng", "code_debug")  # the tasks whose records carry four `options`
TARGET = re.compile(r"The .+ of")  # math_find: what the input asks for ("The largest number of the list is: ")


@dataclass(frozen=True)
class Prompt:
    """One of InfiniteBench's templates: {context} and what `create_prompt` fills ({input}, {question}, {OPTION_A}
    to {OPTION_D}, {prefix}), and the answer prefix it ends with, if any."""

    text: str
    answer_prefix: str = ""

    def split(self) -> tuple[str, str]:
        """(lcbench's instruction, the question's template): the text after the context, less the answer prefix
        (which the instruct format puts back on a line of its own), is the question; the newlines that open it
        stay in the instruction, so that `instruction + "\\n" + answer_prefix` is InfiniteBench's text."""
        head, tail = self.text.split("{context}")
        if self.answer_prefix:
            tail = tail.removesuffix(self.answer_prefix).removesuffix("\n")
        question = tail.lstrip("\n")
        return head + "{context}" + tail[: len(tail) - len(question)] + "{question}", question


OPTIONS = "\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}"
MASK = 'Below is a dialogue script where one random occurrence of a character name is replaced with "$$MASK$$", and you should try to guess who that character is.\n\n'  # noqa: E501
HIDDEN = "There is an important info hidden inside a lot of irrelevant text. Find it"
KV = "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}"
# yarn_mistral_templates: what InfiniteBench asks Yarn-Mistral, Yi-6B/34B-200K and ChatGLM3 with.
OPEN = {
    "passkey": Prompt(f"{HIDDEN} and memorize it. I will quiz you about the important information.\n\n{{context}}\n\n{{input}}\n\nThe pass key is", "The pass key is"),  # noqa: E501
    "number_string": Prompt(f"{HIDDEN}. I will quiz you about the important information there.\n\n{{context}}\n\n{{input}}\n\nThe sequence of digits is", "The sequence of digits is"),  # noqa: E501
    "kv_retrieval": Prompt(KV),
    "longbook_sum_eng": Prompt("Summarize the book below.\n\n{context}\n\nSummary:", "Summary:"),
    "longbook_choice_eng": Prompt(f"Read the book and answer the question.\n\n{{context}}\n\nQuestion: {{question}}{OPTIONS}\n\nThe letter of the correct answer is", "The letter of the correct answer is"),  # noqa: E501
    "longbook_qa_eng": Prompt("Read the book and answer the question. Be very concise in your answer.\n\n{context}\n\nQuestion: {question}\nAnswer:", "Answer:"),  # noqa: E501
    "longdialogue_qa_eng": Prompt(f"{MASK}{{context}}\n\nThe name that has been replaced with $$MASK$$ is likely", "The name that has been replaced with $$MASK$$ is likely"),  # noqa: E501
    "math_find": Prompt("{prefix}\n\n{context}\n\n{input}"),
    "code_debug": Prompt(f"Following is a Python code where exactly one of the functions/methods has a deliberate error that makes it crash.\n\n{{context}}\n\nOptions:{OPTIONS}\n\nThe correct option is:", "The correct option is:"),  # noqa: E501
}  # fmt: skip
# gpt4_templates: what InfiniteBench asks GPT-4 with (no answer prefix; "funtion" is theirs).
GPT4 = {
    "passkey": Prompt(f"{HIDDEN} and memorize them. I will quiz you about the important information there.\n\n{{context}}\n\n{{input}}"),  # noqa: E501
    "number_string": Prompt(f"{HIDDEN}. I will quiz you about the important information there.\n\n{{context}}\n\n{{input}}"),
    "kv_retrieval": Prompt(KV),
    "longbook_sum_eng": Prompt("Summarize the following book.\n\n{context}"),
    "longbook_choice_eng": Prompt("Read the book and answer the question.\n\n{context}\n\nQuestion: {question}\n\nOnly one of the following options is correct, tell me the answer using one single letter (A, B, C, or D). Don't say anything else." + OPTIONS),  # noqa: E501
    "longbook_qa_eng": Prompt("Read the book below and answer a question.\n\n{context}\n\nQuestion: {question}\n\nBe very concise."),  # noqa: E501
    "longdialogue_qa_eng": Prompt(f'{MASK}The dialogue:\n\n---\n\n{{context}}\n\n---\n\nEnd of dialogue.\n\nWhich character is most likely "$$MASK$$"? Just say the name used by the scriptwriter (before the colon marks) of one single character and nothing else.'),  # noqa: E501
    "math_find": Prompt("{prefix}\n\n{context}\n\n{input}"),
    "code_debug": Prompt(f"There is ONLY ONE function in the large project that is deliberately made to include an obvious error. Please find the function that contains the most obvious errors. I will give you four options to narrow your scope. You can inspect the options and think. Eventually, tell me the answer using one single letter (A, B, C, or D).\n\n{{context}}\n\nWhich funtion has deliberate error?{OPTIONS}\n\nYou should first find the functions in the options. Repeat their content, inspect through code, and at last give me your answer for the function that has the deliberate and obvious error in A, B, C, or D."),  # noqa: E501
}  # fmt: skip
TEMPLATES = {"open": OPEN, "gpt4": GPT4}
TASKS = tuple(OPEN)
# DATA_NAME_TO_MAX_NEW_TOKENS
MAX_NEW_TOKENS = {
    "passkey": 6, "number_string": 12, "kv_retrieval": 50, "longbook_sum_eng": 1200, "longbook_choice_eng": 40,
    "longbook_qa_eng": 40, "longdialogue_qa_eng": 40, "math_find": 3, "code_debug": 5,
}  # fmt: skip


def values(task: str, record: dict[str, Any]) -> dict[str, str]:
    """What `create_prompt` fills the template with; math_find's {prefix} asks for what its input names."""
    found: dict[str, str] = {"input": record["input"], "question": record["input"], "prefix": ""}
    if task in CHOICES:
        found.update({f"OPTION_{letter}": str(option) for letter, option in zip("ABCD", record["options"])})
    if task == "math_find":
        target = TARGET.findall(record["input"])
        if not target:
            raise DataError(f"math_find's input names no target ('The ... of'): {record['input']!r:.80}")
        found["prefix"] = f"What is {target[0].lower()[:-3]} in the following list?"
    return found


def number_in(answer: Any) -> int | float | None:
    """A JSON number, or a string that reads as one ("88": an integer, "44.5": a float)."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            return None
    return answer if isinstance(answer, (int, float)) and not isinstance(answer, bool) else None


def labels(task: str, record: dict[str, Any]) -> tuple[str, ...]:
    """The labels InfiniteBench scores against (`get_answer`): for the multiple-choice tasks the right option and
    its letter; for math_find the number as JSON, so that an integer stays one (a string that reads as a number is
    taken as that number; InfiniteBench's scorer would refuse it); else the answers as text."""
    answer = record["answer"]
    if task in CHOICES:
        if isinstance(answer, list) and len(answer) == 2 and answer[1] in ("A", "B", "C", "D"):
            return str(answer[0]), answer[1]
        text = answer[0] if isinstance(answer, list) and len(answer) == 1 else answer
        if text not in record["options"]:
            raise DataError(f"answer {answer!r:.60} is not one of the options")
        return str(text), "ABCD"[record["options"].index(text)]
    answers = answer if isinstance(answer, list) else [answer]
    if not answers:
        raise DataError("answer is empty")
    if task == "math_find":
        number = number_in(answers[0])
        if number is None:
            raise DataError(f"math_find's answer must be a number, got {answers[0]!r:.60}")
        return (json.dumps(number),)
    return tuple(str(a) for a in answers)


@dataclass
class InfiniteBench(Task):
    name: ClassVar[str] = "infinitebench"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "qa_f1", "rouge_lsum")
    fields: ClassVar[tuple[str, ...]] = ("prefix",)

    task: str = "passkey"  # the file's name: passkey, number_string, ..., code_debug
    templates: str = "open"  # open: InfiniteBench's prompts for open models; gpt4: its prompts for GPT-4
    data_dir: str = ""  # the folder of the .jsonl files (the suite's `data_dir`; none: the fetched cache)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(did_you_mean(self.task, TASKS, "InfiniteBench English task"))
        if self.templates not in TEMPLATES:
            raise ValueError(f"templates must be open (its open models' prompts) or gpt4 (GPT-4's), got {self.templates!r}")

    @property
    def prompt(self) -> Prompt:
        return TEMPLATES[self.templates][self.task]

    @property
    def path(self) -> Path:
        return resolve(data_folder(self.data_dir, "infinitebench"), f"{self.task}.jsonl")

    def label(self) -> str:
        return f"{self.name}/{self.task}"

    def instruction(self) -> str:
        return self.prompt.split()[0]

    def data_problems(self, lengths: Sequence[int] = ()) -> list[str]:
        try:
            records = read_records(self.path, fetch="infinitebench")
        except DataError as exc:
            return [str(exc)]
        fields = {**FIELDS, "options": list} if self.task in CHOICES else FIELDS
        problems = check_fields(self.path, records, fields, FAMILY)
        if problems:
            return problems
        for line, record in records:
            try:
                self.check(record)
            except DataError as exc:
                problems.append(f"{self.path}:{line}: {exc}")
            if len(problems) >= 5:
                return [*problems, "(first problems only)"]
        return problems

    def check(self, record: dict[str, Any]) -> None:
        """Raise DataError where InfiniteBench could not ask or score `record`."""
        if self.task in CHOICES and len(record["options"]) != 4:
            raise DataError(f"{self.task} needs four options, got {len(record['options'])}")
        self.parts(record)
        labels(self.task, record)

    def parts(self, record: dict[str, Any]) -> Parts:
        filled = values(self.task, record)
        question = self.prompt.split()[1].format(**filled)
        return Parts(question, question, self.prompt.answer_prefix, {"prefix": filled["prefix"]})

    def examples(self, prompter: Prompter, length: int, n: int, seed: int) -> list[Example]:
        """The first `n` records, in file order."""
        records = read_records(self.path, fetch="infinitebench")[:n]
        return [self.from_record(prompter, length, line, record) for line, record in records]

    def from_record(self, prompter: Prompter, length: int, line: int, record: dict[str, Any]) -> Example:
        parts = self.parts(record)
        frame = prompter.frame(parts)
        if length - frame.tokens < 1:
            raise LengthError(f"length {length} does not hold {self.task}'s prompt of {frame.tokens} tokens without its context")
        context, tokens = cut_middle(prompter, record["context"], length - frame.tokens)
        return Example(
            id=f"{self.task}-{record.get('id', line)}",
            context=context,
            query=parts.question,
            references=labels(self.task, record),
            requested_length=length,
            actual_length=frame.tokens + tokens,
            answer_tokens=MAX_NEW_TOKENS[self.task],
            metadata={"line": line, "cut": context != record["context"]},
            frame=frame,
            first_line=False,  # InfiniteBench scores the whole output
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        metric, scorer = SCORERS[self.task]
        return {metric: scorer(prediction, example.references)}

"""The task contract: examples of an exact token length from a seed, and a score per prediction.

A task builds its examples through a `Prompter` (`lcbench.prompt`): the prompter counts the
model's tokens and gives the prompt around the context in the suite's format."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from lcbench.prompt import Frame, Prompter

__all__ = ["Encoder", "Example", "Frame", "LengthError", "Prompter", "Question", "Task", "exact_match", "fill", "normalize"]


class Encoder(Protocol):
    """What the fill helpers need: token counts (a `Prompter` is one)."""

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class Question:
    """One of the questions asked in turn of an example's context (shared-context mode): its prompt
    is the example's `before + context`, then its own `after` (its frame's, or a newline and the query)."""

    query: str
    references: tuple[str, ...]
    actual_length: int  # its whole prompt's tokens
    frame: Frame | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """One input. The prompt is `before + context + after` (see `lcbench.prompt`); only the
    context may be cut. Without a `frame` it is plain: the context, a newline and the query.

    `output` says what the model produces: a short `answer` to the query, or a `transform`
    of the whole context (translation, summary), whose length follows the context's.
    `boundaries` are token offsets in `context` where a unit (sentence, turn, function) starts.
    """

    id: str
    context: str
    query: str
    references: tuple[str, ...]
    requested_length: int
    actual_length: int
    output: Literal["answer", "transform"] = "answer"
    answer_tokens: int = 8
    boundaries: tuple[int, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    max_new_cap: int | None = None  # the suite's `max_new_tokens`, where it sets one
    no_answer: str = "none"  # what the answer is when the context does not hold one
    frame: Frame | None = None  # the prompt around the context, in the suite's format
    stop: tuple[str, ...] = ()  # the output is cut at the first of these (non-plain formats)
    first_line: bool = True  # an answer is the output's first line (non-plain formats)
    # shared-context mode: the questions asked in turn of one prefill of the context, the example's own
    # first (empty: the one query); `asked()` gives each as an example of its own
    questions: tuple[Question, ...] = ()

    def __post_init__(self) -> None:
        for j, question in enumerate(self.questions):
            if (question.frame.before if question.frame else "") != self.before:
                raise ValueError(
                    f"question {j} of {self.id} changes the prompt before the context: the template puts the question "
                    "or its fields before {context}, so its questions cannot share one prefill; put them after {context}"
                )

    def asked(self) -> list[Example]:
        """The example once per question it carries, each with that question's query, references,
        frame and length (ids `<id>-q<j>`, metadata `question: j`): what a one-question-per-prefill
        run reads and what each answer is scored against. Without questions, the example itself."""
        if not self.questions:
            return [self]
        return [
            dataclasses.replace(
                self,
                id=f"{self.id}-q{j}",
                query=question.query,
                references=question.references,
                actual_length=question.actual_length,
                frame=question.frame,
                metadata={**self.metadata, **question.metadata, "question": j},
                questions=(),
            )
            for j, question in enumerate(self.questions)
        ]

    @property
    def before(self) -> str:
        return self.frame.before if self.frame else ""

    @property
    def after(self) -> str:
        return self.frame.after if self.frame else "\n" + self.query

    @property
    def format(self) -> str:
        return self.frame.format if self.frame else "plain"

    def answer_of(self, output: str) -> str:
        """The answer in a raw output: cut at a stop string, an echoed answer prefix removed, the
        first line of a short answer. Plain prompts (the reference models') are scored as they come."""
        if self.format == "plain":
            return output
        for stop in self.stop:
            output = output.split(stop, 1)[0]
        prefix = self.frame.answer_prefix.strip() if self.frame else ""
        if prefix and output.strip().lower().startswith(prefix.lower()):
            output = output.strip()[len(prefix) :]
        if self.first_line and self.output == "answer":
            output = output.lstrip("\n").split("\n", 1)[0]  # LongBench's rule for short answers
        return output

    def max_new_tokens(self, context_tokens: int) -> int:
        """A bound on the output for a call that sees `context_tokens` of this context."""
        bound = self.answer_tokens
        if self.output == "transform":
            bound += math.ceil(1.25 * context_tokens)
        return min(bound, self.max_new_cap) if self.max_new_cap else bound


class LengthError(ValueError):
    """The requested length cannot hold the query and answer."""


@dataclass
class Task:
    """Base class. Subclasses are dataclasses whose fields are their params."""

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ("exact_match",)  # the first is the headline metric
    # The instruct and chat prompt: {context} and {question}, and any of `fields` (see lcbench.prompt).
    template: ClassVar[str] = "Read the following text and answer the question below.\n\n{context}\n\nQuestion: {question}"
    fields: ClassVar[tuple[str, ...]] = ()  # values each example fills, which a suite's template may name

    @classmethod
    def vocabulary(cls) -> list[str]:
        """Every word the generator can emit in the plain format: the reference tokenizer covers them all."""
        return []

    def label(self) -> str:
        """How tables name this task where the suite gives no label (a data-set task names its set)."""
        return self.name

    def instruction(self) -> str:
        """The instruct and chat template (a data set's own where it has one)."""
        return self.template

    def chat_by_default(self) -> bool:
        """Whether `auto` uses the chat template where the tokenizer has one (LongBench asks some of
        its few-shot and code sets without it)."""
        return True

    def data_problems(self, lengths: Sequence[int] = ()) -> list[str]:
        """What is wrong with the files a data-set task reads (missing, wrong fields), checked
        before any model loads; a generator reads none."""
        return []

    def examples(self, prompter: Prompter, length: int, n: int, seed: int) -> list[Example]:
        """`n` examples for prompts (`before + context + after`) of `length` tokens as `prompter`
        counts them, in its format: a generator's examples 0 to n - 1."""
        return [self.example(prompter, length, seed, i) for i in range(n)]

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        """The `index`-th example: a generator cycles its variants (depths, modes) with the index."""
        raise NotImplementedError

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        raise NotImplementedError

    @classmethod
    def corpus_scores(cls, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        """Metrics defined over a whole cell rather than averaged per example (e.g. corpus BLEU)."""
        return {}


def normalize(text: str) -> str:
    """The first line, lower-cased, with surrounding blanks and a final period removed."""
    line = text.strip().split("\n", 1)[0].strip().lower()
    return line.rstrip(" .")


def exact_match(prediction: str, references: Iterable[str]) -> float:
    return float(normalize(prediction) in {normalize(r) for r in references})


@dataclass(frozen=True)
class Filled:
    context: str
    boundaries: tuple[int, ...]
    tokens: int


def joined_cost(tokenizer: Encoder, unit: str, first: bool) -> int:
    """The tokens `unit` adds to a text it is joined to by a space (its own count when it opens
    the text): what a byte-level BPE makes of it in context, and the same as alone for words."""
    return len(tokenizer.encode(unit if first else " " + unit))


def fill(units: Iterable[str], budget: int, tokenizer: Encoder, pad: str = ".") -> Filled:
    """Join `units` (whole, in order) into a context of exactly `budget` tokens: units are taken
    while they fit, then `pad` words top it up.

    Counts are per unit, as joined (a unit is never split). Where a tokenizer's joins are not
    additive (a subword tokenizer may merge across them), the joined text is measured and pads
    are dropped or added until the count is exact; the boundaries then stay estimates.
    """
    parts: list[str] = []
    boundaries: list[int] = []
    used = 0
    for unit in units:
        cost = joined_cost(tokenizer, unit, not parts)
        if used + cost > budget:
            break
        boundaries.append(used)
        parts.append(unit)
        used += cost
    pad_cost = max(1, joined_cost(tokenizer, pad, not parts))
    while used + pad_cost <= budget:
        parts.append(pad)
        used += pad_cost
    tokens = len(tokenizer.encode(" ".join(parts)))
    for _ in range(16):
        if tokens > budget and parts:
            excess = tokens - budget
            while excess > 0 and parts:
                excess -= joined_cost(tokenizer, parts.pop(), not parts)
        elif tokens < budget:
            parts += [pad] * (budget - tokens)
        else:
            break
        tokens = len(tokenizer.encode(" ".join(parts)))
    while tokens > budget and parts:  # never over: the prompt must fit the length it was asked for
        parts.pop()
        tokens = len(tokenizer.encode(" ".join(parts)))
    return Filled(" ".join(parts), tuple(boundaries[: len(parts)]), tokens)

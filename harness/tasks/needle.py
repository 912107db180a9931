"""`needle`: retrieval of a key's value at a controlled depth, with distractors (RULER's NIAH).

Statements read `KEY is VALUE .`; the query `what is KEY ?` asks for one key. `mode` picks the
haystack: `single` (one statement in filler sentences), `multikey` (a run of distractor
statements with other keys), `multivalue` (the key is stated twice, at two depths; the answer is
both values, in any order, as RULER scores its multi-value needles). A share of examples asks for
an absent key, whose answer is `none`, so that strategies that look at pieces of the input
(map-reduce) are scored honestly.

`questions_per_context: k` (shared-context mode, as SCBench's multi-request mode) asks k questions of
each context in turn: the example's own key, then k - 1 distractor keys stated in the haystack (their
values are known), each asked as an absent key instead at the same share.
Hsieh et al., "RULER: What's the Real Context Size of Your Long-Context Language Models?", 2024.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import ClassVar, Literal

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Question, Task, fill, normalize
from lcbench.tasks.metrics import string_match_all
from lcbench.tasks.words import filler_sentence, pool

MODES = ("single", "multikey", "multivalue")


def statement(key: str, value: str) -> str:
    return f"{key} is {value} ."


@dataclass
class Needle(Task):
    name: ClassVar[str] = "needle"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match",)  # non-plain formats: string_match_all first
    template: ClassVar[str] = (
        "Some special magic values are hidden within the following text, each stated as `KEY is VALUE .`. "
        "Make sure to memorize them. I will quiz you about one of them afterwards.\n{context}\n{question}"
    )
    fields: ClassVar[tuple[str, ...]] = ("key",)

    mode: Literal["single", "multikey", "multivalue", "mixed"] = "multikey"
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    absent_share: float = 0.2  # share of examples whose key is not in the context
    questions_per_context: int = 1  # questions asked in turn of one prefill of each context (shared-context mode)

    def __post_init__(self) -> None:
        self.depths = tuple(self.depths)
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError(f"depths must be a non-empty list of numbers in [0, 1], got {list(self.depths)}")
        if not 0.0 <= self.absent_share <= 1.0:
            raise ValueError(f"absent_share must be in [0, 1], got {self.absent_share}")
        if self.mode not in (*MODES, "mixed"):
            raise ValueError(f"mode must be one of {', '.join(MODES)} or mixed; got {self.mode!r}")
        if not 1 <= self.questions_per_context <= 16:
            raise ValueError(f"questions_per_context must be in [1, 16], got {self.questions_per_context}")
        if self.questions_per_context > 1 and self.mode not in ("multikey", "multivalue"):
            raise ValueError(
                f"questions_per_context {self.questions_per_context} asks about the haystack's distractor statements, "
                f"which mode {self.mode} does not always have; use mode multikey or multivalue"
            )

    @classmethod
    def vocabulary(cls) -> list[str]:
        return [*pool("name"), *pool("value"), *pool("source"), "is", ".", "what", "?", "none"]

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"needle/{self.mode}/{seed}/{length}/{index}")
        mode = MODES[index % 3] if self.mode == "mixed" else self.mode
        keys = rng.sample(pool("name"), len(pool("name")))
        values = pool("value")
        asked, others = keys[0], keys[1:]
        frame = prompter.frame(self.parts(asked, mode))
        budget = length - frame.tokens
        needle_cost = len(prompter.encode(statement(asked, values[0])))
        minimum = length - budget + 2 * needle_cost + 1
        if budget < 2 * needle_cost + 1:
            raise LengthError(f"length {length} is too short for needle: the minimum is {minimum}")
        units = self.haystack(prompter, mode, rng, others, budget - 2 * needle_cost)
        absent = rng.random() < self.absent_share
        depth = self.depths[index % len(self.depths)]
        answers: list[str] = []
        if not absent:
            count = 2 if mode == "multivalue" else 1
            answers = rng.sample(values, count)
            spots = [depth] if count == 1 else sorted([depth, rng.choice(self.depths)])
            for i, (spot, value) in enumerate(zip(spots, answers)):
                units.insert(round(spot * len(units)) + i, statement(asked, value))
        filled = fill(units, budget, prompter)
        example = Example(
            id=f"needle-{length}-{seed}-{index}",
            context=filled.context,
            query=f"what is {asked} ?",
            references=(" ".join(answers) or "none",),
            requested_length=length,
            actual_length=filled.tokens + length - budget,
            answer_tokens=4,
            boundaries=filled.boundaries,
            metadata={"depth": None if absent else depth, "absent": absent, "mode": mode},
            frame=frame,
        )
        if self.questions_per_context == 1:
            return example
        first = Question(example.query, example.references, example.actual_length, frame)
        further = self.further_questions(prompter, rng, units, others, filled.context, filled.tokens)
        return dataclasses.replace(example, questions=(first, *further))

    @staticmethod
    def parts(key: str, mode: str) -> Parts:
        if mode == "multivalue":
            question = f"What are all the special magic values for {key} mentioned in the provided text?"
            prefix = f"The special magic values for {key} mentioned in the provided text are"
        else:
            question = f"What is the special magic value for {key} mentioned in the provided text?"
            prefix = f"The special magic value for {key} mentioned in the provided text is"
        question += " If the text does not mention it, answer none."
        return Parts(f"what is {key} ?", question, prefix, {"key": key})

    def further_questions(
        self, prompter: Prompter, rng: random.Random, units: list[str], keys: list[str], context: str, context_tokens: int
    ) -> list[Question]:
        """The k - 1 questions after the example's own: distractor keys whose statements (among `units`)
        made it into `context`, each replaced at `absent_share` by a key of `keys` the context never states."""
        stated = {unit.split(" is ", 1)[0]: i for i, unit in enumerate(units) if f" {unit} " in f" {context} "}
        values = {unit.split(" is ", 1)[0]: unit.split(" is ", 1)[1].removesuffix(" .") for unit in units}
        unstated = [key for key in keys if key not in values]
        distractors = set(keys)
        present = [key for key in stated if key in distractors]  # the asked key's own statements are not distractors
        questions = []
        for key in rng.sample(present, min(len(present), self.questions_per_context - 1)):
            absent = bool(unstated) and rng.random() < self.absent_share
            if absent:
                key = unstated.pop(rng.randrange(len(unstated)))
            frame = prompter.frame(self.parts(key, "multikey"))  # a distractor has one value
            depth = None if absent else round(stated[key] / max(1, len(units) - 1), 3)
            questions.append(
                Question(
                    f"what is {key} ?",
                    ("none" if absent else values[key],),
                    context_tokens + frame.tokens,
                    frame,
                    {"depth": depth, "absent": absent},
                )
            )
        return questions

    def haystack(self, prompter: Prompter, mode: str, rng: random.Random, keys: list[str], budget: int) -> list[str]:
        """Distractor units filling `budget` tokens: filler sentences or statements of other keys."""
        units: list[str] = []
        used, recent = 0, list[str]()
        key_iter = iter(keys)
        while True:
            if mode == "single":
                unit = filler_sentence(rng, recent)
            else:
                key = next(key_iter, None)
                if key is None:
                    raise LengthError(f"needle has {len(keys)} distinct keys; this length needs more")
                unit = statement(key, rng.choice(pool("value")))
            cost = len(prompter.encode(unit))
            if used + cost > budget:
                return units
            units.append(unit)
            used += cost

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        """Exact match of the values said, in any order: a key stated twice has no first value.
        Outside the plain format RULER's string_match_all leads: each value found in the output."""
        said = sorted(normalize(prediction).split())
        exact = float(any(said == sorted(normalize(r).split()) for r in example.references))
        if example.format == "plain":
            return {"exact_match": exact}
        return {"string_match_all": string_match_all(prediction, example.references[0].split()), "exact_match": exact}

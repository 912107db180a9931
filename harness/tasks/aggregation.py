"""`aggregation`: which entities are mentioned most often across the whole document (the
summarization family: RULER's common-words extraction). Sentences name a few entities each; three
of them are mentioned clearly more often than the rest. The answer lists those three, most
frequent first. Metrics: set F1 (headline), exact match of the set, ROUGE-L of the text."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task, fill
from lcbench.tasks.metrics import rouge_l, set_f1, string_match_all
from lcbench.tasks.words import pool

QUERY = "most common ?"


@dataclass
class Aggregation(Task):
    name: ClassVar[str] = "aggregation"
    metrics: ClassVar[tuple[str, ...]] = ("set_f1", "exact_match", "rouge_l")  # non-plain: string_match_all first
    template: ClassVar[str] = (
        "Below is a list of words in short sentences. Some words appear more often than others. "
        "Memorize the ones that appear most often.\n{context}\n{question}"
    )
    fields: ClassVar[tuple[str, ...]] = ("top",)

    top: int = 3
    others: int = 24  # entities mentioned less often
    lead: float = 2.0  # how many times more often a top entity is mentioned than another

    def __post_init__(self) -> None:
        if not 1 <= self.top <= 8:
            raise ValueError(f"top must be between 1 and 8, got {self.top}")
        if self.others < 1:
            raise ValueError(f"others must be at least 1, got {self.others}")
        if self.lead <= 1.0:
            raise ValueError(f"lead must be above 1 (top entities must stand out), got {self.lead}")

    @classmethod
    def vocabulary(cls) -> list[str]:
        return [*pool("value"), ".", *QUERY.split()]

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"aggregation/{seed}/{length}/{index}")
        question = f"What are the {self.top} most common words in the above list?"
        prefix = f"Answer: The top {self.top} words that appear most often in the list are:"
        frame = prompter.frame(Parts(QUERY, question, prefix, {"top": str(self.top)}))
        budget = length - frame.tokens
        entities = rng.sample(pool("value"), self.top + self.others)
        mentions = max(budget * 4 // 5, 1)  # four words in five are mentions, one in five a period
        weights = [self.lead * (1 + 0.25 * (self.top - i)) for i in range(self.top)] + [1.0] * self.others
        counts = [int(mentions * w / sum(weights)) for w in weights]
        if counts[self.top - 1] <= counts[self.top] + 1:
            minimum = length - budget + (self.top + self.others) * 5
            raise LengthError(f"length {length} is too short for aggregation to single out {self.top}: the minimum is {minimum}")
        words = [e for e, c in zip(entities, counts) for _ in range(c)]
        rng.shuffle(words)
        units = []
        while words:
            size = rng.randint(3, 5)
            units.append(" ".join(words[:size]) + " .")
            words = words[size:]
        filled = fill(units, budget, prompter)
        answer = " ".join(entities[: self.top])
        return Example(
            id=f"aggregation-{length}-{seed}-{index}",
            context=filled.context,
            query=QUERY,
            references=(answer,),
            requested_length=length,
            actual_length=filled.tokens + length - budget,
            answer_tokens=self.top + 2,
            boundaries=filled.boundaries,
            metadata={"counts": counts[: self.top + 1]},
            frame=frame,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        predicted, expected = prediction.split(), example.references[0].split()
        found = {} if example.format == "plain" else {"string_match_all": string_match_all(prediction, expected)}
        return {
            **found,
            "set_f1": set_f1(predicted, expected),
            "exact_match": float(set(predicted) == set(expected)),
            "rouge_l": rouge_l(prediction, example.references[0]),
        }

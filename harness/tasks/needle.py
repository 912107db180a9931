"""`needle`: key-value retrieval in a haystack of distractor pairs (RULER's NIAH, multi-key form).

The context is a run of statements `KEY is VALUE .`; the query asks for one key at a chosen
depth. A share of examples asks for a key that is absent, whose answer is `none`, so that
strategies that look at pieces of the input (map-reduce) are scored honestly.
Hsieh et al., "RULER: What's the Real Context Size of Your Long-Context Language Models?", 2024.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from lcbench.tasks.base import Example, LengthError, Task, Tokenizer, exact_match, fill
from lcbench.tasks.words import pseudo_words

KEYS = 1500
VALUES = 300


def statement(key: str, value: str) -> str:
    return f"{key} is {value} ."


@dataclass
class Needle(Task):
    name: ClassVar[str] = "needle"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match",)

    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    absent_share: float = 0.2  # share of examples whose key is not in the context

    def __post_init__(self) -> None:
        self.depths = tuple(self.depths)
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError(f"depths must be a non-empty list of numbers in [0, 1], got {list(self.depths)}")
        if not 0.0 <= self.absent_share <= 1.0:
            raise ValueError(f"absent_share must be in [0, 1], got {self.absent_share}")

    def vocabulary(self) -> list[str]:
        return [*pseudo_words(KEYS, 2, "key"), *pseudo_words(VALUES, 2, "value"), "is", ".", "what", "?", "none"]

    def examples(self, tokenizer: Tokenizer, length: int, n: int, seed: int) -> list[Example]:
        return [self.example(tokenizer, length, seed, i) for i in range(n)]

    def example(self, tokenizer: Tokenizer, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"needle/{seed}/{length}/{index}")
        keys = list(pseudo_words(KEYS, 2, "key"))
        rng.shuffle(keys)
        values = pseudo_words(VALUES, 2, "value")
        asked, pool = keys[0], keys[1:]
        query = f"what is {asked} ?"
        budget = length - len(tokenizer.encode("\n" + query))
        unit_cost = len(tokenizer.encode(statement(pool[0], values[0])))
        count = budget // unit_cost
        if count < 2:
            raise LengthError(f"length {length} is too short for needle: the minimum is {length - budget + 2 * unit_cost}")
        if count > len(pool):
            raise LengthError(f"length {length} needs {count} distinct keys; needle has {len(pool)}")
        units = [statement(k, rng.choice(values)) for k in pool[:count]]
        absent = rng.random() < self.absent_share
        depth = self.depths[index % len(self.depths)]
        answer = "none"
        if not absent:
            answer = rng.choice(values)
            units[round(depth * (count - 1))] = statement(asked, answer)
        filled = fill(units, budget, tokenizer)
        return Example(
            id=f"needle-{length}-{seed}-{index}",
            context=filled.context,
            query=query,
            references=(answer,),
            requested_length=length,
            actual_length=filled.tokens + length - budget,
            answer_tokens=4,
            boundaries=filled.boundaries,
            metadata={"depth": None if absent else depth, "absent": absent},
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        return {"exact_match": exact_match(prediction, example.references)}

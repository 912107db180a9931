"""`dialogue`: a fact stated in turn k, asked about in the last turn. Speakers chat (filler
turns) and state facts about themselves (`NAME says my ATTRIBUTE is VALUE .`); other facts by the
same speaker and by others are distractors. The question names speaker and attribute. Turn
boundaries are exposed. Metric: exact match."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task, exact_match, fill
from lcbench.tasks.words import fill_units, fresh, pool

ATTRIBUTES = ("pet", "home", "food", "tool")


def fact(speaker: str, attribute: str, value: str) -> str:
    return f"{speaker} says my {attribute} is {value} ."


@dataclass
class Dialogue(Task):
    name: ClassVar[str] = "dialogue"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match",)
    template: ClassVar[str] = (
        "Below is a conversation; each turn reads `NAME says ... .`. Speakers mention facts about "
        "themselves as `NAME says my THING is VALUE .`.\n{context}\n{question}"
    )
    fields: ClassVar[tuple[str, ...]] = ("speaker", "attribute")

    speakers: int = 4
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # where the asked fact's turn sits
    distractor_facts: int = 6

    def __post_init__(self) -> None:
        self.depths = tuple(self.depths)
        if not 2 <= self.speakers <= 16:
            raise ValueError(f"speakers must be between 2 and 16, got {self.speakers}")
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError(f"depths must be a non-empty list of numbers in [0, 1], got {list(self.depths)}")
        if self.distractor_facts < 0:
            raise ValueError(f"distractor_facts must be at least 0, got {self.distractor_facts}")

    @classmethod
    def vocabulary(cls) -> list[str]:
        return [*pool("name"), *pool("value"), *pool("source"), *ATTRIBUTES, "says", "my", "is", ".", "what", "of", "?"]

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"dialogue/{seed}/{length}/{index}")
        speakers = rng.sample(pool("name"), self.speakers)
        asked, attribute = speakers[0], rng.choice(ATTRIBUTES)
        values = rng.sample(pool("value"), 1 + self.distractor_facts)
        facts = [fact(asked, attribute, values[0])]
        pairs = [(s, a) for s in speakers for a in ATTRIBUTES if (s, a) != (asked, attribute)]
        facts += [fact(s, a, v) for (s, a), v in zip(rng.sample(pairs, min(len(pairs), self.distractor_facts)), values[1:])]
        query = f"what is {attribute} of {asked} ?"
        question = f"According to the conversation, what is the {attribute} of {asked}? Answer with one word."
        parts = Parts(query, question, f"The {attribute} of {asked} is", {"speaker": asked, "attribute": attribute})
        frame = prompter.frame(parts)
        budget = length - frame.tokens
        needed = sum(len(prompter.encode(f)) for f in facts)
        if budget < needed:
            raise LengthError(f"length {length} is too short for dialogue: the minimum is {length - budget + needed}")
        recent: list[str] = []

        def chat() -> str:
            words = " ".join(fresh(rng, pool("source"), recent, 64) for _ in range(rng.randint(3, 7)))
            return f"{rng.choice(speakers)} says {words} ."

        turns = fill_units(rng, chat, lambda u: len(prompter.encode(u)), budget - needed)
        for distractor in facts[1:]:
            turns.insert(rng.randint(0, len(turns)), distractor)
        depth = self.depths[index % len(self.depths)]
        turn = round(depth * len(turns))
        turns.insert(turn, facts[0])
        filled = fill(turns, budget, prompter)
        return Example(
            id=f"dialogue-{length}-{seed}-{index}",
            context=filled.context,
            query=query,
            references=(values[0],),
            requested_length=length,
            actual_length=filled.tokens + length - budget,
            answer_tokens=4,
            boundaries=filled.boundaries,
            metadata={"depth": depth, "fact_turn": turn, "turns": len(turns)},
            frame=frame,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        return {"exact_match": exact_match(prediction, example.references)}

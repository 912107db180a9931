"""`code`: complete a call whose signature was defined far back. Functions read
`def NAME ( P1 P2 ) : BODY end`; the query `call NAME (` asks for the parameter list of one of
them, defined at a chosen depth among distractor functions. Function boundaries are exposed.
Metrics: exact match and edit similarity (as in long-context code completion benchmarks)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task, fill, normalize
from lcbench.tasks.metrics import edit_similarity
from lcbench.tasks.words import fresh, pool


@dataclass
class Code(Task):
    name: ClassVar[str] = "code"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match", "edit_sim")
    template: ClassVar[str] = (
        "Below is a program of functions written as `def NAME ( PARAMETERS ) : BODY end`.\n{context}\n{question}"
    )
    fields: ClassVar[tuple[str, ...]] = ("function",)

    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    max_params: int = 3

    def __post_init__(self) -> None:
        self.depths = tuple(self.depths)
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError(f"depths must be a non-empty list of numbers in [0, 1], got {list(self.depths)}")
        if not 1 <= self.max_params <= 6:
            raise ValueError(f"max_params must be between 1 and 6, got {self.max_params}")

    @classmethod
    def vocabulary(cls) -> list[str]:
        return [*pool("name"), *pool("source"), "def", "(", ")", ":", "end", "call"]

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"code/{seed}/{length}/{index}")
        recent: list[str] = []  # function and parameter names are unique within the document

        def function() -> tuple[str, str, str]:
            name = fresh(rng, pool("name"), recent, 1000)
            params = " ".join(fresh(rng, pool("name"), recent, 1000) for _ in range(rng.randint(1, self.max_params)))
            body = " ".join(rng.choice(pool("source")) for _ in range(rng.randint(3, 8)))
            return name, params, f"def {name} ( {params} ) : {body} end"

        asked, params, definition = function()
        query = f"call {asked} ("
        question = f"Complete the call to {asked} with its parameters, in order, then `)`."
        frame = prompter.frame(Parts(query, question, query, {"function": asked}))
        budget = length - frame.tokens
        if budget < len(prompter.encode(definition)):
            raise LengthError(f"length {length} is too short for code: the minimum is {length - budget + 30}")
        units, used = [], len(prompter.encode(definition))
        while True:
            _, _, text = function()
            cost = len(prompter.encode(text))
            if used + cost > budget:
                break
            units.append(text)
            used += cost
        depth = self.depths[index % len(self.depths)]
        units.insert(round(depth * len(units)), definition)
        filled = fill(units, budget, prompter)
        return Example(
            id=f"code-{length}-{seed}-{index}",
            context=filled.context,
            query=query,
            references=(f"{params} )",),
            requested_length=length,
            actual_length=filled.tokens + length - budget,
            answer_tokens=self.max_params + 3,
            boundaries=filled.boundaries,
            metadata={"depth": depth, "functions": len(units)},
            frame=frame,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        predicted, expected = normalize(prediction), normalize(example.references[0])
        return {"exact_match": float(predicted == expected), "edit_sim": edit_similarity(predicted, expected)}

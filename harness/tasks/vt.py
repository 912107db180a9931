"""`vt`: variable tracking, multi-hop (RULER's VT). `x1 = VALUE .` then `x2 = x1 .` ... spread
through filler, with a distractor chain bound to another value; the answer is every name bound
to the asked value, in chain order. Metrics: set F1 (headline) and exact match of the set."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task, fill
from lcbench.tasks.metrics import set_f1, string_match_all
from lcbench.tasks.words import fill_units, filler_sentence, pool


@dataclass
class Vt(Task):
    name: ClassVar[str] = "vt"
    metrics: ClassVar[tuple[str, ...]] = ("set_f1", "exact_match")  # non-plain formats: string_match_all first
    template: ClassVar[str] = (
        "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n{question}"
    )
    fields: ClassVar[tuple[str, ...]] = ("value", "hops")

    hops: int = 4  # names in the asked chain
    distractor_chains: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.hops <= 8:
            raise ValueError(f"hops must be between 1 and 8, got {self.hops}")
        if not 0 <= self.distractor_chains <= 4:
            raise ValueError(f"distractor_chains must be between 0 and 4, got {self.distractor_chains}")

    @classmethod
    def vocabulary(cls) -> list[str]:
        return [*pool("name"), *pool("value"), *pool("source"), "=", ".", "who", "is", "?"]

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"vt/{seed}/{length}/{index}")
        chains = 1 + self.distractor_chains
        names = rng.sample(pool("name"), chains * self.hops)
        values = rng.sample(pool("value"), chains)
        statements = []  # (chain, hop, text): every chain's statements stay in order
        for c in range(chains):
            chain = names[c * self.hops : (c + 1) * self.hops]
            statements += [(c, 0, f"{chain[0]} = {values[c]} .")]
            statements += [(c, h, f"{chain[h]} = {chain[h - 1]} .") for h in range(1, self.hops)]
        question = f"Find all variables that are assigned the value {values[0]} in the text above."
        prefix = (
            f"Answer: According to the chain(s) of variable assignment in the text above, {self.hops} variables "
            f"are assigned the value {values[0]}, they are:"
        )
        fields = {"value": values[0], "hops": str(self.hops)}
        frame = prompter.frame(Parts(f"who is {values[0]} ?", question, prefix, fields))
        budget = length - frame.tokens
        needed = sum(len(prompter.encode(t)) for _, _, t in statements)
        if budget < needed:
            minimum = length - budget + needed
            raise LengthError(f"length {length} is too short for vt with {self.hops} hops: the minimum is {minimum}")
        recent: list[str] = []
        noise = fill_units(rng, lambda: filler_sentence(rng, recent), lambda u: len(prompter.encode(u)), budget - needed)
        slots = sorted(rng.sample(range(len(noise) + len(statements)), len(statements)))
        order = sorted(statements, key=lambda s: (s[1], rng.random()))  # hop order kept across chains
        units = list(noise)
        for slot, (_, _, text) in zip(slots, order):
            units.insert(slot, text)
        filled = fill(units, budget, prompter)
        answer = " ".join(names[: self.hops])
        return Example(
            id=f"vt-{length}-{seed}-{index}",
            context=filled.context,
            query=f"who is {values[0]} ?",
            references=(answer,),
            requested_length=length,
            actual_length=filled.tokens + length - budget,
            answer_tokens=self.hops + 2,
            boundaries=filled.boundaries,
            metadata={"hops": self.hops},
            frame=frame,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        predicted, expected = prediction.split(), example.references[0].split()
        scores = {"set_f1": set_f1(predicted, expected), "exact_match": float(set(predicted) == set(expected))}
        if example.format == "plain":
            return scores
        return {"string_match_all": string_match_all(prediction, expected), **scores}

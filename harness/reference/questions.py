"""Training only: the questions the reference trainer asks of a generated context.

`more_questions` reads further questions off the text, so that one context teaches several
answers; `crop` cuts a context to a window, as blockwise and DP chunking cut a long input, and
answers the task's question from what the window still shows (`none` where it shows no answer).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

QUESTIONS_PER_CONTEXT = 8


def more_questions(family: str, example: Any, rng: random.Random) -> list[tuple[str, str]]:
    """Training only: further questions on the same context, read off the generated text.

    One supervised answer token per context starves the answer families (they stayed on their
    plateau for hundreds of steps); asking several questions per context gives each step several
    times the signal, while the first question still ends the context exactly as at evaluation.
    """
    if example.metadata.get("mode") == "multivalue":
        # Alone, so its second value is a third of its sequence's loss: among seven single-value
        # answers it was a seventeenth, and the model learnt to stop after one value (seen).
        return []
    words = example.context.split()
    pairs: list[tuple[str, str]] = []
    if family == "needle":
        values: dict[str, list[str]] = {}
        for i in range(len(words) - 3):
            if words[i + 1] == "is" and words[i + 3] == ".":
                values.setdefault(words[i], []).append(words[i + 2])
        pairs = [(f"what is {k} ?", " ".join(v)) for k, v in values.items() if len(v) <= 2]
    elif family == "dialogue":
        for i in range(len(words) - 6):
            if words[i + 1 : i + 3] == ["says", "my"] and words[i + 4] == "is":
                pairs.append((f"what is {words[i + 3]} of {words[i]} ?", words[i + 5]))
    elif family == "code":
        for i in range(len(words) - 2):
            if words[i] == "def" and words[i + 2] == "(" and (params := code_answer(words[i:], ["call", words[i + 1]])):
                pairs.append((f"call {words[i + 1]} (", params))
    elif family == "vt":
        bound = {words[i]: words[i + 2] for i in range(len(words) - 3) if words[i + 1] == "=" and words[i + 3] == "."}
        for value in set(bound.values()) - set(bound):
            chain, name = [], next(k for k, v in bound.items() if v == value)
            while name is not None:
                chain.append(name)
                name = next((k for k, v in bound.items() if v == name), None)
            pairs.append((f"who is {value} ?", " ".join(chain)))
    pairs = [p for p in pairs if p[0] != example.query]
    rng.shuffle(pairs)
    return pairs[: QUESTIONS_PER_CONTEXT - 1]


def crop(family: str, example: Any, rng: random.Random) -> Any:
    """`example` with its context cut to a random window of at least half its words (a chunk of a
    longer input: it may start or end mid-statement, and lacks the padding a generated context
    ends with), its question answered from the window. Families whose answer depends on the whole
    context (vt's chain, aggregation's counts) are returned whole.

    Without crops, the look-up model answered `none` only where the context ended with the
    generator's padding, and went on after `none` or after a value in a chunk (seen)."""
    read = READERS.get(family)
    if read is None:
        return example
    words = example.context.split()
    keep = rng.randint(max(1, len(words) // 2), len(words))
    start = rng.randint(0, len(words) - keep)
    window = words[start : start + keep]
    answer = read(window, example.query.split())
    return dataclasses.replace(example, context=" ".join(window), references=(answer or example.no_answer,))


def needle_answer(words: list[str], query: list[str]) -> str:
    """`what is KEY ?`: every value stated for KEY in the window."""
    key = query[2]
    return " ".join(words[i + 2] for i in range(len(words) - 2) if words[i] == key and words[i + 1] == "is")


def dialogue_answer(words: list[str], query: list[str]) -> str:
    """`what is ATTR of NAME ?`: the value NAME gave for ATTR."""
    attribute, name = query[2], query[4]
    fact = [name, "says", "my", attribute, "is"]
    return next((words[i + 5] for i in range(len(words) - 5) if words[i : i + 5] == fact), "")


def code_answer(words: list[str], query: list[str]) -> str:
    """`call NAME (`: the parameter list of NAME's definition, if the window holds all of it."""
    name = query[1]
    for i in range(len(words) - 2):
        if words[i : i + 3] == ["def", name, "("] and ")" in words[i + 3 :]:
            return " ".join(words[i + 3 : words.index(")", i + 3) + 1])
    return ""


READERS = {"needle": needle_answer, "dialogue": dialogue_answer, "code": code_answer}

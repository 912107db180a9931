"""Pronounceable pseudo-words: a closed vocabulary that a word-level tokenizer covers exactly.

Pronounceable strings keep character metrics such as chrF meaningful (random `w123` strings
share so many characters that chrF has a chance floor near 35). Tasks draw from named,
disjoint pools of one shuffled universe, so the whole vocabulary stays small.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Sequence

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"

# name -> (start, stop) in the shuffled two-syllable universe (4,900 words)
POOLS = {"name": (0, 1200), "value": (1200, 1400), "source": (1400, 1900)}


@functools.cache
def universe(syllables: int) -> tuple[str, ...]:
    syllable_set = [c + v for c, v in itertools.product(CONSONANTS, VOWELS)]
    words = ["".join(p) for p in itertools.product(syllable_set, repeat=syllables)]
    random.Random(f"pseudo-words/{syllables}").shuffle(words)
    return tuple(words)


def pool(name: str) -> tuple[str, ...]:
    """A named pool of two-syllable words: `name` (keys, variables, speakers), `value`, `source`."""
    start, stop = POOLS[name]
    return universe(2)[start:stop]


def target_words(count: int) -> tuple[str, ...]:
    """Three-syllable words: the synthetic target language, visibly unlike the source."""
    return universe(3)[:count]


def fresh(rng: random.Random, words: Sequence[str], recent: list[str], window: int) -> str:
    """A word from `words` not among the last `window` drawn (kept in `recent`): a word that the
    model must look up is never ambiguous within a window of that many draws."""
    blocked = set(recent[-window:])
    while True:
        word = rng.choice(words)
        if word not in blocked:
            recent.append(word)
            return word


def filler_sentence(rng: random.Random, recent: list[str], low: int = 4, high: int = 8) -> str:
    """Noise: a few source-language words and a period."""
    return " ".join(fresh(rng, pool("source"), recent, 64) for _ in range(rng.randint(low, high))) + " ."


def fill_units(rng: random.Random, make: Callable[[], str], cost: Callable[[str], int], budget: int) -> list[str]:
    """Units from `make()` while they fit in `budget` tokens."""
    units: list[str] = []
    used = 0
    while True:
        unit = make()
        if used + cost(unit) > budget:
            return units
        units.append(unit)
        used += cost(unit)

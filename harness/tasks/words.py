"""Pronounceable pseudo-words: a closed vocabulary that a word-level tokenizer covers exactly.

Pronounceable strings keep character metrics such as chrF meaningful (random `w123` strings
share so many characters that chrF has a chance floor near 35). Tasks draw from named,
disjoint pools of one shuffled universe, so the whole vocabulary stays small.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Sequence

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

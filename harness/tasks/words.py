"""Pronounceable pseudo-words: a closed vocabulary that a word-level tokenizer covers exactly.

Pronounceable strings keep character metrics such as chrF meaningful (random `w123` strings
share so many characters that chrF has a chance floor near 35).
"""

from __future__ import annotations

import functools
import itertools
import random

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


@functools.cache
def pseudo_words(count: int, syllables: int = 2, tag: str = "") -> tuple[str, ...]:
    """`count` distinct words of `syllables` consonant-vowel syllables, in a shuffled order that
    depends only on `tag` (so two pools with different tags are different orders of one set)."""
    syllable_set = [c + v for c, v in itertools.product(CONSONANTS, VOWELS)]
    words = ["".join(p) for p in itertools.product(syllable_set, repeat=syllables)]
    if count > len(words):
        raise ValueError(f"asked for {count} words of {syllables} syllables; only {len(words)} exist")
    random.Random(f"pseudo-words/{syllables}/{tag}").shuffle(words)
    return tuple(words[:count])

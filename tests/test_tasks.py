"""Tasks: deterministic, exact lengths in the model's tokens, honest scoring."""

from __future__ import annotations

import pytest

from lcbench.tasks.base import LengthError, exact_match, normalize
from lcbench.tasks.needle import Needle


@pytest.mark.parametrize("length", [64, 97, 256, 1000])
def test_needle_lengths_are_exact(llama, length):
    for example in Needle().examples(llama, length, 4, seed=0):
        assert len(llama.encode(example.context + example.query_text)) == length == example.actual_length


def test_needle_is_deterministic(llama):
    a = Needle().examples(llama, 128, 5, seed=7)
    b = Needle().examples(llama, 128, 5, seed=7)
    c = Needle().examples(llama, 128, 5, seed=8)
    assert a == b and a != c


def test_needle_places_the_key_at_its_depth_or_says_none(llama):
    examples = Needle(absent_share=0.3).examples(llama, 200, 40, seed=1)
    absent = [e for e in examples if e.metadata["absent"]]
    assert 0 < len(absent) < len(examples)
    for e in examples:
        key = e.query.split()[2]
        if e.metadata["absent"]:
            assert e.references == ("none",) and key not in e.context.split()
        else:
            words = e.context.split()
            position = words.index(key) / len(words)
            assert abs(position - e.metadata["depth"]) < 0.1
            assert words[words.index(key) + 2] == e.references[0]


def test_needle_too_short(llama):
    with pytest.raises(LengthError, match="minimum"):
        Needle().examples(llama, 8, 1, seed=0)


@pytest.mark.parametrize("depths", [[], [1.5]])
def test_needle_bad_params(depths):
    with pytest.raises(ValueError, match="depths"):
        Needle(depths=tuple(depths))


@pytest.mark.parametrize(
    "prediction, expected", [("bemi", 1.0), (" Bemi .\nmore", 1.0), ("bemi tuna", 0.0), ("", 0.0)]
)
def test_exact_match(prediction, expected):
    assert exact_match(prediction, ["bemi"]) == expected
    assert normalize("  Kalo .  ") == "kalo"

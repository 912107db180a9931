"""Map-reduce combine rules over the pieces' answers."""

from __future__ import annotations

import pytest

from lcbench.model import Generation
from lcbench.strategies.pieces import combine, split_fixed
from lcbench.tasks.base import Example

EXAMPLE = Example("e", "ctx", "q", ("x",), 10, 10)


def answers(*texts_and_logprobs):
    return [Generation(text, 5, max(len(text.split()), 1), 0.1, 0.1, logprob) for text, logprob in texts_and_logprobs]


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("first", "bemi"),
        ("majority", "tuna"),
        ("confident", "sori"),
        ("union", "bemi tuna sori"),
    ],
)
def test_combine_rules(rule, expected):
    found = answers(("none", -0.1), ("bemi", -3.0), ("tuna", -2.0), ("none", -0.1), ("tuna", -2.5), ("sori", -0.5))
    assert combine(found, rule, EXAMPLE) == expected


@pytest.mark.parametrize("rule", ["first", "majority", "confident", "union"])
def test_all_empty_gives_the_no_answer(rule):
    assert combine(answers(("none", -0.1), ("", 0.0), (" None .", -0.2)), rule, EXAMPLE) == "none"


def test_majority_tie_goes_to_the_earliest():
    assert combine(answers(("tuna", -1), ("bemi", -1), ("bemi", -1), ("tuna", -1)), "majority", EXAMPLE) == "tuna"


def test_split_fixed_with_overlap():
    ids = list(range(10))
    assert split_fixed(ids, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert split_fixed(ids, 4, overlap=1) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert split_fixed([1, 2], 4) == [[1, 2]]

"""LongBench v1's English metrics and RULER's string matches against hand-made pairs with hand-computed scores."""

from __future__ import annotations

import random

import pytest

from lcbench.tasks.longbench_metrics import (
    METRICS,
    best,
    classification,
    code_sim,
    count,
    first_line,
    normalize_answer,
    qa_f1,
    retrieval,
    rouge,
)
from lcbench.tasks.metrics import string_match_all, string_match_part


def test_normalize_answer_by_hand():
    assert normalize_answer("The  Cat's HAT!") == "cats hat"  # lower, drop ' and !, drop "the", collapse spaces
    assert normalize_answer("An apple, a day.") == "apple day"  # "an" and "a" are whole words
    assert normalize_answer("theory of a thing") == "theory of thing"  # "the" inside "theory" stays
    assert normalize_answer("the.") == ""  # the dot goes first, then "the" is a whole word
    assert normalize_answer("a-b") == "ab"  # "-" goes, leaving "ab", not an article
    assert normalize_answer("\tA\nB  ") == "b"  # whitespace of any kind collapses; "a" is an article
    assert normalize_answer("café’s") == "café’s"  # only ASCII punctuation goes


def test_qa_f1_by_hand():
    assert qa_f1("PARIS!", "paris") == 1.0
    assert qa_f1("Paris", "Paris, France") == pytest.approx(2 / 3)  # common {paris}: p=1, r=1/2 -> f1=2/3
    assert qa_f1("in the city of Paris", "Paris") == pytest.approx(0.4)  # [in city of paris]: p=1/4, r=1 -> 0.5/1.25
    assert qa_f1("the dog dog dog", "dog and dog") == pytest.approx(2 / 3)  # multiset: min(3, 2)=2 dogs, p=r=2/3
    assert qa_f1("London", "Paris") == 0.0
    assert qa_f1("The.", "a") == 0.0  # both normalize to nothing: no overlap scores 0, not 1


def test_best_takes_the_max_over_answers():
    assert best(qa_f1, "Paris", ["Paris, France", "Paris"]) == 1.0  # max(2/3, 1)
    assert best(qa_f1, "Paris", ["Paris, France", "Lyon"]) == pytest.approx(2 / 3)  # max(2/3, 0)
    assert best(qa_f1, "Paris", []) == 0.0
    assert best(classification, "Human", ["Human", "Entity"], ["Entity", "Human"]) == 1.0  # max(1/1, 0)


def test_rouge_single_sentence_counts_distinct_words():
    # ref {the cat is on mat}: m=5; hyp {the cat sat on mat}: n=5; LCS "the cat on the mat" -> set of 4: p=r=4/5
    assert rouge("the cat sat on the mat", "the cat is on the mat") == pytest.approx(0.8)
    # m=n=1 distinct word, LCS set {the}: p=r=1 (as lists p would be 1/3)
    assert rouge("the the the", "the") == pytest.approx(1.0)
    assert rouge("the cat", "the cat") == 2.0 * (1.0 / (1.0 + 1.0 + 1e-8)) < 1.0  # f = 2pr/(p+r+1e-8): never quite 1
    assert rouge("The cat", "the cat") == pytest.approx(0.5)  # case kept: LCS {cat}, p=r=1/2


def test_rouge_unions_lcs_over_sentences():
    # Lin's example: ref w1..w5; LCS with c1 = {w1 w2}, with c2 = {w1 w3 w5}; union 4.
    # m=5, n=|{w1 w2 w6 w7 w8 w3 w9 w5}|=8: r=4/5, p=1/2 -> f=0.8/1.3=8/13
    assert rouge("w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", "w1 w2 w3 w4 w5") == pytest.approx(8 / 13)
    # Each reference sentence gets its own LCS: ref "w2", "w1" (m=2) vs hyp "w1 w2" (n=2) give {w2} and {w1}: p=r=1.
    assert rouge("w1 w2", "w2. w1") == pytest.approx(1.0)
    assert rouge("w1 w2", "w2 w1") == pytest.approx(0.5)  # as one sentence the LCS has 1 word: p=r=1/2


def test_rouge_traceback_picks_one_lcs():
    # ref "x y", hyp sentences "y x" and "y". LCS(x y, y x) has length 1; pltrdy's traceback steps back in the
    # hypothesis on ties and finds {y}; "y" gives {y}. Union {y}: m=n=2, p=r=1/2. (Picking {x} would give 1.0.)
    assert rouge("y x. y", "x y") == pytest.approx(0.5)


def test_rouge_sentence_split_quirks():
    # "Hello world. " has a piece of one space after the dot: it is kept and becomes the sentence "" with the word "".
    # ref words {Hello world ""}: m=3; hyp "Hello world.": n=2; LCS {Hello world}: r=2/3, p=1 -> f=(4/3)/(5/3)=0.8
    assert rouge("Hello world.", "Hello world. ") == pytest.approx(0.8)
    assert rouge("Hello world. ", "Hello world. ") == pytest.approx(1.0)  # "" matches "" as a word
    assert rouge("3.5 million", "3 5 million") == pytest.approx(1.0)  # "3", "5 million" vs "3 5 million": union 3


@pytest.mark.parametrize("prediction, reference", [("", "a b"), ("...", "a b"), ("a b", ""), ("a b", "..")])
def test_rouge_is_zero_where_the_package_raises(prediction, reference):
    assert rouge(prediction, reference) == 0.0  # no sentence on one side: ValueError, caught by LongBench


def test_rouge_is_zero_past_the_recursion_limit():
    words = ["x"] + [f"h{i}" for i in range(990)]
    # 990 words vs "x": the traceback makes 991 calls, which fit; m=1, n=990, LCS {x}: r=1, p=1/990
    assert rouge(" ".join(words[:990]), "x") == pytest.approx(2 / 991)
    assert rouge(" ".join(words), "x") == 0.0  # 991 words: 992 calls, RecursionError in the package


def test_classification_by_hand():
    classes = ["Entity", "Human being", "Human"]
    assert classification("Human being", "Human being", classes) == 1.0  # found [Human being, Human]; Human dropped
    assert classification("Human", "Human being", classes) == 0.0  # found [Human], dropped as part of the gold one
    assert classification("Entity or Human being", "Human being", classes) == 0.5  # [Entity, Human being] -> 1/2
    assert classification("human being", "Human being", classes) == 0.0  # case-sensitive
    assert classification("Human", "Human", classes) == 1.0  # found [Human]; it is the gold one


def test_classification_keeps_the_iteration_quirk():
    # found [Human, Hu, Human being]; removing "Human" at index 0 shifts "Hu" there, so the loop's next item is
    # "Human being" and "Hu" is never checked: [Hu, Human being] -> 1/2 (checking every item would give 1.0)
    assert classification("Human being", "Human being", ["Human", "Hu", "Human being"]) == 0.5
    assert classification("Human being", "Human being", ["Hu", "Human", "Human being"]) == 0.5  # same, Human skipped
    assert classification("Human being", "Human being", ["Human being", "Human", "Hu"]) == 0.5  # Hu skipped


def test_retrieval_by_hand():
    assert retrieval("Paragraph 12", "Paragraph 12") == 1.0
    assert retrieval("Paragraph 3 or Paragraph 12", "Paragraph 12") == 0.5  # numbers [3, 12]: 1/2
    assert retrieval("Paragraphs 12, 12 and 5", "Paragraph 12") == pytest.approx(2 / 3)  # [12, 12, 5]: 2/3
    assert retrieval("Paragraph 012", "Paragraph 12") == 0.0  # compared as strings
    assert retrieval("I don't know", "Paragraph 12") == 0.0  # no number at all
    with pytest.raises(ValueError):
        retrieval("Paragraph 1", "the first one")


def test_count_by_hand():
    assert count("7", "7") == 1.0
    assert count("There are 7 unique paragraphs out of 10", "7") == 0.5  # [7, 10]: 1/2
    assert count("17", "7") == 0.0  # \d+ takes 17 whole
    assert count("seven", "7") == 0.0


def test_code_sim_takes_the_first_line_without_fences_or_comments():
    prediction = '\n\n```python\n# add one\nprint("#")\n    return x + 1\n'
    assert code_sim(prediction, "    return x + 1") == 1.0  # fence, comment and a "#" in a string are all skipped
    assert code_sim("// c++\nint a = 1;", "int a = 1;") == 1.0
    assert code_sim("return x", "    return x") == 0.8  # indentation counts: match 8, 2*8/(8+12) = 0.8
    assert code_sim("# only a comment", "x = 1") == 0.0  # no line left: "" vs a line is 0
    assert code_sim("# only a comment", "") == 1.0  # "" == "" is checked before emptiness: 100


def test_code_sim_rounds_like_fuzz_ratio():
    assert code_sim("abcd", "abce") == 0.75  # match "abc": 2*3/8 = 75
    assert code_sim("abc", "abd") == 0.67  # 2*2/6 = 66.67 -> 67
    assert code_sim("abcdefgh", "hijklmno") == 0.12  # match "h": 2*1/16 = 12.5 -> 12, half to even


def test_first_line_and_metric_names():
    assert first_line("\n\nNEGATIVE\nmore text") == "NEGATIVE"
    assert first_line(" \nx") == " "  # only newlines are stripped
    assert set(METRICS) == {"qa_f1", "rouge", "classification", "retrieval", "count", "code_sim"}
    assert METRICS["rouge"] is rouge


def test_ruler_string_matches_by_hand():
    said = "The keys are 123 and ABC."
    assert string_match_all(said, ["abc", "123", "xyz"]) == pytest.approx(2 / 3)  # abc, 123 found; xyz not
    assert string_match_all(said, ["ABC", "the KEYS"]) == 1.0  # case-insensitive containment
    assert string_match_part(said, ["xyz", "abc"]) == 1.0  # any one is enough
    assert string_match_part(said, ["xyz", "456"]) == 0.0


def test_rouge_matches_the_rouge_package():
    Rouge = pytest.importorskip("rouge").Rouge
    rng = random.Random(0)
    vocabulary = ["the", "The", "cat", "sat", "on", "mat", "dog", "ran", ".", " ."]

    def text() -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 25)))

    for _ in range(20):
        hypothesis, reference = text(), text()
        try:
            expected = Rouge().get_scores([hypothesis], [reference], avg=True)["rouge-l"]["f"]
        except ValueError:
            expected = 0.0
        assert rouge(hypothesis, reference) == expected, (hypothesis, reference)

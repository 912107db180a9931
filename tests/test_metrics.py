"""Metrics against hand-computed cases, and sacrebleu's own figures."""

from __future__ import annotations

import pytest
import sacrebleu

from lcbench.tasks.metrics import bleu, chrf, corpus_bleu, corpus_chrf, edit_similarity, levenshtein, rouge_l, set_f1


def test_set_f1_by_hand():
    assert set_f1(["a", "b"], ["a", "b"]) == 1.0
    assert set_f1(["a", "c"], ["a", "b"]) == pytest.approx(0.5)  # p = r = 1/2
    assert set_f1(["a"], ["a", "b", "c", "d"]) == pytest.approx(0.4)  # p = 1, r = 1/4
    assert set_f1([], ["a"]) == 0.0 and set_f1([], []) == 1.0


def test_rouge_l_by_hand():
    # LCS of "a b c d" and "a c d e" is "a c d": p = r = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("x y", "a b") == 0.0 and rouge_l("a", "a") == 1.0


def test_edit_similarity_by_hand():
    assert levenshtein("kitten", "sitting") == 3
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("", "") == 1.0 and edit_similarity("abc", "") == 0.0


@pytest.mark.parametrize(
    "hypothesis, reference",
    [
        ("the cat sat on the mat", "the cat sat on the mat"),
        ("the cat sat on a mat", "the cat sat on the mat"),
        ("kavo tiru menalo sipo", "kavo tiru menali sipo daro"),
    ],
)
def test_bleu_and_chrf_agree_with_sacrebleu(hypothesis, reference):
    assert chrf(hypothesis, reference) == pytest.approx(sacrebleu.sentence_chrf(hypothesis, [reference]).score)
    expected_bleu = sacrebleu.metrics.BLEU(effective_order=True).sentence_score(hypothesis, [reference]).score
    assert bleu(hypothesis, reference) == pytest.approx(expected_bleu)


def test_corpus_scores_agree_with_sacrebleu():
    hyps, refs = ["a b c d", "e f g h i"], ["a b c d", "e f x h i"]
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert corpus_chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)


def test_chrf_over_pseudo_words_has_a_low_floor():
    # pronounceable words of different letters share little: unrelated text scores low
    assert chrf("kavo tiru menalo", "pused bago zefiku") < 25

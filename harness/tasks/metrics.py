"""Quality metrics shared by tasks: BLEU and chrF (sacrebleu), set F1, ROUGE-L, edit similarity,
and RULER's string matches."""

from __future__ import annotations

from collections.abc import Sequence


def bleu(prediction: str, reference: str) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(prediction, [reference]).score)


def chrf(prediction: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(prediction, [reference]).score)


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU().corpus_score(list(predictions), [list(references)]).score)


def corpus_chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF().corpus_score(list(predictions), [list(references)]).score)


def set_f1(predicted: Sequence[str], expected: Sequence[str]) -> float:
    """F1 between two sets of words; two empty sets agree fully."""
    got, want = set(predicted), set(expected)
    if not got and not want:
        return 1.0
    hits = len(got & want)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(got), hits / len(want)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over words (Lin, 2004)."""
    p, r = prediction.split(), reference.split()
    if not p or not r:
        return float(p == r)
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_similarity(prediction: str, reference: str) -> float:
    """1 - Levenshtein distance / the longer length, over characters (as in code completion)."""
    longest = max(len(prediction), len(reference))
    return 1.0 if longest == 0 else 1.0 - levenshtein(prediction, reference) / longest


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    """RULER's string_match_all: the share of references found in the output, case-insensitive."""
    said = prediction.lower()
    return sum(r.lower() in said for r in references) / len(references) if references else 0.0


def string_match_part(prediction: str, references: Sequence[str]) -> float:
    """RULER's string_match_part: 1 if any reference is found in the output, case-insensitive."""
    said = prediction.lower()
    return float(any(r.lower() in said for r in references))

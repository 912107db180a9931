"""LongBench's English metric definitions (Bai et al., 2023, "LongBench: A Bilingual, Multitask Benchmark for Long
Context Understanding", `LongBench/metrics.py` and `eval.py`), reproduced in plain Python, quirks included, so that
scores are comparable with published ones; the `rouge` (pltrdy, 1.0.1) and `fuzzywuzzy` packages LongBench calls are
reimplemented here rather than installed. LongBench reports 100 x the mean over samples; lcbench keeps [0, 1]."""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

Metric = Callable[[str, str, Sequence[str]], float]

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"\d+")
_PARAGRAPH = re.compile(r"Paragraph (\d+)")
# pltrdy `rouge` rebuilds each LCS with one recursive call per step. Under LongBench's eval.py (9 frames above the first
# call) and Python's default limit of 1000 frames, 991 calls fit; one more raises RecursionError, which LongBench's bare
# `except` scores 0.0. Measured on CPython 3.11; other versions may differ by a frame.
_ROUGE_RECURSION_BUDGET = 991


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace, in LongBench's order
    (so "the." loses its dot first and then goes as an article)."""
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_PUNCTUATION)).split())


def qa_f1(prediction: str, ground_truth: str, all_classes: Sequence[str] = ()) -> float:
    """Token F1 over normalized words, overlap counted as a multiset; no overlap (two empty answers included) is 0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def _rouge_sentences(text: str) -> list[str]:
    """pltrdy's split: pieces between "." kept if non-empty BEFORE whitespace is collapsed, so a piece of spaces
    survives as the empty sentence, whose single word is ""."""
    return [" ".join(piece.split()) for piece in text.split(".") if piece]


def lcs_table(reference: list[str], candidate: list[str]) -> list[list[int]]:
    """The longest-common-subsequence lengths of every pair of prefixes: row i, column j for
    reference[:i] and candidate[:j]; ROUGE-L's implementations differ only in how they read it back."""
    table = [[0] * (len(candidate) + 1)]
    for word in reference:
        above, row = table[-1], [0]
        for j, other in enumerate(candidate):
            row.append(above[j] + 1 if word == other else max(above[j + 1], row[j]))
        table.append(row)
    return table


def _rouge_lcs_words(reference: list[str], hypothesis: list[str]) -> tuple[set[str], int]:
    """The words of the one LCS pltrdy's traceback picks (ties step back in the hypothesis), as a set since `exclusive`
    is on, and the number of recursive calls that traceback would make."""
    table = lcs_table(reference, hypothesis)
    words: set[str] = set()
    calls = 1
    i, j = len(reference), len(hypothesis)
    while i > 0 and j > 0:
        calls += 1
        if reference[i - 1] == hypothesis[j - 1]:
            words.add(reference[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words, calls


def rouge(prediction: str, ground_truth: str, all_classes: Sequence[str] = ()) -> float:
    """What `Rouge().get_scores([prediction], [ground_truth], avg=True)["rouge-l"]["f"]` returns: summary-level
    union-LCS over "."-split sentences with words as SETS (distinct words for m and n, union of per-sentence-pair LCS
    words), no lower-casing or stemming, and 0.0 wherever the package raises (no sentence on either side, or a
    traceback deeper than the recursion limit), because LongBench wraps the call in a bare `except`."""
    hypothesis, reference = _rouge_sentences(prediction), _rouge_sentences(ground_truth)
    if not hypothesis or not reference:
        return 0.0
    hypothesis_words = [sentence.split(" ") for sentence in hypothesis]
    reference_words = [sentence.split(" ") for sentence in reference]
    union: set[str] = set()
    for ref in reference_words:
        for hyp in hypothesis_words:
            words, calls = _rouge_lcs_words(ref, hyp)
            if calls > _ROUGE_RECURSION_BUDGET:
                return 0.0
            union |= words
    m = len({word for sentence in reference_words for word in sentence})
    n = len({word for sentence in hypothesis_words for word in sentence})
    r, p = len(union) / m, len(union) / n
    return 2.0 * ((p * r) / (p + r + 1e-8))


def classification(prediction: str, ground_truth: str, all_classes: Sequence[str] = ()) -> float:
    """1/k when the gold class is among the k class names found (case-sensitive substrings) in the prediction, after
    dropping names that are proper substrings of the gold one. LongBench drops them while iterating over the same list,
    which skips the name right after each one dropped; published trec scores include that, so it is kept."""
    matched = [name for name in all_classes if name in prediction]
    for name in matched:
        if name in ground_truth and name != ground_truth:
            matched.remove(name)  # noqa: B909 (the upstream quirk, kept on purpose)
    return 1.0 / len(matched) if ground_truth in matched else 0.0


def _share_equal(numbers: list[str], target: str) -> float:
    """The share of numbers written exactly as target (as strings: "05" is not "5"); 0 when there are none."""
    return sum(number == target for number in numbers) / len(numbers) if numbers else 0.0


def retrieval(prediction: str, ground_truth: str, all_classes: Sequence[str] = ()) -> float:
    """The share of numbers in the prediction equal to the gold "Paragraph N"; naming several paragraphs dilutes it."""
    found = _PARAGRAPH.findall(ground_truth)
    if not found:
        raise ValueError(f"no 'Paragraph N' in the gold answer {ground_truth!r}")
    return _share_equal(_NUMBER.findall(prediction), found[0])


def count(prediction: str, ground_truth: str, all_classes: Sequence[str] = ()) -> float:
    """The share of numbers in the prediction equal to the gold count."""
    return _share_equal(_NUMBER.findall(prediction), ground_truth)


def _fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy's `fuzz.ratio` without python-Levenshtein: equal strings 100 (two empty ones too), then an empty one
    0, else difflib's ratio (default autojunk) as a percent rounded half to even."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    return round(100 * difflib.SequenceMatcher(None, a, b).ratio())


def code_sim(prediction: str, ground_truth: str, all_classes: Sequence[str] = ()) -> float:
    """fuzz.ratio / 100 between the gold line and the first predicted line with no ` # or // (code fences and comments),
    indentation kept; "" when every line has one."""
    lines = prediction.lstrip("\n").split("\n")
    line = next((line for line in lines if "`" not in line and "#" not in line and "//" not in line), "")
    return _fuzz_ratio(line, ground_truth) / 100


METRICS: dict[str, Metric] = {
    "qa_f1": qa_f1,
    "rouge": rouge,
    "classification": classification,
    "retrieval": retrieval,
    "count": count,
    "code_sim": code_sim,
}


def first_line(prediction: str) -> str:
    """The cut LongBench makes before scoring trec, triviaqa, samsum and lsht (few-shot tasks that run on)."""
    return prediction.lstrip("\n").split("\n")[0]


def best(metric: Metric, prediction: str, answers: Sequence[str], all_classes: Sequence[str] = ()) -> float:
    """The best score over the gold answers, starting from 0.0 (so no answers scores 0)."""
    score = 0.0
    for answer in answers:
        score = max(score, metric(prediction, answer, all_classes))
    return score

"""InfiniteBench's English scoring (Zhang et al., 2024, "∞Bench: Extending Long Context Evaluation Beyond 100K
Tokens", `src/compute_scores.py`'s `get_score_one`), reproduced in plain Python, quirks included, so that scores are
comparable with published ones; the ROUGE-Lsum of the `evaluate`/`rouge_score` packages it calls is reimplemented here
rather than installed. Each scorer takes the output and the labels InfiniteBench's `get_answer` gives (for the
multiple-choice tasks: the right option's text, then its letter) and returns 1.0/0.0 or a share; InfiniteBench
reports 100 x the mean, lcbench keeps [0, 1]. qa_f1 is LongBench's, which InfiniteBench's equals."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence

from lcbench.tasks.longbench_metrics import best, lcs_table, qa_f1

Scorer = Callable[[str, Sequence[str]], float]

_NOT_DIGIT = re.compile("[^0-9]")
_NUMBER = re.compile(r"\d+\.\d+|\d+")
_RETRIEVAL_MARKS = ("\n", ":", '"', "'", ".", ",", "?", "!", "{", "}")
_ROUGE_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def first_integer(text: str) -> str:
    """The first run of digits in `text` ("" where there is none): `first_int_match`."""
    return next((piece for piece in _NOT_DIGIT.split(text) if piece), "")


def blank(text: str, marks: Sequence[str]) -> str:
    """`text` with each of `marks` made a space."""
    for mark in marks:
        text = text.replace(mark, " ")
    return text


def single_spaced(text: str) -> str:
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def retrieve_number(prediction: str, labels: Sequence[str]) -> float:
    """Retrieve.PassKey and Retrieve.Number: the first integer of the output is the label."""
    return float(first_integer(prediction) == labels[0])


def kv_retrieval(prediction: str, labels: Sequence[str]) -> float:
    """Retrieve.KV: the value is one of the output's words, punctuation and braces taken for spaces. (InfiniteBench
    compares its label as the record gives it; where that is a one-item list, no word equals it and every output
    scores 0; here the list's item is compared.)"""
    return float(labels[0] in blank(prediction, _RETRIEVAL_MARKS).split())


def longdialogue(prediction: str, labels: Sequence[str]) -> float:
    """En.Dia: the first label is one of the output's words, upper-cased (a two-word first label never matches)."""
    return float(labels[0] in [word.upper() for word in blank(prediction.strip(), _RETRIEVAL_MARKS).split()])


def math_find(prediction: str, labels: Sequence[str]) -> float:
    """Math.Find: the first number of the output (digits, or digits.digits) equals the label, compared as an integer
    where the label is one and as a float otherwise; the label is kept as JSON ("88", "44.5"). A decimal output
    against an integer label raises in InfiniteBench, so is never scored there; here it scores 0."""
    label = json.loads(labels[0])
    found = _NUMBER.search(prediction)
    if found is None:
        return 0.0
    if isinstance(label, int):
        return float(found.group(0).isdigit() and int(found.group(0)) == label)
    return float(float(found.group(0)) == float(label))


def choice(prediction: str, labels: Sequence[str]) -> float:
    """En.MC: a letter A-D opening the output, the output being the option or its letter, what follows "answer is:",
    "answer:", "answer is" or "option is", or else the first word that is a substring of "ABCD" (so "AB" counts and
    is then checked against the labels)."""
    pred = prediction.strip()
    if pred == "":
        return 0.0
    if pred[0] in "ABCD":
        return float(pred[0] in labels)
    if pred in labels:
        return 1.0
    pred = single_spaced(blank(pred, ("\n", '"', "'", ".", ",", "?", "!", "{", "}")))
    for prefix in ("answer is:", "answer:", "answer is", "option is"):
        at = pred.find(prefix)
        if at == -1:
            continue
        if len(pred) < at + len(prefix) + 1:  # the output ends with the prefix
            return 0.0
        after = pred[at + len(prefix) + 1 :]
        return float(any(after.startswith(label) for label in labels))
    for word in pred.split():
        if word in "ABCD":
            return float(word in labels)
    return 0.0


def code_debug(prediction: str, labels: Sequence[str]) -> float:
    """Code.Debug: the output opens with the letter and "." or ":", or what follows the first of "answer is:", "is:",
    "answer:" and "correct option is:" found (after dropping quotes, dashes, stars and the word "option") starts
    with the letter or the function's name."""
    name, letter = labels[0], labels[1]
    pred = prediction.strip()
    if pred[:2] in (f"{letter}.", f"{letter}:"):
        return 1.0
    pred = single_spaced(blank(pred, ("\n", "`", "'", '"', "-", "*", "Option", "option")))
    for prefix in ("answer is:", "is:", "answer:", "correct option is:"):
        at = pred.find(prefix)
        if at == -1:
            continue
        if len(pred) < at + len(prefix) + 1:
            return 0.0
        after = pred[at + len(prefix) + 1 :]
        return float(after.startswith(letter) or after.startswith(name))
    return 0.0


def _rouge_tokens(sentence: str) -> list[str]:
    """rouge_score's default tokenizer without stemming: lower case, runs of a-z0-9 as the tokens."""
    return [token for token in _ROUGE_NOT_ALNUM.sub(" ", sentence.lower()).split() if token]


def _lcs_positions(reference: list[str], candidate: list[str]) -> list[int]:
    """The positions in `reference` of one longest common subsequence, read back as rouge_score does (ties step
    back in the reference)."""
    table = lcs_table(reference, candidate)
    positions: list[int] = []
    i, j = len(reference), len(candidate)
    while i > 0 and j > 0:
        if reference[i - 1] == candidate[j - 1]:
            positions.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return positions[::-1]


def rouge_lsum(prediction: str, label: str) -> float:
    """`evaluate.load("rouge").compute(predictions=[prediction], references=[label])["rougeLsum"]`'s F-measure:
    summary-level LCS over newline-split sentences (rouge_score 0.1.2, no stemming), each reference sentence's
    union LCS with every predicted sentence, hits counted once per token occurrence on either side."""
    references = [_rouge_tokens(s) for s in label.split("\n") if s]
    candidates = [_rouge_tokens(s) for s in prediction.split("\n") if s]
    m, n = sum(map(len, references)), sum(map(len, candidates))
    if not references or not candidates or not m or not n:
        return 0.0
    left_r = Counter(token for sentence in references for token in sentence)
    left_c = Counter(token for sentence in candidates for token in sentence)
    hits = 0
    for reference in references:
        union = sorted(set().union(*(_lcs_positions(reference, candidate) for candidate in candidates)))
        for token in (reference[i] for i in union):
            if left_c[token] > 0 and left_r[token] > 0:
                hits += 1
                left_c[token] -= 1
                left_r[token] -= 1
    recall, precision = hits / m, hits / n
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def summary(prediction: str, labels: Sequence[str]) -> float:
    """En.Sum: ROUGE-Lsum against the best of the reference summaries (`evaluate`'s rouge with several references)."""
    return max((rouge_lsum(prediction, label) for label in labels), default=0.0)


def qa(prediction: str, labels: Sequence[str]) -> float:
    """En.QA: the best token F1 over the answers, with LongBench's normalisation (InfiniteBench's qa_f1_score)."""
    return best(qa_f1, prediction, labels)


# Each English task's metric and scorer, as `get_score_one` picks them.
SCORERS: dict[str, tuple[str, Scorer]] = {
    "passkey": ("accuracy", retrieve_number),
    "number_string": ("accuracy", retrieve_number),
    "kv_retrieval": ("accuracy", kv_retrieval),
    "longbook_sum_eng": ("rouge_lsum", summary),
    "longbook_choice_eng": ("accuracy", choice),
    "longbook_qa_eng": ("qa_f1", qa),
    "longdialogue_qa_eng": ("accuracy", longdialogue),
    "math_find": ("accuracy", math_find),
    "code_debug": ("accuracy", code_debug),
}

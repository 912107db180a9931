"""Running a long input as pieces: each piece is one model call of at most the budget.

Answer tasks map the query over the pieces and reduce the answers; transform tasks (translation)
process each piece on its own and join the outputs in order. Blockwise and DP chunking share this;
they differ only in where the pieces are cut.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from lcbench.strategies.base import Prediction, Usage, framed

if TYPE_CHECKING:
    from lcbench.model import Generation, Model
    from lcbench.tasks.base import Example

Reduce = Literal["first", "majority", "confident", "union"]
REDUCERS = ("first", "majority", "confident", "union")


def is_empty(answer: str, example: Example) -> bool:
    text = answer.strip().rstrip(" .").lower()
    return text in ("", example.no_answer.lower())


def combine(answers: Sequence[Generation], rule: str, example: Example) -> str:
    """One answer from the pieces' answers (in document order).

    first: the first non-empty answer; majority: the most frequent non-empty answer (ties go to
    the earliest); confident: the non-empty answer the model gave the highest mean token
    log-probability; union: every word of the non-empty answers, once, in order of appearance.
    With no non-empty answer, the task's `no_answer`.
    """
    answers = [dataclasses.replace(a, text=example.answer_of(a.text)) for a in answers]
    found = [a for a in answers if not is_empty(a.text, example)]
    if not found:
        return example.no_answer
    if rule == "first":
        return found[0].text
    if rule == "majority":
        counts = Counter(a.text.strip() for a in found)
        return max(counts, key=lambda text: (counts[text], -[a.text.strip() for a in found].index(text)))
    if rule == "confident":
        return max(found, key=lambda a: a.logprob / max(a.new_tokens, 1)).text
    if rule == "union":
        return " ".join(dict.fromkeys(word for a in found for word in a.text.split()))
    raise ValueError(f"unknown reduce rule {rule!r}; use one of {', '.join(REDUCERS)}")


def run_pieces(model: Model, example: Example, pieces: Sequence[list[int]], reduce: str, note: str = "") -> Prediction:
    """Map the query over `pieces` (answer tasks) or transform each and join (transform tasks).
    Each piece is asked in the example's prompt; answers are extracted before they are combined."""
    frame = framed(model, example)
    outputs = [model.generate(frame(piece), example.max_new_tokens(len(piece))) for piece in pieces]
    usage = sum((Usage.of(g) for g in outputs), Usage())
    if example.output == "transform":
        text = " ".join(t for t in (example.answer_of(g.text).strip() for g in outputs) if t)
    else:
        text = combine(outputs, reduce, example)
    return Prediction(text, usage, note=note, extra={"pieces": float(len(pieces))})


def split_fixed(ids: list[int], size: int, overlap: int = 0) -> list[list[int]]:
    """Consecutive slices of `size` tokens, each starting `size - overlap` after the last."""
    step = size - overlap
    return [ids[start : start + size] for start in range(0, max(len(ids) - overlap, 1), step)]

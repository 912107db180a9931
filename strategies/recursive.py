"""`recursive`: memory carried across chunks, in the two forms the literature uses.

Transform tasks (translation): a document that fits in `chunk_tokens` is translated in one call;
a longer one is cut at unit boundaries into chunks of at most
`memory_tokens`; each chunk is translated with the previous chunk's source before it and the
previous chunk's translation forced as the start of the output, so that the model continues the
document rather than starting one. This is the concatenation approach of document-level MT
(Tiedemann & Scherrer, "Neural Machine Translation with Extended Context", 2017).

Answer tasks: chunks are filtered and the survivors merged up a tree. Each chunk is asked the
query; a chunk whose answer is empty is dropped, and of the rest only the units that contain a
word of the answer are kept as evidence. Evidence of `fan_in` neighbours is merged into the next
level's chunks, until one chunk holds it all and its answer is final (a tree of partial reads, as
in Wu et al., "Recursively Summarizing Books with Human Feedback", 2021, and Chen et al.,
"Walking Down the Memory Maze", 2023). Depth, calls and tokens are recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lcbench.model import Model
from lcbench.strategies.base import Framed, Prediction, Strategy, Usage, framed
from lcbench.strategies.blockwise import MIN_CONTEXT
from lcbench.strategies.dp_chunked import candidates, choose_cuts
from lcbench.strategies.pieces import is_empty
from lcbench.tasks.base import Example

MAX_DEPTH = 8


@dataclass
class Recursive(Strategy):
    name: ClassVar[str] = "recursive"

    chunk_tokens: int = 256  # prompt tokens one call may see: memory + chunk + the prompt around them
    memory_tokens: int = 127  # source tokens carried from the previous chunk (transform tasks)
    fan_in: int = 2  # evidence pieces merged per node of the tree (answer tasks)

    def __post_init__(self) -> None:
        if self.chunk_tokens < 2 * MIN_CONTEXT + 1:
            raise ValueError(f"chunk_tokens must be at least {2 * MIN_CONTEXT + 1}, got {self.chunk_tokens}")
        if not MIN_CONTEXT <= self.memory_tokens < self.chunk_tokens - MIN_CONTEXT:
            raise ValueError(
                f"memory_tokens must be between {MIN_CONTEXT} and chunk_tokens - {MIN_CONTEXT} "
                f"({self.chunk_tokens - MIN_CONTEXT}), got {self.memory_tokens}"
            )
        if self.fan_in < 2:
            raise ValueError(f"fan_in must be at least 2 (a tree that merges nothing never ends), got {self.fan_in}")

    def run(self, model: Model, example: Example) -> Prediction:
        frame, ids = framed(model, example), model.encode(example.context)
        if example.output == "transform":
            return self.translate(model, example, ids, frame)
        return self.filter_tree(model, example, ids, frame)

    def chunks(self, ids: list[int], boundaries: Sequence[int], size: int) -> list[tuple[int, int]]:
        positions, inside = candidates(boundaries, len(ids), size)
        cuts = choose_cuts(positions, size, inside, cut_penalty=10_000.0)
        return list(zip(cuts, cuts[1:]))

    def translate(self, model: Model, example: Example, ids: list[int], frame: Framed) -> Prediction:
        """Each chunk after the previous one's source, its translation forced as the output's start."""
        if len(ids) + frame.tokens <= self.chunk_tokens:  # it fits: no chunk, no seam
            generation = model.generate(frame(ids), example.max_new_tokens(len(ids)))
            extra = {"depth": 0.0, "max_source_tokens": float(len(ids) + frame.tokens)}
            return Prediction(generation.text, Usage.of(generation), extra=extra)
        size = min(self.memory_tokens, self.chunk_tokens - frame.tokens - self.memory_tokens)
        if size < MIN_CONTEXT:
            raise ValueError(f"chunk_tokens {self.chunk_tokens} leaves {size} tokens per chunk beside memory and prompt")
        usage, outputs, widest = Usage(), [], 0
        previous_source: list[int] = []
        previous_output: list[int] = []
        for start, end in self.chunks(ids, example.boundaries, size):
            source = previous_source + ids[start:end]
            widest = max(widest, len(source) + frame.tokens)
            generation = model.generate(frame(source) + previous_output, example.max_new_tokens(end - start))
            usage += Usage.of(generation)
            outputs.append(example.answer_of(generation.text).strip())
            previous_source, previous_output = ids[start:end], model.encode(generation.text)
        text = " ".join(o for o in outputs if o)
        return Prediction(text, usage, extra={"depth": 1.0, "max_source_tokens": float(widest)})

    def filter_tree(self, model: Model, example: Example, ids: list[int], frame: Framed) -> Prediction:
        room = self.chunk_tokens - frame.tokens
        usage, depth, widest = Usage(), 0, 0
        units = unit_spans(example.boundaries, len(ids))
        spans = self.chunks(ids, example.boundaries, room)
        pieces = [ids[a:b] for a, b in spans]
        piece_units = [[ids[max(x, a) : min(y, b)] for x, y in units if x < b and y > a] for a, b in spans]
        while True:
            depth += 1
            answers = []
            for piece in pieces:
                widest = max(widest, len(piece) + frame.tokens)
                generation = model.generate(frame(piece), example.max_new_tokens(len(piece)))
                usage += Usage.of(generation)
                answers.append(example.answer_of(generation.text))
            extra = {"depth": float(depth), "max_source_tokens": float(widest)}
            if len(pieces) == 1:
                return Prediction(answers[0].strip() or example.no_answer, usage, extra=extra)
            evidence = [
                evidence_of(model, kept, answer) for kept, answer in zip(piece_units, answers) if not is_empty(answer, example)
            ]
            if not evidence:
                return Prediction(example.no_answer, usage, extra=extra)
            merged, merged_units = merge(evidence, self.fan_in, room)
            if sum(map(len, merged)) >= sum(map(len, pieces)) or depth == MAX_DEPTH:
                # the evidence no longer shrinks: the first chunk that answered decides
                first = next(a for a in answers if not is_empty(a, example))
                return Prediction(first.strip(), usage, note="the tree stopped shrinking: first answer kept", extra=extra)
            pieces, piece_units = merged, merged_units


def unit_spans(boundaries: Sequence[int], total: int) -> list[tuple[int, int]]:
    starts = sorted({b for b in boundaries if 0 < b < total} | {0})
    return list(zip(starts, [*starts[1:], total]))


def evidence_of(model: Model, units: list[list[int]], answer: str) -> list[list[int]]:
    """The units holding a word of `answer`; all of them where none does."""
    words = set(answer.split())
    kept = [u for u in units if words & set(model.decode(u).split())]
    return kept or units


def merge(evidence: list[list[list[int]]], fan_in: int, room: int) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Groups of `fan_in` neighbours' evidence units, packed into pieces of at most `room` tokens."""
    pieces: list[list[int]] = []
    piece_units: list[list[list[int]]] = []
    for g in range(0, len(evidence), fan_in):
        current: list[int] = []
        current_units: list[list[int]] = []
        for unit in (u for group in evidence[g : g + fan_in] for u in group):
            unit = unit[:room]
            if current and len(current) + len(unit) > room:
                pieces.append(current)
                piece_units.append(current_units)
                current, current_units = [], []
            current = current + unit
            current_units.append(unit)
        if current:
            pieces.append(current)
            piece_units.append(current_units)
    return pieces, piece_units

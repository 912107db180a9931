"""`blockwise`: the context cut into fixed blocks of tokens, each block one model call.

Answer tasks ask the query of every block (map) and combine the answers (reduce: `first`,
`majority`, `confident` or `union`); transform tasks translate each block on its own and join the
outputs in order. Cuts fall wherever the token count says, mid-sentence included.
Map-reduce (Dean & Ghemawat, 2004) as long-document chains apply it to LLMs (e.g. LangChain's
MapReduceDocumentsChain): pieces the model can afford, answered independently, then combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lcbench.model import Model
from lcbench.strategies.base import Prediction, Strategy, framed
from lcbench.strategies.pieces import REDUCERS, Reduce, run_pieces, split_fixed
from lcbench.tasks.base import Example

MIN_CONTEXT = 8  # fewer context tokens per call than this is no useful context


@dataclass
class Blockwise(Strategy):
    name: ClassVar[str] = "blockwise"

    block_tokens: int = 256  # prompt tokens per call: block + the prompt around it
    overlap: int = 0  # tokens a block shares with the one before it (answer tasks)
    reduce: Reduce = "first"

    def __post_init__(self) -> None:
        if self.block_tokens < MIN_CONTEXT + 1:
            raise ValueError(f"block_tokens must be at least {MIN_CONTEXT + 1}, got {self.block_tokens}")
        if not 0 <= self.overlap < self.block_tokens:
            raise ValueError(f"overlap must be at least 0 and below block_tokens ({self.block_tokens}), got {self.overlap}")
        if self.reduce not in REDUCERS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCERS)}; got {self.reduce!r}")

    def problems(self, context_lengths: Sequence[int]) -> list[str]:
        if context_lengths and self.block_tokens > max(context_lengths):
            return [f"block_tokens {self.block_tokens} is larger than every context length: one block, same as `full`"]
        return []

    def run(self, model: Model, example: Example) -> Prediction:
        room = self.block_tokens - framed(model, example).tokens
        if room < MIN_CONTEXT:
            raise ValueError(f"block_tokens {self.block_tokens} leaves {room} context tokens beside the prompt; raise it")
        overlap = self.overlap if example.output == "answer" else 0  # a transform must not repeat itself
        if self.overlap >= room:
            raise ValueError(f"overlap {self.overlap} is not below the {room} context tokens a block holds")
        note = "overlap ignored: outputs of a transform task are joined" if overlap != self.overlap else ""
        blocks = split_fixed(model.encode(example.context), room, overlap)
        return run_pieces(model, example, blocks, self.reduce, note)

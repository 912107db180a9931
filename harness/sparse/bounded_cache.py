"""A KV cache that keeps only what a sinks + window (+ global) pattern can still attend to.

After each forward call every layer drops the keys no future query may see: it keeps the first
`sinks` positions, the global positions and the `window - 1` most recent ones (the next token
attends to itself and those). Memory and per-token decode time are then flat in the context
length (Xiao et al., StreamingLLM, 2023).

Positions: keys keep the rotary positions they were computed at, and new tokens take their
original positions (the cache reports the full length seen). StreamingLLM instead re-rotates
cached keys to their slot in the cache, so that distances never exceed the training length;
lcbench keeps original positions, so that with a window covering the input a bounded cache gives
exactly full attention's tokens, and distances inside the window are the true ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer


class BoundedLayer(DynamicLayer):
    is_sliding = True

    def __init__(self, sinks: int, window: int, global_positions: Sequence[int] = ()) -> None:
        super().__init__()
        self.sinks, self.window = sinks, window
        self.global_positions = torch.tensor(sorted(set(global_positions)), dtype=torch.long)
        self.positions = torch.zeros(0, dtype=torch.long)  # positions of the kept keys, ascending
        self.seen = 0

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """Return every key this call attends over (kept + new), then keep only the bounded set."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self.keys is not None and self.values is not None
        new = key_states.shape[-2]
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        positions = torch.cat([self.positions, torch.arange(self.seen, self.seen + new)])
        self.seen += new
        keep = self.keeps(positions)
        if bool(keep.all()):
            self.keys, self.values, self.positions = keys, values, positions
        else:
            index = keep.nonzero().squeeze(-1).to(keys.device)
            self.keys, self.values = keys.index_select(-2, index), values.index_select(-2, index)
            self.positions = positions[keep]
        return keys, values

    def keeps(self, positions: Tensor, seen: int | None = None) -> Tensor:
        """Which of `positions` a query at position `seen` (default: `self.seen`, the next token) may attend to."""
        recent = positions > (self.seen if seen is None else seen) - self.window
        return recent | (positions < self.sinks) | torch.isin(positions, self.global_positions)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return len(self.positions) + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen  # the tokens seen, so that new tokens take their original positions

    def get_max_length(self) -> int:
        return self.sinks + len(self.global_positions) + self.window

    def reset(self) -> None:
        super().reset()
        self.positions, self.seen = torch.zeros(0, dtype=torch.long), 0


class BoundedCache(Cache):
    """One `BoundedLayer` per decoder layer."""

    def __init__(self, layers: int, sinks: int, window: int, global_positions: Sequence[int] = ()) -> None:
        super().__init__(layers=[BoundedLayer(sinks, window, global_positions) for _ in range(layers)])

    def key_positions(self) -> Tensor:
        """Positions of the keys kept so far (the same in every layer)."""
        layer = self.layers[0]
        assert isinstance(layer, BoundedLayer)
        return layer.positions

    def has_globals(self) -> bool:
        layer = self.layers[0]
        assert isinstance(layer, BoundedLayer)
        return len(layer.global_positions) > 0

    def kept_tokens(self) -> int:
        return len(self.key_positions())

    def kept_after(self, seen: int) -> Tensor:
        """(kept,) the positions this cache keeps once `seen` tokens went in, whatever their calls:
        what a call at position `seen` attends to besides its own tokens (nothing is changed)."""
        layer = self.layers[0]
        assert isinstance(layer, BoundedLayer)
        positions = torch.arange(seen)
        return positions[layer.keeps(positions, seen)]

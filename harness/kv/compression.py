"""KV-cache compression inside any Hugging Face model: once the context is in the cache (or the
question too, `question_aware`), each layer keeps, per KV head, the positions its method scores
highest, up to its budget; H2O and TOVA go on evicting one position per decode step to hold it.

The methods (SnapKV, H2O, TOVA, key-norm, StreamingLLM's sinks + recent) are classes in `methods.py`,
each citing its paper. Budgets per layer are uniform or a PyramidKV schedule (Cai et al., 2024: more
at the bottom layers). The attention itself is SDPA for a fresh prefill and one float32 buffer of the
new queries' weights after compression. Cached keys keep their rotary positions and new tokens take
their original positions, as in the bounded cache.

Memory: each layer is cut right after its own attention has scored the prefill (`KvCall.split`), so
at most one layer's cache is uncut at once; the cut copies the kept entries into storage of the
budget's size (plus the question's room), piece by piece, and the uncut keys and values go as the
layer's attention returns. Evictions while decoding move the kept entries forward within the layer's
storage (no copy of the cache), and new tokens are written into spare room that grows by a factor,
not concatenated at every step.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer

from lcbench.kv.methods import KvMethod, build_method, window_attention

NAME = "lcbench_kv"


MOVE_BYTES = 4 << 20  # the buffer that carries kept entries forward within a layer, per piece (a CPU's)
GPU_MOVE_BYTES = 64 << 20  # ... on a GPU, where each piece is a kernel launch
GROWTH = 1.25  # a layer's storage grows by this factor when new tokens outrun it


def move_entries(source: Tensor, target: Tensor, index: Tensor, start: int = 0) -> None:
    """`target[:, h, j] = source[:, h, index[h, j]]` for every KV head h and j >= `start`, a piece of
    entries at a time through one small buffer. `index` (kv heads, k) is sorted and without repeats
    per head, so `index[h, j] >= j`: `target` may be `source` itself (entries move forward within it),
    because a piece is read whole before it is written and no later piece reads where it writes."""
    b, _, _, d = source.shape
    kept = index.shape[-1]
    limit = GPU_MOVE_BYTES if source.device.type == "cuda" else MOVE_BYTES
    rows = max(1, limit // max(1, b * source.shape[1] * d * source.element_size()))
    for j in range(start, kept, rows):
        piece = index[:, j : j + rows]
        taken = source.gather(2, piece[None, :, :, None].expand(b, -1, -1, d))
        target[:, :, j : j + piece.shape[-1]].copy_(taken)


def entries_of(store: Tensor) -> Tensor:
    """A layer's storage as (batch, kv heads, entries, width): keys and values as they are, positions
    (kv heads, entries) as a view of that shape."""
    return store if store.dim() == 4 else store[None, :, :, None]


def adopted(states: Tensor) -> Tensor:
    """`states` itself where it is contiguous and alone in its storage (nothing else held with it),
    else a contiguous copy."""
    if states.is_contiguous() and states.untyped_storage().nbytes() == states.nbytes:
        return states
    return states.clone(memory_format=torch.contiguous_format)


def first_moved(index: Tensor) -> int:
    """The first entry that `index` (kv heads, k; sorted) moves in any head: those before it stay
    where they are. Read on a CPU only (elsewhere it would wait for the device): 0 there."""
    if index.device.type != "cpu":
        return 0
    moved = (index != torch.arange(index.shape[-1], device=index.device)).any(dim=0)
    return int(moved.to(torch.uint8).argmax()) if bool(moved.any()) else index.shape[-1]


class CompressedLayer(DynamicLayer):
    """A layer's cache whose heads may keep different positions (as many per head). The positions live
    on the keys' device: the indices that select from them come from scores computed there.

    Keys, values and positions are held in storage with room to spare (`stores`: keys and values
    (batch, kv heads, capacity, head dim), positions (kv heads, capacity)); `keys`, `values` and
    `positions` are their first `length` entries, what attention reads. New tokens are copied in
    after them, and the storage grows by `GROWTH` only when they outrun it, not at every step. A cut
    moves the kept entries forward within the storage (`keep`), or into storage of the size asked
    for when the cache shrinks (the prefill's compression), so no second copy of the whole cache is
    made. The first tokens' keys and values become the storage as they come (no copy where they are
    contiguous and alone in their storage); storage the layer did not make is never written in place."""

    is_croppable = False

    def __init__(self) -> None:
        super().__init__()
        self.positions = torch.zeros(0, 0, dtype=torch.long)  # (kv heads, kept): original positions
        self.seen = 0
        self.length = 0  # entries kept, the first `length` of the storage
        self.stores: tuple[Tensor, Tensor, Tensor] | None = None
        self.owned = False  # the storage is the layer's own, to write in place

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        fresh = torch.arange(self.seen, self.seen + new, device=key_states.device).expand(key_states.shape[1], new)
        if self.stores is None:
            keys, values = adopted(key_states), adopted(value_states)
            self.stores = (keys, values, fresh.contiguous())
            self.owned = keys is not key_states and values is not value_states and keys is not values
        else:
            self.reserve(self.length + new)
            assert self.stores is not None
            keys, values, positions = self.stores
            keys[:, :, self.length : self.length + new].copy_(key_states)
            values[:, :, self.length : self.length + new].copy_(value_states)
            positions[:, self.length : self.length + new].copy_(fresh)
        self.length += new
        self.seen += new
        self._view()
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def _view(self) -> None:
        assert self.stores is not None
        keys, values, positions = self.stores
        self.keys, self.values = keys[:, :, : self.length], values[:, :, : self.length]
        self.positions = positions[:, : self.length]

    def capacity(self) -> int:
        return 0 if self.stores is None else int(self.stores[0].shape[-2])

    def _allocate(self, capacity: int) -> tuple[Tensor, Tensor, Tensor]:
        assert self.stores is not None
        keys, values, positions = self.stores
        return (
            keys.new_empty(keys.shape[0], keys.shape[1], capacity, keys.shape[-1]),
            values.new_empty(values.shape[0], values.shape[1], capacity, values.shape[-1]),
            positions.new_empty(positions.shape[0], capacity),
        )

    def reserve(self, entries: int) -> None:
        """Room for `entries` (kept + new): storage `GROWTH` times larger when it has less, the kept
        entries copied over, the old storage released."""
        if entries <= self.capacity():
            return
        assert self.stores is not None
        grown = self._allocate(max(entries, math.ceil(self.capacity() * GROWTH)))
        for old, new in zip(map(entries_of, self.stores), map(entries_of, grown), strict=True):
            new[:, :, : self.length].copy_(old[:, :, : self.length])
        self.stores, self.owned = grown, True

    def keep(self, index: Tensor, capacity: int | None = None) -> None:
        """Keep, per KV head, the cached entries at `index` (kv heads, k), in position order; `index` may
        be on another device than the cache. The entries move forward within the storage; with a
        `capacity` below the storage's, into new storage of that size (at least k) instead, and the
        old is released."""
        assert self.stores is not None
        index = index.to(self.positions.device).sort(dim=-1).values
        kept = index.shape[-1]
        size = self.capacity() if capacity is None else min(self.capacity(), max(kept, capacity))
        in_place = self.owned and size == self.capacity()
        targets = self.stores if in_place else self._allocate(size)
        start = first_moved(index) if in_place else 0
        for source, target in zip(map(entries_of, self.stores), map(entries_of, targets), strict=True):
            move_entries(source, target, index, start)
        self.stores, self.owned, self.length = targets, True, kept
        self._view()

    def held_bytes(self) -> int:
        """The bytes the keys' and values' storage holds, spare room included."""
        return 0 if self.stores is None else int(self.stores[0].nbytes + self.stores[1].nbytes)

    def mark(self, copy: bool) -> LayerMark:
        """The layer as it is now, for `rewind`: its kept entries and tokens seen, and with `copy` a copy of
        the kept entries themselves (where reading more may move them: a method that evicts)."""
        assert self.keys is not None and self.values is not None
        entries = (self.keys.clone(), self.values.clone(), self.positions.clone()) if copy else None
        return LayerMark(self.length, self.seen, entries)

    def rewind(self, mark: LayerMark) -> None:
        """Back to `mark`: what was read since is dropped. Without a copy the entries are where they were
        (new tokens only went after them); with one, they are put back in the layer's own storage."""
        if mark.entries is not None:
            if not self.owned:
                self.stores, self.owned = self._allocate(max(self.capacity(), mark.length)), True
            assert self.stores is not None
            for saved, store in zip(map(entries_of, mark.entries), map(entries_of, self.stores), strict=True):
                store[:, :, : mark.length].copy_(saved)
        self.length, self.seen = mark.length, mark.seen
        self._view()

    def kept(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.kept() + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen  # new tokens take their original positions

    def reset(self) -> None:
        super().reset()
        self.positions, self.seen = torch.zeros(0, 0, dtype=torch.long, device=self.positions.device), 0
        self.stores, self.length, self.owned = None, 0, False


@dataclass(frozen=True)
class LayerMark:
    """A layer's state to rewind to: `length` kept entries, `seen` tokens, and a copy of the kept
    keys, values and positions where they may move."""

    length: int
    seen: int
    entries: tuple[Tensor, Tensor, Tensor] | None


class CompressedCache(Cache):
    def __init__(self, layers: int) -> None:
        super().__init__(layers=[CompressedLayer() for _ in range(layers)])

    def layer(self, index: int) -> CompressedLayer:
        layer = self.layers[index]
        assert isinstance(layer, CompressedLayer)
        return layer

    def held_bytes(self) -> int:
        """The bytes every layer's keys and values hold, spare room included."""
        return sum(self.layer(i).held_bytes() for i in range(len(self.layers)))


def layer_budgets(tokens: int, layers: int, schedule: str) -> list[int]:
    """Per-layer budgets averaging `tokens`: uniform, or PyramidKV's linear taper from 1.5x at the
    bottom layer to 0.5x at the top (lower layers attend broadly, upper ones to few positions)."""
    if schedule == "uniform" or layers == 1:
        return [tokens] * layers
    weights = [1.5 - i / (layers - 1) for i in range(layers)]
    budgets = [max(1, round(tokens * w)) for w in weights]
    budgets[0] += tokens * layers - sum(budgets)  # the rounding's remainder, so the total holds
    return budgets


@dataclass
class KvCall:
    """One generation's compression: the method, each layer's budget, the cache and each layer's scores.

    With `split` (the tokens after which compression is due), each layer is cut as soon as its own
    attention has scored a prefill ending there, before the next layer's keys and values are made,
    so at most one layer holds more than its budget at once (as kvpress's presses cut per layer, in
    the attention's forward hook); `compress` then cuts what is left and ends the scoring. A cut layer
    keeps room for `headroom` more positions (what is read before the method cuts again: the
    question), so that reading them does not reallocate its storage."""

    method: KvMethod
    budgets: list[int]
    cache: CompressedCache
    split: int = 0  # compress each layer during the forward that fills its cache to this many tokens (0: at `compress`)
    headroom: int = 0  # spare positions a cut layer keeps room for
    scoring: bool = True  # the forward now running is the one compression scores (the prefill)
    scores: dict[int, Tensor] = field(default_factory=dict)  # layer -> (batch, kv heads, kept), aligned with the cache
    evicted: int = 0
    peak_bytes: int = 0  # the most the cache's keys and values held before a cut of the prefill (one layer uncut)

    def compress(self) -> None:
        """Each layer keeps its budget of top-scoring positions per KV head; scoring stops here."""
        for index, budget in enumerate(self.budgets):
            if self.cache.layer(index).kept() > budget:
                scores = self.scores.get(index)
                if scores is None:
                    raise RuntimeError(f"layer {index} was not scored: {self.method.name} compresses after a prefill it saw")
                self.scores[index] = self.cut(index, scores, shrink=True)
        self.scoring = False

    def scored(self, index: int, scores: Tensor) -> None:
        """Layer `index`'s prefill `scores`; the layer is cut now if its cache has reached `split`."""
        self.scores[index] = scores
        layer = self.cache.layer(index)
        if self.split and layer.seen == self.split and layer.kept() > self.budgets[index]:
            self.scores[index] = self.cut(index, scores, shrink=True)

    def follow(self, index: int, weights: Tensor, groups: int) -> None:
        """A forward at layer `index` after compression (the question where it was not scored, then each
        decode step): the method's scores take in the new queries' attention `weights` (batch, heads, new,
        kept + new) and, for the methods that evict (H2O, TOVA), the layer is cut back to its budget in
        place."""
        scores = self.method.step(self.scores.get(index), weights, groups)
        if scores is None:
            return
        excess = self.cache.layer(index).kept() - self.budgets[index]
        if excess > 0:
            scores = self.cut(index, scores)
            self.evicted += excess
        self.scores[index] = scores

    def cut(self, index: int, scores: Tensor, shrink: bool = False) -> Tensor:
        """Layer `index` keeps its budget of positions per KV head, the top of `scores` (batch, kv heads,
        kept) once the method's protected ones are put first; returns the scores of those kept. `shrink`:
        the layer's storage shrinks to the budget and the headroom (the prefill's cut), else the kept
        entries move forward within it."""
        keep = self.method.protect(scores)[0].topk(self.budgets[index], dim=-1).indices  # batch of one
        layer = self.cache.layer(index)
        if shrink:
            self.peak_bytes = max(self.peak_bytes, self.cache.held_bytes())
        layer.keep(keep, self.budgets[index] + self.headroom if shrink else None)
        return scores.gather(-1, keep.sort(dim=-1).values[None].to(scores.device))

    def mark(self) -> CallMark:
        """The cache and the scores as they are now (after the context), for `rewind`: each question of a
        shared context starts from them. The kept entries are copied only where the method evicts."""
        with torch.inference_mode():
            layers = [self.cache.layer(i).mark(copy=self.method.evicts) for i in range(len(self.budgets))]
        return CallMark(layers, dict(self.scores), self.evicted)

    def rewind(self, mark: CallMark) -> None:
        """Back to `mark`: every layer, its scores (replaced, never changed in place) and the evictions counted."""
        with torch.inference_mode():  # the cache's tensors were made in inference mode: written in it
            for index, layer in enumerate(mark.layers):
                self.cache.layer(index).rewind(layer)
        self.scores, self.evicted = dict(mark.scores), mark.evicted

    def promised_bytes(self, tokens: int) -> int:
        """The bytes the budgets keep of a prefill of `tokens`: per layer, min(budget, tokens) positions
        per KV head, each with its key and value at the cache's element size."""
        total = 0
        for index, budget in enumerate(self.budgets):
            layer = self.cache.layer(index)
            if layer.keys is None or layer.values is None:
                continue
            keys, values = layer.keys, layer.values
            width = keys.shape[-1] * keys.element_size() + values.shape[-1] * values.element_size()
            total += min(budget, tokens) * keys.shape[0] * keys.shape[1] * width
        return total


@dataclass(frozen=True)
class CallMark:
    layers: list[LayerMark]
    scores: dict[int, Tensor]
    evicted: int


ACTIVE: contextvars.ContextVar[KvCall] = contextvars.ContextVar("lcbench_kv_call")


@dataclass(frozen=True)
class KvMask:
    q_length: int
    kv_length: int


def build_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, **kwargs: Any) -> KvMask:
    return KvMask(q_length, kv_length)


def grouped_values(weights: Tensor, value: Tensor) -> Tensor:
    """`weights` (batch, heads, n_q, n_kv) applied to `value` (batch, kv heads, n_kv, d), each KV head
    serving its query heads without copies of the values: (batch, heads, n_q, d)."""
    b, heads, q, n = weights.shape
    kv_heads = value.shape[1]
    out = torch.matmul(weights.reshape(b, kv_heads, heads // kv_heads * q, n).to(value.dtype), value)
    return out.view(b, heads, q, value.shape[-1])


def kv_attention(
    module: Any, query: Tensor, key: Tensor, value: Tensor, attention_mask: Any, scaling: float | None = None, **kwargs: Any
) -> tuple[Tensor, None]:
    """transformers' per-layer attention: SDPA for the output, and the method's scores beside it."""
    call, layer_index = ACTIVE.get(), int(module.layer_idx)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    q_length, kv_length = query.shape[2], key.shape[2]
    gqa = query.shape[1] != key.shape[1]
    if q_length == kv_length:  # a fresh prefill: causal over itself
        out = F.scaled_dot_product_attention(query, key, value, is_causal=q_length > 1, scale=scale, enable_gqa=gqa)
        if call.scoring:
            call.scored(layer_index, call.method.score(query, key, scale))
    else:  # after compression: every kept key, and causal among the new tokens
        weights = window_attention(query, key, scale, kv_length - q_length)
        out = grouped_values(weights, value)
        call.follow(layer_index, weights, query.shape[1] // key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    from lcbench.model import register_attention

    register_attention(NAME, kv_attention, build_mask)
    return NAME


def kv_call(call: KvCall) -> contextlib.AbstractContextManager[KvCall]:
    from lcbench.model import active

    return active(ACTIVE, call)


def kept_positions(
    hf_model: Any, context_ids: Sequence[int], method: str, compression_ratio: float, **settings: Any
) -> list[Tensor]:
    """The context positions each layer keeps per KV head (layers x (kv heads, kept)), for a
    prefill of `context_ids` alone: what `benchmarks/kvpress_conformance.py` holds against kvpress."""
    layers = hf_model.config.get_text_config().num_hidden_layers
    n = len(context_ids)
    cache = CompressedCache(layers)
    budgets = layer_budgets(max(1, int(n * (1 - compression_ratio))), layers, "uniform")
    call = KvCall(build_method(method, **settings), budgets, cache, split=n)
    previous = hf_model.config._attn_implementation
    hf_model.set_attn_implementation(register())
    try:
        with torch.inference_mode(), kv_call(call):
            keyword = "cache" if "cache" in inspect.signature(hf_model.forward).parameters else "past_key_values"
            hf_model(input_ids=torch.tensor([list(context_ids)], device=hf_model.device), use_cache=True, **{keyword: cache})
            call.compress()
    finally:
        hf_model.set_attn_implementation(previous)
    return [cache.layer(i).positions.sort(dim=-1).values for i in range(layers)]

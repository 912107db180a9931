"""KV-cache compression inside any Hugging Face model: once the context is in the cache (or the
question too, `question_aware`), each layer keeps, per KV head, the positions its method scores
highest, up to its budget; H2O and TOVA go on evicting one position per decode step to hold it.

The methods (SnapKV, H2O, TOVA, key-norm, StreamingLLM's sinks + recent) are classes in `methods.py`,
each citing its paper. Budgets per layer are uniform or a PyramidKV schedule (Cai et al., 2024: more
at the bottom layers). The attention itself is SDPA for a fresh prefill and one float32 buffer of the
new queries' weights after compression. Cached keys keep their rotary positions and new tokens take
their original positions, as in the bounded cache.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer

from lcbench.kv.methods import KvMethod, build_method, window_attention

NAME = "lcbench_kv"


class CompressedLayer(DynamicLayer):
    """A layer's cache whose heads may keep different positions (as many per head). The positions live
    on the keys' device: the indices that select from them come from scores computed there."""

    def __init__(self) -> None:
        super().__init__()
        self.positions = torch.zeros(0, 0, dtype=torch.long)  # (kv heads, kept): original positions
        self.seen = 0

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.positions = torch.zeros(key_states.shape[1], 0, dtype=torch.long, device=key_states.device)
        assert self.keys is not None and self.values is not None
        new = key_states.shape[-2]
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        fresh = torch.arange(self.seen, self.seen + new, device=self.positions.device).expand(self.positions.shape[0], new)
        self.positions = torch.cat([self.positions, fresh], dim=-1)
        self.seen += new
        return self.keys, self.values

    def keep(self, index: Tensor) -> None:
        """Keep, per KV head, the cached entries at `index` (kv heads, k), in position order; `index` may
        be on another device than the cache."""
        assert self.keys is not None and self.values is not None
        index = index.to(self.positions.device).sort(dim=-1).values
        gather = index[None, :, :, None].expand(self.keys.shape[0], -1, -1, self.keys.shape[-1])
        self.keys, self.values = self.keys.gather(2, gather), self.values.gather(2, gather)
        self.positions = self.positions.gather(1, index)

    def kept(self) -> int:
        return int(self.positions.shape[-1])

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.kept() + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen  # new tokens take their original positions

    def reset(self) -> None:
        super().reset()
        self.positions, self.seen = torch.zeros(0, 0, dtype=torch.long, device=self.positions.device), 0


class CompressedCache(Cache):
    def __init__(self, layers: int) -> None:
        super().__init__(layers=[CompressedLayer() for _ in range(layers)])

    def layer(self, index: int) -> CompressedLayer:
        layer = self.layers[index]
        assert isinstance(layer, CompressedLayer)
        return layer


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
    """One generation's compression: the method, each layer's budget, the cache and each layer's scores."""

    method: KvMethod
    budgets: list[int]
    cache: CompressedCache
    scoring: bool = True  # the forward now running is the one compression scores (the prefill)
    scores: dict[int, Tensor] = field(default_factory=dict)  # layer -> (batch, kv heads, kept), aligned with the cache
    evicted: int = 0

    def compress(self) -> None:
        """Each layer keeps its budget of top-scoring positions per KV head; scoring stops here."""
        for index, budget in enumerate(self.budgets):
            if self.cache.layer(index).kept() > budget:
                scores = self.scores.get(index)
                if scores is None:
                    raise RuntimeError(f"layer {index} was not scored: {self.method.name} compresses after a prefill it saw")
                self.scores[index] = self.cut(index, scores)
        self.scoring = False

    def follow(self, index: int, weights: Tensor, groups: int) -> None:
        """A forward at layer `index` after compression (the question where it was not scored, then each
        decode step): the method's scores take in the new queries' attention `weights` (batch, heads, new,
        kept + new) and, for the methods that evict (H2O, TOVA), the layer is cut back to its budget."""
        scores = self.method.step(self.scores.get(index), weights, groups)
        if scores is None:
            return
        excess = self.cache.layer(index).kept() - self.budgets[index]
        if excess > 0:
            scores = self.cut(index, scores)
            self.evicted += excess
        self.scores[index] = scores

    def cut(self, index: int, scores: Tensor) -> Tensor:
        """Layer `index` keeps its budget of positions per KV head, the top of `scores` (batch, kv heads,
        kept) once the method's protected ones are put first; returns the scores of those kept."""
        keep = self.method.protect(scores)[0].topk(self.budgets[index], dim=-1).indices  # batch of one
        self.cache.layer(index).keep(keep)
        return scores.gather(-1, keep.sort(dim=-1).values[None].to(scores.device))


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
            call.scores[layer_index] = call.method.score(query, key, scale)
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
    call = KvCall(build_method(method, **settings), budgets, cache)
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

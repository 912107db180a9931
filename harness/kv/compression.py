"""KV-cache compression inside any Hugging Face model: once the context is in the cache (or the
question too, `question_aware`), each layer keeps, per KV head, the positions its method scores
highest, up to its budget; H2O and TOVA go on evicting one position per decode step to hold it.

Methods (scores per cached position, higher kept):
- `snapkv` (Li et al., 2024): the attention of the last `window` queries, averaged over them and
  over the query heads of a KV head, pooled along positions (`kernel`); the window itself is kept.
- `h2o` (Zhang et al., 2023): attention accumulated over every query so far (heavy hitters), the
  `window` most recent positions always kept; decode steps add to it and evict the lowest.
- `tova` (Oren et al., 2024): the attention of the latest query, averaged over heads; every decode
  step evicts the position it attends to least.
- `keynorm` (Devoto et al., 2024): the keys of lowest L2 norm are kept.
- `streaming` (Xiao et al., 2023): the first `sinks` positions and the most recent ones.
Budgets per layer are uniform or a PyramidKV schedule (Cai et al., 2024: more at the bottom layers).

No N x N matrix: SnapKV scores window x N, H2O sums attention over query chunks sized so that one
float32 buffer of at most `SCORE_ELEMENTS` is live, TOVA and decode steps use one row, key-norm the
keys; the attention itself is SDPA. Cached keys keep
their rotary positions and new tokens take their original positions, as in the bounded cache.
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

NAME = "lcbench_kv"
METHODS = ("snapkv", "h2o", "tova", "keynorm", "streaming")
EVICTING = ("h2o", "tova")  # methods that hold their budget while decoding too
SCORE_ELEMENTS = 1 << 20  # the largest scoring buffer, in float32 values (4 MiB)


class CompressedLayer(DynamicLayer):
    """A layer's cache whose heads may keep different positions (as many per head)."""

    def __init__(self) -> None:
        super().__init__()
        self.positions = torch.zeros(0, 0, dtype=torch.long)  # (kv heads, kept): original positions
        self.seen = 0

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.positions = torch.zeros(key_states.shape[1], 0, dtype=torch.long)
        assert self.keys is not None and self.values is not None
        new = key_states.shape[-2]
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        fresh = torch.arange(self.seen, self.seen + new).expand(self.positions.shape[0], new)
        self.positions = torch.cat([self.positions, fresh], dim=-1)
        self.seen += new
        return self.keys, self.values

    def keep(self, index: Tensor) -> None:
        """Keep, per KV head, the cached entries at `index` (kv heads, k), in position order."""
        assert self.keys is not None and self.values is not None
        index = index.sort(dim=-1).values
        gather = index.to(self.keys.device)[None, :, :, None].expand(self.keys.shape[0], -1, -1, self.keys.shape[-1])
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
        self.positions, self.seen = torch.zeros(0, 0, dtype=torch.long), 0


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
    """One generation's compression: method, settings, the cache and each layer's scores."""

    method: str
    budgets: list[int]
    cache: CompressedCache
    window: int = 64
    kernel: int = 5
    sinks: int = 4
    scoring: bool = True  # the forward now running is the one compression scores (the prefill)
    scores: dict[int, Tensor] = field(default_factory=dict)  # layer -> (batch, kv heads, kept), aligned with the cache
    evicted: int = 0

    def compress(self) -> None:
        """Each layer keeps its budget of top-scoring positions per KV head; scoring stops here."""
        for index, budget in enumerate(self.budgets):
            layer = self.cache.layer(index)
            if layer.kept() > budget:
                scores = self.scores.get(index)
                if scores is None:
                    raise RuntimeError(f"layer {index} was not scored: {self.method} compresses after a prefill it saw")
                keep = guarded(self, scores)[0].topk(budget, dim=-1).indices  # batch of one
                layer.keep(keep)
                self.scores[index] = scores.gather(-1, keep.sort(dim=-1).values[None].to(scores.device))
        self.scoring = False


ACTIVE: contextvars.ContextVar[KvCall] = contextvars.ContextVar("lcbench_kv_call")


@dataclass(frozen=True)
class KvMask:
    q_length: int
    kv_length: int


def build_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, **kwargs: Any) -> KvMask:
    return KvMask(q_length, kv_length)


def by_kv_head(scores: Tensor, groups: int) -> Tensor:
    """(batch, heads, n) -> (batch, kv heads, n): the mean over each KV head's query heads."""
    b, h, n = scores.shape
    return scores.view(b, h // groups, groups, n).mean(dim=2)


def window_attention(query: Tensor, key: Tensor, scaling: float, first: int) -> Tensor:
    """Softmax attention of `query` (queries at positions first, first+1, ...) over `key`, causal:
    (batch, heads, n_q, n_kv), in float32. One buffer of that size and nothing else: each KV head's
    query heads are read against its keys as they are (no repeated keys), and the mask and softmax
    are applied in place."""
    b, heads, q, d = query.shape
    kv_heads, n = key.shape[1], key.shape[2]
    grouped = query.reshape(b, kv_heads, heads // kv_heads * q, d).float()
    logits = torch.matmul(grouped, key.float().transpose(-1, -2)).mul_(scaling).view(b, kv_heads, -1, q, n)
    rows = torch.arange(first, first + q, device=query.device)[:, None]
    logits.masked_fill_(torch.arange(n, device=query.device)[None, :] > rows, float("-inf"))
    logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    return logits.div_(logits.sum(dim=-1, keepdim=True)).view(b, heads, q, n)


def grouped_values(weights: Tensor, value: Tensor) -> Tensor:
    """`weights` (batch, heads, n_q, n_kv) applied to `value` (batch, kv heads, n_kv, d), each KV head
    serving its query heads without copies of the values: (batch, heads, n_q, d)."""
    b, heads, q, n = weights.shape
    kv_heads = value.shape[1]
    out = torch.matmul(weights.reshape(b, kv_heads, heads // kv_heads * q, n).to(value.dtype), value)
    return out.view(b, heads, q, value.shape[-1])


def h2o_rows(heads: int, n: int) -> int:
    """Query rows per step when H2O sums a prefill's attention: a float32 buffer of at most
    `SCORE_ELEMENTS`, whatever the context length."""
    return max(1, SCORE_ELEMENTS // max(1, heads * n))


def prefill_scores(call: KvCall, query: Tensor, key: Tensor, scaling: float) -> Tensor:
    """(batch, kv heads, n): how much each position is worth keeping, from a whole prefill."""
    n, groups = key.shape[2], query.shape[1] // key.shape[1]
    if call.method == "keynorm":
        return -key.float().norm(dim=-1)
    if call.method == "streaming":
        ranks = torch.arange(n, device=key.device, dtype=torch.float32)
        ranks = torch.where(ranks < call.sinks, float(n) + ranks, ranks)  # sinks first, then the most recent
        return ranks.expand(key.shape[0], key.shape[1], n)
    if call.method == "tova":  # one ranking per layer (all heads averaged); the latest position is kept
        last = window_attention(query[:, :, -1:], key, scaling, n - 1)[:, :, 0].mean(dim=1, keepdim=True)
        last[..., -1] = math.inf
        return last.expand(-1, key.shape[1], -1)
    if call.method == "snapkv":  # pooled over the positions before the window only; the window is kept
        w = min(call.window, n)
        attention = window_attention(query[:, :, -w:], key, scaling, n - w).mean(dim=2)[..., : n - w]
        pooled = F.avg_pool1d(attention, call.kernel, stride=1, padding=call.kernel // 2) if n > w else attention
        return F.pad(by_kv_head(pooled, groups), (0, w), value=math.inf)
    total = torch.zeros(query.shape[0], query.shape[1], n, device=query.device)  # h2o: accumulated attention
    step = h2o_rows(query.shape[1], n)
    for start in range(0, query.shape[2], step):
        total += window_attention(query[:, :, start : start + step], key, scaling, start).sum(dim=2)
    return by_kv_head(total, groups)


def guarded(call: KvCall, scores: Tensor) -> Tensor:
    """H2O's scores with its `window` most recent positions made unbeatable: they are always kept."""
    if call.method != "h2o":
        return scores
    scores = scores.clone()
    scores[..., -min(call.window, scores.shape[-1]) :] = math.inf
    return scores


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
            call.scores[layer_index] = prefill_scores(call, query, key, scale)
    else:  # after compression: every kept key, and causal among the new tokens
        kept = kv_length - q_length
        weights = window_attention(query, key, scale, kept)
        out = grouped_values(weights, value)
        if call.method in EVICTING:  # H2O sums every new query's attention; TOVA reads the latest one
            rows = weights.sum(dim=2) if call.method == "h2o" else weights[:, :, -1]
            follow(call, layer_index, by_kv_head(rows, query.shape[1] // key.shape[1]), q_length)
    return out.transpose(1, 2).contiguous(), None


def follow(call: KvCall, layer_index: int, attention: Tensor, new: int) -> None:
    """H2O and TOVA while decoding: update the scores with the latest attention, then evict down to
    the budget (H2O never the `window` most recent positions)."""
    layer, budget = call.cache.layer(layer_index), call.budgets[layer_index]
    old = call.scores.get(layer_index)
    if call.method == "h2o":
        grown = torch.cat([old, torch.zeros_like(attention[..., -new:])], dim=-1) if old is not None else attention
        scores = grown + attention
    else:
        scores = attention.mean(dim=1, keepdim=True).expand_as(attention)
    excess = layer.kept() - budget
    if excess > 0:
        keep = guarded(call, scores)[0].topk(budget, dim=-1).indices
        layer.keep(keep)
        scores = scores.gather(-1, keep.sort(dim=-1).values[None].to(scores.device))
        call.evicted += excess
    call.scores[layer_index] = scores


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
    call = KvCall(method, layer_budgets(max(1, int(n * (1 - compression_ratio))), layers, "uniform"), cache, **settings)
    previous = hf_model.config._attn_implementation
    hf_model.set_attn_implementation(register())
    try:
        with torch.inference_mode(), kv_call(call):
            keyword = "cache" if "cache" in inspect.signature(hf_model.forward).parameters else "past_key_values"
            hf_model(input_ids=torch.tensor([list(context_ids)]), use_cache=True, **{keyword: cache})
            call.compress()
    finally:
        hf_model.set_attn_implementation(previous)
    return [cache.layer(i).positions.sort(dim=-1).values for i in range(layers)]

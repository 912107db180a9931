"""The KV-compression methods, one class each, as kvpress's scorer presses: `score` ranks a prefill's
cached positions (higher kept), `recent` declares the latest positions always kept whatever their
scores, and `step` follows the decoding (only H2O and TOVA evict there; the others let the cache grow).

No N x N matrix: SnapKV scores window x N, H2O sums attention over query chunks sized so that one
float32 buffer of at most `SCORE_ELEMENTS` is live, TOVA and decode steps use one row, key-norm the
keys. `METHODS` maps each method's name to its class; `build_method` makes one from a strategy's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

SCORE_ELEMENTS = 1 << 20  # the largest scoring buffer, in float32 values (4 MiB)
SETTINGS = ("window", "kernel", "sinks")  # every method's settings, each taken by the methods that have it


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


GPU_SCORE_SHARE = 16  # on a GPU the scoring buffer may take this fraction of the free memory ...
GPU_SCORE_ELEMENTS = 1 << 28  # ... up to 1 GiB of float32


def score_elements(device: torch.device) -> int:
    """The scoring buffer's size in float32 values: `SCORE_ELEMENTS` on a CPU, where it bounds the
    peak; on a GPU a share of the free memory (bounded), because 4 MiB there would make H2O one
    query row per step at 32 heads x 32k: ~32k kernel launches per layer."""
    if device.type != "cuda":
        return SCORE_ELEMENTS
    free, _ = torch.cuda.mem_get_info(device)
    return max(SCORE_ELEMENTS, min(GPU_SCORE_ELEMENTS, free // GPU_SCORE_SHARE // 4))


def h2o_rows(heads: int, n: int, elements: int = SCORE_ELEMENTS) -> int:
    """Query rows per step when H2O sums a prefill's attention: a float32 buffer of at most
    `elements` values, whatever the context length."""
    return max(1, elements // max(1, heads * n))


@dataclass(frozen=True)
class KvMethod:
    """A compression method: how much each cached position is worth keeping, after the prefill and,
    for the methods that hold their budget while decoding, after every decode step."""

    name: ClassVar[str]
    evicts: ClassVar[bool] = False  # cuts the cache while decoding (`step`), moving the entries it keeps

    @property
    def recent(self) -> int:
        """How many of the latest positions are always kept, whatever their scores."""
        return 0

    def score(self, query: Tensor, key: Tensor, scaling: float) -> Tensor:
        """(batch, kv heads, n): each position's worth from a whole prefill, `query` (batch, heads, n, d)
        against `key` (batch, kv heads, n, d) with softmax scale `scaling`."""
        raise NotImplementedError

    def protect(self, scores: Tensor) -> Tensor:
        """`scores` (batch, kv heads, n) with the `recent` latest positions made unbeatable (infinite), to
        select from; `scores` itself is left as it is, to follow the decoding with."""
        if self.recent == 0:
            return scores
        scores = scores.clone()
        scores[..., -min(self.recent, scores.shape[-1]) :] = math.inf
        return scores

    def step(self, scores: Tensor | None, weights: Tensor, groups: int) -> Tensor | None:
        """After compression (the question where it was not scored, each decode step): the scores
        (batch, kv heads, kept + new) once the new queries' attention `weights`
        (batch, heads, new, kept + new) is read, from the layer's `scores` so far (batch, kv heads, kept),
        `groups` query heads per KV head. None: the method does not evict while decoding."""
        return None


@dataclass(frozen=True)
class Windowed(KvMethod):
    """A method that always keeps the `window` most recent positions."""

    window: int = 64

    @property
    def recent(self) -> int:
        return self.window


@dataclass(frozen=True)
class SnapKV(Windowed):
    """SnapKV (Li et al., 2024, "SnapKV: LLM Knows What You are Looking for Before Generation"): the
    attention of the last `window` queries, averaged over them and over the query heads of a KV head,
    pooled along positions (`kernel`); the window itself is kept."""

    name: ClassVar[str] = "snapkv"
    kernel: int = 5

    def score(self, query: Tensor, key: Tensor, scaling: float) -> Tensor:
        # Pooled over the positions before the window only; the window scores infinite, as `recent` keeps it.
        n, groups = key.shape[2], query.shape[1] // key.shape[1]
        w = min(self.window, n)
        attention = window_attention(query[:, :, -w:], key, scaling, n - w).mean(dim=2)[..., : n - w]
        pooled = F.avg_pool1d(attention, self.kernel, stride=1, padding=self.kernel // 2) if n > w else attention
        return F.pad(by_kv_head(pooled, groups), (0, w), value=math.inf)


@dataclass(frozen=True)
class H2O(Windowed):
    """H2O (Zhang et al., 2023, "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
    Language Models"): attention accumulated over every query so far (heavy hitters), the `window` most
    recent positions always kept; decode steps add to it and evict the lowest."""

    name: ClassVar[str] = "h2o"
    evicts: ClassVar[bool] = True

    def score(self, query: Tensor, key: Tensor, scaling: float) -> Tensor:
        n, groups = key.shape[2], query.shape[1] // key.shape[1]
        total = torch.zeros(query.shape[0], query.shape[1], n, device=query.device)
        step = h2o_rows(query.shape[1], n, score_elements(query.device))
        for start in range(0, query.shape[2], step):
            total += window_attention(query[:, :, start : start + step], key, scaling, start).sum(dim=2)
        return by_kv_head(total, groups)

    def step(self, scores: Tensor | None, weights: Tensor, groups: int) -> Tensor:
        # Every new query's attention is summed in; the new positions start from nothing.
        attention, new = by_kv_head(weights.sum(dim=2), groups), weights.shape[2]
        grown = torch.cat([scores, torch.zeros_like(attention[..., -new:])], dim=-1) if scores is not None else attention.clone()
        return grown.add_(attention)


@dataclass(frozen=True)
class TOVA(KvMethod):
    """TOVA (Oren et al., 2024, "Transformers are Multi-State RNNs"): the attention of the latest query,
    averaged over every head of the layer (one ranking for all KV heads); each decode step evicts the
    position it attends to least."""

    name: ClassVar[str] = "tova"
    evicts: ClassVar[bool] = True

    def score(self, query: Tensor, key: Tensor, scaling: float) -> Tensor:
        # The latest position is kept after the prefill (as kvpress does), not declared `recent`: decode steps may evict it.
        n = key.shape[2]
        last = window_attention(query[:, :, -1:], key, scaling, n - 1)[:, :, 0].mean(dim=1, keepdim=True)
        last[..., -1] = math.inf
        return last.expand(-1, key.shape[1], -1)

    def step(self, scores: Tensor | None, weights: Tensor, groups: int) -> Tensor:
        attention = by_kv_head(weights[:, :, -1], groups)  # the latest query only: what came before is forgotten
        return attention.mean(dim=1, keepdim=True).expand_as(attention)


@dataclass(frozen=True)
class KeyNorm(KvMethod):
    """Key-norm (Devoto et al., 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache
    Compression"): the keys of lowest L2 norm are kept."""

    name: ClassVar[str] = "keynorm"

    def score(self, query: Tensor, key: Tensor, scaling: float) -> Tensor:
        return -key.float().norm(dim=-1)


@dataclass(frozen=True)
class Streaming(KvMethod):
    """StreamingLLM (Xiao et al., 2023, "Efficient Streaming Language Models with Attention Sinks"):
    the first `sinks` positions (attention sinks) and the most recent ones."""

    name: ClassVar[str] = "streaming"
    sinks: int = 4

    def score(self, query: Tensor, key: Tensor, scaling: float) -> Tensor:
        # Sinks + recent is the ranking itself, not a guard: the sinks first, then by recency. Its recent part is
        # whatever the budget leaves, and a budget below the sinks keeps the last of them.
        n = key.shape[2]
        ranks = torch.arange(n, device=key.device, dtype=torch.float32)
        ranks = torch.where(ranks < self.sinks, float(n) + ranks, ranks)
        return ranks.expand(key.shape[0], key.shape[1], n)


METHODS: dict[str, type[KvMethod]] = {method.name: method for method in (SnapKV, H2O, TOVA, KeyNorm, Streaming)}


def build_method(name: str, **settings: int) -> KvMethod:
    """The method `name` with those of `settings` (window, kernel, sinks) it takes: a strategy passes
    them all, each method reads its own."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"unknown KV-compression settings {unknown}; known: {', '.join(SETTINGS)}")
    method = METHODS[name]
    own = {f.name for f in fields(method)}
    return method(**{key: value for key, value in settings.items() if key in own})

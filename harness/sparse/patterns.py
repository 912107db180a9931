"""Attention patterns as composable mask functions `(b, h, q_idx, kv_idx) -> bool`.

Each mask is a function of positions that broadcasts over tensors, so the same object serves
FlexAttention (which calls it under vmap), the torch block path (which calls it on a tile of
positions) and the dense reference in tests. Beside it each mask carries `spans`: for a range of
query positions, the key intervals it may allow. That bound is what lets a block list be built in
time and memory linear in N: only tiles inside the spans are ever looked at.

Patterns: causal; sliding window (Beltagy et al., Longformer, 2020); attention sinks (Xiao et
al., StreamingLLM, 2023); global tokens (Longformer); block-sparse local + random + global blocks
(Zaheer et al., BigBird, 2020); strided (Child et al., Sparse Transformers, 2019).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Spans = list[tuple[int, int]]  # half-open key-position intervals, sorted, disjoint
EVERYTHING = 1 << 62


Box = tuple[int, int, int, int]  # query positions [q_lo, q_hi) x key positions [kv_lo, kv_hi)
ALL, NONE = True, False  # what `settles` says of a box: every pair allowed, or none


def unsettled(box: Box) -> bool | None:
    return None


def distance_only(box: Box) -> bool:
    """`Mask.shift_free` of a mask of q - kv alone (causal, a window, a stride): true in any box."""
    return True


class Mask:
    """A mask function with a name, a bound on the keys it allows (`spans`), where it can tell
    without evaluating pairs, whether a whole box of positions is allowed (`settles`), and whether
    inside a box it depends on q - kv alone (`shift_free`)."""

    def __init__(
        self,
        name: str,
        allows: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor],
        spans: Callable[[int, int], Spans],
        settles: Callable[[Box], bool | None] = unsettled,
        shift_free: Callable[[Box], bool] | None = None,
    ):
        self.__name__ = name
        self.allows = allows
        self.spans = spans  # (q_lo, q_hi) -> keys possibly allowed for any query position in [q_lo, q_hi)
        self.settles = settles  # box -> ALL, NONE, or None where only evaluating the pairs can tell
        self._shift_free = shift_free

    def shift_free(self, box: Box) -> bool:
        """Whether, for pairs inside `box`, the mask is a function of q - kv alone: then rows of
        queries and keys shifted together inside it share one element mask (`block_runs`). A mask
        the box settles is constant there; otherwise only the mask's own rule can say."""
        return self.settles(box) is not None or (self._shift_free is not None and self._shift_free(box))

    def __repr__(self) -> str:
        return f"Mask({self.__name__})"

    def __call__(self, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return self.allows(b, h, q_idx, kv_idx)

    def __and__(self, other: Mask) -> Mask:
        return all_of(self, other)

    def __or__(self, other: Mask) -> Mask:
        return any_of(self, other)


def decide(all_allowed: bool, none_allowed: bool) -> bool | None:
    return ALL if all_allowed else NONE if none_allowed else None


def causal() -> Mask:
    def settles(box: Box) -> bool | None:
        q_lo, q_hi, kv_lo, kv_hi = box
        return decide(kv_hi - 1 <= q_lo, kv_lo > q_hi - 1)

    return Mask("causal", lambda b, h, q, kv: q >= kv, lambda lo, hi: [(0, hi)], settles, distance_only)


def sliding_window(window: int) -> Mask:
    """Keys less than `window` positions back (the query itself included); pair with `causal`."""

    def settles(box: Box) -> bool | None:
        q_lo, q_hi, kv_lo, kv_hi = box
        return decide(q_hi - 1 - kv_lo < window, q_lo - (kv_hi - 1) >= window)

    def spans(lo: int, hi: int) -> Spans:
        return [(lo - window + 1, EVERYTHING)]

    return Mask(f"window_{window}", lambda b, h, q, kv: q - kv < window, spans, settles, distance_only)


def sinks(count: int) -> Mask:
    """The first `count` positions, which soak up attention mass (StreamingLLM)."""

    def settles(box: Box) -> bool | None:
        return decide(box[3] <= count, box[2] >= count)

    return Mask(f"sinks_{count}", lambda b, h, q, kv: kv < count, lambda lo, hi: [(0, count)], settles)


def global_tokens(positions: Sequence[int], length: int) -> Mask:
    """Positions that attend everywhere and are attended from everywhere (Longformer).

    `length` sizes the lookup table (the prompt length); positions past it are not global."""
    table = torch.zeros(max(length, 1), dtype=torch.bool)
    chosen = sorted({p for p in positions if 0 <= p < length})
    table[chosen] = True

    def is_global(index: Tensor) -> Tensor:
        lookup = table if table.device == index.device else table.to(index.device)
        return lookup[index.clamp(0, len(table) - 1)] & (index < len(table))

    def spans(lo: int, hi: int) -> Spans:
        if any(lo <= p < hi for p in chosen):
            return [(0, EVERYTHING)]
        return [(p, p + 1) for p in chosen]

    return Mask(f"global_{len(chosen)}", lambda b, h, q, kv: is_global(q) | is_global(kv), spans)


def random_block(query_block: Tensor | int, draw: int, seed: int) -> Tensor | int:
    """The `draw`-th random key block of a query block, among blocks 0..query_block: a
    multiplicative hash, so that it is the same function of position everywhere (no table)."""
    mixed = (query_block * 1_000_003 + draw * 7_919 + seed * 104_729) % 2_147_483_647
    return (mixed * 48_271) % 2_147_483_647 % (query_block + 1)


def block_sparse(block: int, local_blocks: int, random_blocks: int, global_blocks: int, seed: int = 0) -> Mask:
    """BigBird on blocks of `block` positions: the `local_blocks` nearest blocks, `random_blocks`
    seeded random blocks per query block, and the first `global_blocks` blocks both ways."""

    def allows(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        qb, kb = q // block, kv // block
        allowed = ((qb - kb).abs() < local_blocks) | (kb < global_blocks) | (qb < global_blocks)
        for draw in range(random_blocks):
            allowed = allowed | (random_block(qb, draw, seed) == kb)
        return allowed

    def spans(lo: int, hi: int) -> Spans:
        first, last = lo // block, (hi - 1) // block
        if first < global_blocks:
            return [(0, EVERYTHING)]
        out = [(0, global_blocks * block), ((first - local_blocks + 1) * block, (last + local_blocks) * block)]
        for qb in range(first, last + 1):
            out += [(int(kb) * block, (int(kb) + 1) * block) for kb in (random_block(qb, d, seed) for d in range(random_blocks))]
        return out

    name = f"bigbird_{block}x{local_blocks}l{random_blocks}r{global_blocks}g"
    return Mask(name, allows, spans)


def strided(stride: int) -> Mask:
    """Every `stride`-th key counting back from the query (Sparse Transformers' strided head)."""

    def allows(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (q - kv) % stride == 0

    return Mask(f"strided_{stride}", allows, lambda lo, hi: [(0, EVERYTHING)], shift_free=distance_only)


def all_of(*masks: Mask) -> Mask:
    def allows(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = masks[0](b, h, q, kv)
        for mask in masks[1:]:
            out = out & mask(b, h, q, kv)
        return out

    def spans(lo: int, hi: int) -> Spans:
        out = normalise(masks[0].spans(lo, hi))
        for mask in masks[1:]:
            out = intersect(out, normalise(mask.spans(lo, hi)))
        return out

    def settles(box: Box) -> bool | None:
        answers = [m.settles(box) for m in masks]
        return decide(all(a is ALL for a in answers), any(a is NONE for a in answers))

    return Mask(
        "_and_".join(m.__name__ for m in masks), allows, spans, settles, lambda box: all(m.shift_free(box) for m in masks)
    )


def any_of(*masks: Mask) -> Mask:
    def allows(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = masks[0](b, h, q, kv)
        for mask in masks[1:]:
            out = out | mask(b, h, q, kv)
        return out

    def settles(box: Box) -> bool | None:
        answers = [m.settles(box) for m in masks]
        return decide(any(a is ALL for a in answers), all(a is NONE for a in answers))

    return Mask(
        "_or_".join(m.__name__ for m in masks),
        allows,
        lambda lo, hi: normalise([s for m in masks for s in m.spans(lo, hi)]),
        settles,
        lambda box: all(m.shift_free(box) for m in masks),
    )


def normalise(spans: Spans) -> Spans:
    """Sorted, merged, non-empty intervals."""
    merged: Spans = []
    for lo, hi in sorted((max(lo, 0), hi) for lo, hi in spans if hi > max(lo, 0)):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def intersect(a: Spans, b: Spans) -> Spans:
    out: Spans = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out

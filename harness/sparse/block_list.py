"""The block list a mask compiles to: for each query tile, which key tiles to visit and whether
each needs an element mask. Built once per forward call, shared by every layer.

Only tiles inside the mask's `spans` are examined, so building costs time and memory linear in
the number of allowed tiles, never N x N (unlike evaluating the mask on every pair). Query tiles
are batched by how many key tiles they visit: the many ordinary ones together, the few that see
far more (a global query row, a BigBird global block) apart, so that padding never turns the
work quadratic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from lcbench.sparse.patterns import ALL, NONE, Mask

EMPTY, PARTIAL, FULL = 0, 1, 2
EVALUATED_BYTES = 1 << 20  # tiles evaluated together while their positions' arithmetic fits in this


@dataclass(frozen=True)
class TileBatch:
    """Query tiles that share a padded list of key tiles.

    q_tiles: (nq,) query tile indices; kv_tiles: (nq, C) key tile indices, padding repeats tile 0;
    kinds: (nq, C) EMPTY (padding) / PARTIAL / FULL."""

    q_tiles: Tensor
    kv_tiles: Tensor
    kinds: Tensor

    @property
    def all_full(self) -> bool:
        return bool((self.kinds == FULL).all())


@dataclass(frozen=True)
class BlockList:
    mask: Mask
    tile: int
    q_positions: Tensor  # (n_q,) absolute positions of the queries
    kv_start: int  # keys are the contiguous positions kv_start .. kv_start + n_kv - 1
    n_kv: int
    batches: tuple[TileBatch, ...]

    @property
    def n_q(self) -> int:
        return len(self.q_positions)

    def tiles_visited(self) -> int:
        return sum(int((b.kinds != EMPTY).sum()) for b in self.batches)

    def evaluate(self, q_tiles: Tensor, kv_tiles: Tensor, kinds: Tensor | None = None) -> Tensor:
        """The mask on whole tiles: (nq, T, T) bool, False outside the sequence and on EMPTY slots."""
        t = self.tile
        q_index = q_tiles[:, None] * t + torch.arange(t)  # (nq, T)
        kv_index = kv_tiles[:, None] * t + torch.arange(t)
        q_pos = self.q_positions[q_index.clamp(max=self.n_q - 1)]
        kv_pos = kv_index + self.kv_start
        zero = torch.zeros((), dtype=torch.long)
        allowed = self.mask(zero, zero, q_pos[:, :, None], kv_pos[:, None, :])
        allowed = allowed & (q_index < self.n_q)[:, :, None] & (kv_index < self.n_kv)[:, None, :]
        if kinds is not None:
            allowed = allowed & (kinds != EMPTY)[:, None, None]
        return allowed


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run many small tensor ops on one thread: each would otherwise open a parallel region whose
    threads all must be scheduled, which on a busy machine costs up to 50x their work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build_block_list(mask: Mask, q_positions: Tensor, kv_start: int, n_kv: int, tile: int) -> BlockList:
    """Compile `mask` for queries at `q_positions` (ascending) over keys kv_start .. kv_start+n_kv-1."""
    with one_thread():
        return compile_tiles(mask, q_positions, kv_start, n_kv, tile)


def compile_tiles(mask: Mask, q_positions: Tensor, kv_start: int, n_kv: int, tile: int) -> BlockList:
    n_q = len(q_positions)
    n_q_tiles, n_kv_tiles = -(-n_q // tile), -(-n_kv // tile)
    candidates: list[list[int]] = []
    for qt in range(n_q_tiles):
        lo, hi = int(q_positions[qt * tile]), int(q_positions[min((qt + 1) * tile, n_q) - 1]) + 1
        tiles: set[int] = set()
        for start, end in mask.spans(lo, hi):
            first, end_index = max(start - kv_start, 0), min(end - kv_start, n_kv)
            if end_index > first:
                tiles.update(range(first // tile, (end_index - 1) // tile + 1))
        candidates.append(sorted(t for t in tiles if t < n_kv_tiles))
    probe = BlockList(mask, tile, q_positions, kv_start, n_kv, ())
    visited, partial = classify(probe, candidates)
    batches = tuple(pack(probe, rows, visited, partial) for rows in split_by_width(visited) if rows)
    return BlockList(mask, tile, q_positions, kv_start, n_kv, batches)


Tile = tuple[int, int]  # (query tile, key tile)


def classify(probe: BlockList, candidates: list[list[int]]) -> tuple[list[list[int]], set[Tile]]:
    """The key tiles each query tile must visit (candidates with anything allowed), and those
    only partly allowed; the others are FULL.

    Tiles the mask settles by itself (wholly inside or outside a window, say) cost nothing; the
    rest are evaluated once, a slot at a time (every query tile's `slot`-th candidate together),
    so a causal or window pattern evaluates only its diagonal and edges."""
    t = probe.tile
    visited: list[list[int]] = [[] for _ in candidates]
    partial: set[Tile] = set()
    q_pos = probe.q_positions.tolist()
    for slot in range(max((len(c) for c in candidates), default=0)):
        unknown: list[int] = []
        for i, tiles in enumerate(candidates):
            if slot >= len(tiles):
                continue
            kv = tiles[slot]
            q_lo, q_hi = q_pos[i * t], q_pos[min((i + 1) * t, probe.n_q) - 1] + 1
            whole = (i + 1) * t <= probe.n_q and (kv + 1) * t <= probe.n_kv
            box = (q_lo, q_hi, probe.kv_start + kv * t, probe.kv_start + min((kv + 1) * t, probe.n_kv))
            settled = probe.mask.settles(box)
            if settled is ALL and whole:
                visited[i].append(kv)
            elif settled is not NONE:
                unknown.append(i)
        if not unknown:
            continue
        q_tiles, kv_tiles = torch.tensor(unknown), torch.tensor([candidates[i][slot] for i in unknown])
        step = max(1, EVALUATED_BYTES // (8 * t * t))  # the mask's position arithmetic: 8 bytes a pair
        counts = [
            n
            for start in range(0, len(unknown), step)
            for n in probe.evaluate(q_tiles[start : start + step], kv_tiles[start : start + step]).sum((1, 2)).tolist()
        ]
        for r, i in enumerate(unknown):
            kv = candidates[i][slot]
            if counts[r]:
                visited[i].append(kv)
                whole = (i + 1) * t <= probe.n_q and (kv + 1) * t <= probe.n_kv
                if not (whole and counts[r] == t * t):
                    partial.add((i, kv))
    return visited, partial


def split_by_width(visited: list[list[int]]) -> list[list[int]]:
    """Query tiles in two groups: ordinary widths, and the few much wider ones."""
    widths = sorted(len(v) for v in visited)
    if not widths:
        return []
    limit = max(4, 2 * widths[len(widths) // 2])
    return [[i for i, v in enumerate(visited) if len(v) <= limit], [i for i, v in enumerate(visited) if len(v) > limit]]


def pack(probe: BlockList, rows: list[int], visited: list[list[int]], partial: set[Tile]) -> TileBatch:
    width = max(1, max(len(visited[i]) for i in rows))
    kv_tiles = torch.zeros((len(rows), width), dtype=torch.long)
    kinds = torch.full((len(rows), width), EMPTY, dtype=torch.int8)
    for r, i in enumerate(rows):
        kv_tiles[r, : len(visited[i])] = torch.tensor(visited[i], dtype=torch.long)
        kinds[r, : len(visited[i])] = torch.tensor(
            [PARTIAL if (i, kv) in partial else FULL for kv in visited[i]], dtype=torch.int8
        )
    return TileBatch(torch.tensor(rows, dtype=torch.long), kv_tiles, kinds)

"""The block list a mask compiles to: for each query tile, which key tiles to visit and whether
each needs an element mask. Built once per forward call, shared by every layer.

Keys are given by position, as runs of consecutive positions (`Runs`): one run for a whole
prefill, two for a chunk over a bounded cache (the sinks, then the window and the chunk itself).
Tiles are cut over the keys as they lie in K and V (indices 0 .. n_kv - 1, runs concatenated) and
masks are evaluated on the keys' true positions, so every prefill path runs a chunk over the
kept keys as it runs a whole prefill.

Only tiles inside the mask's `spans` are examined, so building costs time and memory linear in
the number of allowed tiles, never N x N (unlike evaluating the mask on every pair). Query tiles
are batched by how many key tiles they visit: the many ordinary ones together, the few that see
far more (a global query row, a BigBird global block) apart, so that padding never turns the
work quadratic.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lcbench.sparse.patterns import ALL, NONE, Mask, Spans, normalise

EMPTY, PARTIAL, FULL = 0, 1, 2
EVALUATED_BYTES = 1 << 20  # tiles evaluated together while their positions' arithmetic fits in this
Runs = tuple[tuple[int, int], ...]  # the keys: (first position, count) per run of consecutive positions, ascending


def key_runs(positions: Tensor) -> Runs:
    """Ascending key positions (n,) as runs of consecutive positions: [0..3, 900..1999] -> ((0, 4), (900, 1100))."""
    if not len(positions):
        return ()
    breaks = ((positions[1:] - positions[:-1]) != 1).nonzero().squeeze(-1).add(1).tolist()
    starts, ends = [0, *breaks], [*breaks, len(positions)]
    return tuple((int(positions[lo]), hi - lo) for lo, hi in zip(starts, ends))


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
    """Per query tile, the key tiles to visit. Queries are `q_positions` (n_q,), ascending; keys
    are `kv_runs`, index i of K and V holding the i-th position of the runs concatenated.
    `cached`: what the paths derive from it per device (compacted lists, flex's `BlockMask`),
    made once for every layer of the forward call."""

    mask: Mask
    tile: int
    q_positions: Tensor  # (n_q,) absolute positions of the queries
    kv_runs: Runs  # one run (kv_start, n_kv) where the keys are contiguous
    batches: tuple[TileBatch, ...]
    cached: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_q(self) -> int:
        return len(self.q_positions)

    @functools.cached_property
    def n_kv(self) -> int:
        return sum(count for _, count in self.kv_runs)

    @property
    def kv_start(self) -> int:
        """The first key's position."""
        return self.kv_runs[0][0] if self.kv_runs else 0

    @property
    def contiguous(self) -> bool:
        return len(self.kv_runs) <= 1

    @functools.cached_property
    def run_offsets(self) -> list[int]:
        """The key index each run starts at."""
        offsets = [0]
        for _, count in self.kv_runs[:-1]:
            offsets.append(offsets[-1] + count)
        return offsets

    @functools.cached_property
    def kv_positions(self) -> Tensor:
        """(n_kv,) every key's position."""
        if not self.kv_runs:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([torch.arange(start, start + count) for start, count in self.kv_runs])

    def key_positions(self, index: Tensor) -> Tensor:
        """Positions of key indices (any shape); indices outside 0 .. n_kv - 1 get some position (callers mask them)."""
        if self.contiguous:
            return index + self.kv_start
        return self.kv_positions[index.clamp(0, max(self.n_kv - 1, 0))]

    def position(self, index: int) -> int:
        """The position of key index `index` (0 <= index < n_kv)."""
        run = bisect.bisect_right(self.run_offsets, index) - 1
        return self.kv_runs[run][0] + index - self.run_offsets[run]

    def key_spans(self, spans: Spans) -> Spans:
        """Key position intervals -> the key index intervals holding those positions, within 0 .. n_kv."""
        out: Spans = []
        for (start, count), offset in zip(self.kv_runs, self.run_offsets):
            for lo, hi in spans:
                lo, hi = max(lo, start), min(hi, start + count)
                if hi > lo:
                    out.append((lo - start + offset, hi - start + offset))
        return normalise(out)

    def tiles_visited(self) -> int:
        return sum(int((b.kinds != EMPTY).sum()) for b in self.batches)

    def evaluate(self, q_tiles: Tensor, kv_tiles: Tensor, kinds: Tensor | None = None) -> Tensor:
        """The mask on whole tiles: (nq, T, T) bool, False outside the sequence and on EMPTY slots."""
        t = self.tile
        q_index = q_tiles[:, None] * t + torch.arange(t)  # (nq, T)
        kv_index = kv_tiles[:, None] * t + torch.arange(t)
        q_pos = self.q_positions[q_index.clamp(max=self.n_q - 1)]
        kv_pos = self.key_positions(kv_index)
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
    return build_block_list_over(mask, q_positions, ((kv_start, n_kv),), tile)


def build_block_list_over(mask: Mask, q_positions: Tensor, kv_runs: Runs, tile: int) -> BlockList:
    """Compile `mask` for queries at `q_positions` (ascending) over keys at the positions of `kv_runs`
    (a bounded cache's kept keys and a chunk: `key_runs(positions)`)."""
    with one_thread():
        return compile_tiles(mask, q_positions, tuple(run for run in kv_runs if run[1] > 0), tile)


def compile_tiles(mask: Mask, q_positions: Tensor, kv_runs: Runs, tile: int) -> BlockList:
    probe = BlockList(mask, tile, q_positions, kv_runs, ())
    n_q, n_kv = len(q_positions), probe.n_kv
    n_q_tiles, n_kv_tiles = -(-n_q // tile), -(-n_kv // tile)
    candidates: list[list[int]] = []
    for qt in range(n_q_tiles):
        lo, hi = int(q_positions[qt * tile]), int(q_positions[min((qt + 1) * tile, n_q) - 1]) + 1
        tiles: set[int] = set()
        for first, end_index in probe.key_spans(mask.spans(lo, hi)):
            tiles.update(range(first // tile, (end_index - 1) // tile + 1))
        candidates.append(sorted(t for t in tiles if t < n_kv_tiles))
    visited, partial = classify(probe, candidates)
    batches = tuple(pack(probe, rows, visited, partial) for rows in split_by_width(visited) if rows)
    return BlockList(mask, tile, q_positions, kv_runs, batches)


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
            # the positions from the tile's first key to its last: where the tile spans a gap between
            # runs, a box holding more than its keys, so what the mask settles for the box holds for them
            box = (q_lo, q_hi, probe.position(kv * t), probe.position(min((kv + 1) * t, probe.n_kv) - 1) + 1)
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

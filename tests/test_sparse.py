"""Sparse attention: every pattern against a dense masked reference and against FlexAttention,
the block list's linear size, the bounded cache through long greedy decodes, whole models."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from lcbench.model import Model
from lcbench.sparse.block_attention import block_sparse_attention
from lcbench.sparse.block_list import build_block_list, build_block_list_over, key_runs
from lcbench.sparse.block_runs import bands_shift_alike, element_mask, schedule
from lcbench.sparse.bounded_cache import BoundedCache
from lcbench.sparse.reference import masked_attention
from lcbench.strategies.full import Full
from lcbench.strategies.sparse import PATTERNS, WINDOWED, Sparse
from lcbench.tasks.base import Example

SMALL = {
    "window": 40,
    "sinks": 3,
    "block": 16,
    "local_blocks": 2,
    "random_blocks": 2,
    "global_blocks": 1,
    "stride": 24,
    "seed": 5,
}


def qkv(n: int, heads: int, kv_heads: int, dim: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, heads, n, dim, generator=g),
        torch.randn(2, kv_heads, n, dim, generator=g),
        torch.randn(2, kv_heads, n, dim, generator=g),
    )


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n", [1, 17, 129, 257, 600])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (8, 2)])
def test_block_path_matches_dense_reference(pattern, n, heads, kv_heads):
    strategy = Sparse(pattern=pattern, tile=32, **SMALL)
    mask = strategy.mask(n, min(3, n))
    q, k, v = qkv(n, heads, kv_heads)
    blocks = build_block_list(mask, torch.arange(n), 0, n, strategy.tile)
    out = block_sparse_attention(q, k, v, blocks)
    assert (out - masked_attention(q, k, v, mask)).abs().max() <= 1e-5


@pytest.mark.parametrize("pattern", PATTERNS)
def test_block_path_matches_flex_attention_oracle(pattern):
    n = 300  # not a multiple of the tile
    strategy = Sparse(pattern=pattern, tile=128, **SMALL)
    mask = strategy.mask(n, 3)
    q, k, v = qkv(n, 8, 2, dim=64, seed=1)
    oracle = flex_attention(q, k, v, block_mask=create_block_mask(mask, None, None, n, n, device="cpu"), enable_gqa=True)
    out = block_sparse_attention(q, k, v, build_block_list(mask, torch.arange(n), 0, n, 128))
    assert (out - oracle).abs().max() <= 1e-5


@pytest.mark.parametrize("pattern", ["sink_window", "bigbird"])
def test_compiled_flex_path_padded_to_its_bucket_matches_block_path(pattern):
    from lcbench.sparse.flex import bucket, flex_block_attention

    n = 300
    assert bucket(n, 128) == 384  # 300 keys and queries padded to 3 tiles
    mask = Sparse(pattern=pattern, **SMALL).mask(n, 3)
    q, k, v = qkv(n, 8, 2, dim=64, seed=2)
    blocks = build_block_list(mask, torch.arange(n), 0, n, 128)
    out = flex_block_attention(q, k, v, blocks)
    assert out.shape == q.shape
    assert (out - block_sparse_attention(q, k, v, blocks)).abs().max() <= 1e-5


def test_flex_compiles_once_per_bucket():
    from torch._dynamo.utils import counters

    from lcbench.sparse.flex import bucket, flex_block_attention

    assert [bucket(n, 16) // 16 for n in (1, 17, 33, 49, 65, 97, 129, 200)] == [1, 2, 3, 4, 6, 8, 12, 16]
    compiles: list[float] = []
    graphs = []
    for n in (330, 290, 270):  # one bucket: 384
        mask = Sparse(pattern="sink_window", **SMALL).mask(n, 3)
        q, k, v = qkv(n, 4, 1, dim=16, seed=n)  # a shape no other test compiles
        blocks = build_block_list(mask, torch.arange(n), 0, n, 128)
        out = flex_block_attention(q, k, v, blocks, compiled=compiles.append)
        assert (out - masked_attention(q, k, v, mask)).abs().max() <= 1e-5
        graphs.append(counters["stats"]["unique_graphs"])
    assert len(compiles) == 1 and compiles[0] > 0
    assert graphs[2] == graphs[1] == graphs[0]  # the later lengths ran the first one's kernel


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n", [65, 300, 700])
def test_block_path_rows_of_64_match_dense_reference(pattern, n):
    strategy = Sparse(pattern=pattern, tile=128, **{**SMALL, "window": 150, "block": 32})
    mask = strategy.mask(n, 3)
    q, k, v = qkv(n, 8, 2, dim=16, seed=3)
    out = block_sparse_attention(q, k, v, build_block_list(mask, torch.arange(n), 0, n, 128))
    assert (out - masked_attention(q, k, v, mask)).abs().max() <= 1e-5


def test_block_path_on_non_contiguous_inputs_with_an_offset():
    n, offset = 300, 200  # queries 200..499 over keys 0..499, given as transposed views as a model does
    mask = Sparse(pattern="sink_window", window=90, sinks=3).mask(500, 0)
    g = torch.Generator().manual_seed(4)
    q = torch.randn(1, n, 4, 16, generator=g).transpose(1, 2)
    k, v = (torch.randn(1, 500, 2, 16, generator=g).transpose(1, 2) for _ in range(2))
    blocks = build_block_list(mask, torch.arange(offset, offset + n), 0, 500, 128)
    expected = masked_attention(q, k, v, mask, torch.arange(offset, offset + n))
    assert (block_sparse_attention(q, k, v, blocks) - expected).abs().max() <= 1e-5


def test_block_path_visits_the_window_and_sinks_not_whole_edge_tiles():
    n = 4096
    blocks = build_block_list(Sparse(pattern="sink_window", window=512, sinks=4).mask(n, 0), torch.arange(n), 0, n, 128)
    interior = max(schedule(blocks), key=lambda run: run.count)
    assert interior.count >= n // 64 - 12  # one strided run covers every row past the first window
    assert interior.width == 512 + 63 and interior.scattered is not None and interior.scattered.tolist() == [[0, 1, 2, 3]]
    assert interior.band_mask is not None  # one mask for every row, made once


def test_block_list_grows_linearly_for_window_patterns():
    mask = Sparse(pattern="sink_window", window=512, sinks=4).mask(1 << 15, 4)
    visited = [build_block_list(mask, torch.arange(n), 0, n, 128).tiles_visited() for n in (1 << 13, 1 << 14, 1 << 15)]
    assert visited[2] / visited[1] <= 2.05 and visited[1] / visited[0] <= 2.1
    assert visited[2] <= (1 << 15) // 128 * (512 // 128 + 3)  # window tiles + diagonal + sink per query tile


def test_block_list_skips_the_middle_of_a_long_window_pattern():
    n = 4096
    blocks = build_block_list(Sparse(pattern="longformer", window=256).mask(n, 4), torch.arange(n), 0, n, 128)
    widths = sorted(batch.kv_tiles.shape[1] for batch in blocks.batches)
    assert widths[0] <= 5 and widths[-1] == n // 128  # ordinary rows stay narrow; only the global query row sees all


def test_bounded_cache_keeps_sinks_window_and_globals():
    cache = BoundedCache(layers=2, sinks=2, window=4, global_positions=[5])
    keys = torch.randn(1, 1, 10, 8)
    for layer in range(2):
        seen, _ = cache.update(keys, keys, layer)
        assert seen.shape[-2] == 10  # this call attends over everything
    assert cache.key_positions().tolist() == [0, 1, 5, 7, 8, 9]
    cache.update(keys[:, :, :1], keys[:, :, :1], 0)
    assert cache.key_positions().tolist() == [0, 1, 5, 8, 9, 10] and cache.get_seq_length(0) == 11


def long_example(model: Model, prompt_tokens: int, new_tokens: int) -> Example:
    from lcbench.tasks.words import pool

    words = pool("name")[:50]
    context = " ".join(words[i % len(words)] for i in range(prompt_tokens))
    assert len(model.encode(context)) == prompt_tokens
    return Example(
        id="long",
        context=context,
        query="",
        references=("",),
        requested_length=prompt_tokens,
        actual_length=prompt_tokens,
        answer_tokens=new_tokens,
    )


def generate(model: Model, strategy, prompt: list[int], new_tokens: int) -> str:
    from lcbench.sparse.interface import register, sparse_call

    cache = strategy.cache_for(model, len(prompt), 0)
    call = strategy.call(len(prompt), 0, cache)
    with sparse_call(call), model.attention(register()):
        return model.generate(prompt, new_tokens, cache=cache).text


def test_bounded_cache_decode_equals_full_when_the_window_covers_everything(llama):
    prompt = llama.encode(long_example(llama, 200, 0).context)
    full = llama.generate(prompt, 2000).text
    assert len(full.split()) > 1500  # a long decode really happened (the tiny model rarely stops)
    assert generate(llama, Sparse(pattern="sink_window", window=4096, sinks=4), prompt, 2000) == full


def test_bounded_cache_decode_equals_the_same_pattern_over_the_whole_cache(llama):
    prompt = llama.encode(long_example(llama, 300, 0).context)
    bounded = Sparse(pattern="sink_window", window=64, sinks=4, tile=32)
    unbounded = Sparse(pattern="sink_window", window=64, sinks=4, tile=32, bounded_cache=False)
    assert generate(llama, bounded, prompt, 300) == generate(llama, unbounded, prompt, 300)


@pytest.mark.parametrize("pattern,chunk", [(p, 0) for p in PATTERNS] + [(p, 200) for p in WINDOWED])
def test_a_runs_shared_band_mask_is_every_rows(pattern, chunk):
    """A band mask one row's evaluation stands for (`bands_shift_alike`) is each row's own, in a
    whole prefill and in a chunk over a bounded cache's kept keys."""
    strategy = Sparse(pattern=pattern, tile=16, **SMALL)
    mask = strategy.mask(600, 60)
    if chunk:  # a bounded cache: a window pattern's
        queries, keys = kept_keys(strategy, 600, 60, begin=400, chunk=chunk)
        blocks = build_block_list_over(mask, queries, key_runs(keys), 16)
    else:
        blocks = build_block_list(mask, torch.arange(600), 0, 600, 16)
    shared = [run for run in schedule(blocks) if run.band_mask is not None]
    for run in shared:
        rows = element_mask(blocks, run.q_index(0, run.count), run.band_index(0, run.count))
        assert torch.equal(rows, run.band_mask.expand_as(rows)), (pattern, run.q_start)
    shifted = [run for run in schedule(blocks) if run.count > 1 and bands_shift_alike(blocks, run)]
    assert bool(shifted) == (pattern in ("sink_window", "window"))  # what the shortcut covers: a window's band


@pytest.mark.parametrize("pattern", ["sink_window", "longformer"])
def test_wide_window_gives_full_attention_tokens_on_every_architecture(tiny_model, pattern):
    example = long_example(tiny_model, 150, 20)
    expected = Full().run(tiny_model, example)
    prediction = Sparse(pattern=pattern, window=1024, tile=32).run(tiny_model, example)
    assert prediction.text == expected.text
    assert "attends like full" in prediction.note


def test_narrow_window_changes_what_the_model_sees(llama):
    example = long_example(llama, 300, 20)
    prediction = Sparse(pattern="sink_window", window=16, sinks=2, tile=16).run(llama, example)
    assert prediction.extra["kv_cache_tokens"] == 2 + 16 - 1
    assert prediction.extra["tile_density"] < 0.3 and "blocks x1" in prediction.note


@pytest.mark.parametrize(
    "params,message",
    [
        ({"pattern": "sink_windw"}, "did you mean `sink_window`"),
        ({"window": 0}, "window must be a positive number, got 0"),
        ({"sinks": -1}, "sinks must be 0 or more, got -1"),
        ({"tile": 100}, "tile must be a power of two"),
        ({"pattern": "bigbird", "block": 48, "tile": 32}, "one must divide the other"),
        ({"path": "triton"}, "path must be blocks or flex"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(params, message):
    with pytest.raises(ValueError, match=message):
        Sparse(**params)


def test_a_model_without_the_attention_interface_is_unavailable(llama):
    class Opaque:
        _supports_attention_backend = False

    model = Model(llama.hf_model, llama.tokenizer, "cpu", "opaque")
    model.hf_model = Opaque()
    reason = Sparse().unavailable_reason(model)
    assert reason is not None and "Opaque" in reason and "AttentionInterface" in reason


def test_chunked_prefill_gives_the_tokens_of_one_pass(llama):
    example = long_example(llama, 300, 30)
    one_pass = Sparse(pattern="sink_window", window=64, sinks=4, tile=32, prefill_chunk=0).run(llama, example)
    chunked = Sparse(pattern="sink_window", window=64, sinks=4, tile=32, prefill_chunk=50).run(llama, example)
    assert chunked.text == one_pass.text and "rows" in chunked.note
    # every chunk ran the block path over the kept keys (decode steps run rows)
    assert chunked.extra["path_calls.blocks"] == 6 and chunked.extra["prefill_calls"] == 6
    assert chunked.extra["named_path_share"] == 1.0 and chunked.extra["path_calls.rows"] >= 1


def test_chunked_prefill_memory_is_flat_in_the_prompt_length(reference):
    from lcbench.run.measure import MeasureMemory
    from lcbench.sparse.interface import register, sparse_call

    strategy = Sparse(pattern="sink_window", window=256, prefill_chunk=512)
    peaks = {}
    for n in (2048, 8192):
        prompt = torch.randint(10, 1000, (n,), generator=torch.Generator().manual_seed(n)).tolist()
        cache = strategy.cache_for(reference, n, 0)
        with MeasureMemory("cpu") as meter, sparse_call(strategy.call(n, 0, cache)), reference.attention(register()):
            reference.generate(prompt, 1, cache=cache, prefill_chunk=strategy.chunk_for(cache))
        peaks[n] = meter.result.peak_bytes  # the counted live tensor bytes: RSS would count the counter's own buffers
    assert peaks[8192] < 1.5 * peaks[2048] + (4 << 20)  # 4x the prompt, about the same memory


def test_longformer_prefills_in_one_pass_so_its_global_query_sees_everything(llama):
    example = long_example(llama, 300, 10)
    strategy = Sparse(pattern="longformer", window=32, tile=32, prefill_chunk=50)
    assert strategy.chunk_for(strategy.cache_for(llama, 300, 3)) == 0
    one_pass = Sparse(pattern="longformer", window=32, tile=32, prefill_chunk=0).run(llama, example)
    assert strategy.run(llama, example).text == one_pass.text


def test_key_runs_and_key_spans_map_positions_to_indices():
    keys = torch.cat([torch.arange(3), torch.arange(111, 150), torch.arange(150, 187)])
    assert key_runs(keys) == ((0, 3), (111, 76)) and key_runs(torch.arange(5, 9)) == ((5, 4),)
    blocks = build_block_list_over(Sparse(pattern="window", window=40).mask(200, 0), torch.arange(150, 187), key_runs(keys), 32)
    assert blocks.n_kv == 79 and blocks.key_spans([(1, 2), (140, 160)]) == [(1, 2), (32, 52)]
    assert [blocks.position(i) for i in (0, 2, 3, 78)] == [0, 2, 111, 186]
    assert blocks.key_positions(torch.tensor([0, 3, 78])).tolist() == [0, 111, 186]


def kept_keys(strategy: Sparse, prompt: int, query: int, begin: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(query positions, key positions) of the prefill chunk at `begin` over the strategy's bounded cache."""
    sinks = 0 if strategy.pattern == "window" else strategy.sinks
    cache = BoundedCache(1, sinks, strategy.window, strategy.global_positions(prompt, query))
    queries = torch.arange(begin, begin + chunk)
    return queries, torch.cat([cache.kept_after(begin), queries])


def chunk_qkv(n_q: int, n_kv: int, heads: int, kv_heads: int, dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, heads, n_q, dim, generator=g)
    return q, torch.randn(1, kv_heads, n_kv, dim, generator=g), torch.randn(1, kv_heads, n_kv, dim, generator=g)


@pytest.mark.parametrize("pattern", ["sink_window", "window", "longformer"])
@pytest.mark.parametrize("tile", [16, 32])
def test_block_path_over_a_bounded_caches_kept_keys_by_position(pattern, tile):
    """A chunk of 37 at position 150 over sinks 0..2 and the window 111..149 (longformer: and its
    globals from 140): the torch block path equals dense attention at the keys' true positions."""
    strategy = Sparse(pattern=pattern, tile=tile, **SMALL)
    mask = strategy.mask(200, 60)
    queries, keys = kept_keys(strategy, 200, 60, begin=150, chunk=37)
    q, k, v = chunk_qkv(37, len(keys), 8, 2, 32, seed=6)
    blocks = build_block_list_over(mask, queries, key_runs(keys), tile)
    expected = masked_attention(q, k, v, mask, queries, keys)
    assert (block_sparse_attention(q, k, v, blocks) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("pattern", ["sink_window", "longformer"])
def test_compiled_flex_path_over_a_bounded_caches_kept_keys_by_position(pattern):
    from lcbench.sparse.flex import flex_block_attention

    strategy = Sparse(pattern=pattern, tile=16, **SMALL)
    mask = strategy.mask(200, 60)
    queries, keys = kept_keys(strategy, 200, 60, begin=150, chunk=37)
    q, k, v = chunk_qkv(37, len(keys), 4, 2, 16, seed=7)
    blocks = build_block_list_over(mask, queries, key_runs(keys), 16)
    out = flex_block_attention(q, k, v, blocks)
    assert (out - masked_attention(q, k, v, mask, queries, keys)).abs().max() <= 1e-5


def test_flex_runs_every_prefill_chunk_compiled_before_the_generation(llama, monkeypatch):
    """80 tokens in chunks of 40 over sinks 4 + window 24: both chunks run flex (the second over
    two runs of positions), its buckets compiled before the generation (`precompile_s`), none
    inside it; the tokens are the torch block path's."""
    from torch._dynamo.utils import counters

    from lcbench.strategies import sparse

    graphs: list[int] = []
    original = sparse.warm

    def warm(*args):
        seconds = original(*args)
        graphs.append(counters["stats"]["unique_graphs"])  # the graphs compiled once warmed
        return seconds

    monkeypatch.setattr(sparse, "warm", warm)
    example = long_example(llama, 80, 8)
    settings = {"pattern": "sink_window", "window": 24, "sinks": 4, "tile": 16, "prefill_chunk": 40}
    flex = Sparse(**settings, path="flex").run(llama, example)
    assert graphs == [counters["stats"]["unique_graphs"]]  # the generation compiled no graph of its own
    blocks = Sparse(**settings).run(llama, example)
    assert flex.text == blocks.text
    assert flex.extra["path_calls.flex"] == 2 and flex.extra["prefill_calls"] == 2 and flex.extra["named_path_share"] == 1.0
    assert flex.extra["compile_s"] == 0.0 and flex.extra["flex_compiles"] == 0 and flex.extra["precompile_s"] >= 0


def test_expected_calls_are_the_calls_a_generation_makes(llama, monkeypatch):
    """What `warm` prepares for: every prefill call's query and key positions, and the decode steps' key counts."""
    from lcbench.sparse.interface import SparseCall, expected_calls

    seen: list[tuple[list[int], list[int]]] = []
    decode: list[int] = []
    plan = SparseCall.plan

    def spy(call, q_length, kv_length, q_offset):
        made = plan(call, q_length, kv_length, q_offset)
        if made.blocks is not None:
            seen.append((made.blocks.q_positions.tolist(), made.blocks.kv_positions.tolist()))
        else:
            decode.append(len(made.kv_positions))
        return made

    monkeypatch.setattr(SparseCall, "plan", spy)
    strategy = Sparse(pattern="sink_window", window=24, sinks=4, tile=16, prefill_chunk=30)
    prompt = llama.encode(long_example(llama, 100, 0).context)
    cache = strategy.cache_for(llama, 100, 0)
    call = strategy.call(100, 0, cache)
    from lcbench.sparse.interface import register, sparse_call

    with sparse_call(call), llama.attention(register()):
        generation = llama.generate(prompt, 40, cache=cache, prefill_chunk=strategy.chunk_for(cache))
    expected = expected_calls(strategy.cache_for(llama, 100, 0), 100, 30, 40)
    assert [(q.tolist(), k.tolist()) for q, k in expected.prefill] == seen
    assert expected.decode is not None and len(seen) == 4 and generation.new_tokens == len(decode) + 1
    assert decode[0] == expected.decode[0] and decode[-1] <= expected.decode[1]

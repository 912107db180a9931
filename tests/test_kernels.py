"""The Triton kernels against their fp32 torch references, at odd sizes, on CUDA when there is
one and otherwise through Triton's interpreter; the `triton_fused` strategy end to end.

Tolerance as FlashAttention's tests: the kernel's error against the fp32 reference may be at most
twice that of plain torch in the same precision, plus a small atol."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed: the kernels cannot run here")

from lcbench.kernels.block_sparse_attention import block_sparse_attention, reference_attention  # noqa: E402
from lcbench.kernels.decode_attention import decode_attention, reference_decode  # noqa: E402
from lcbench.prompt import Prompter  # noqa: E402
from lcbench.sparse.block_list import build_block_list, build_block_list_over, key_runs  # noqa: E402
from lcbench.sparse.bounded_cache import BoundedCache  # noqa: E402
from lcbench.sparse.reference import masked_attention  # noqa: E402
from lcbench.strategies.sparse import PATTERNS, Sparse  # noqa: E402
from lcbench.strategies.triton_fused import TritonFused  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = {
    "window": 40,
    "sinks": 3,
    "block": 32,
    "local_blocks": 2,
    "random_blocks": 1,
    "global_blocks": 1,
    "stride": 24,
    "seed": 5,
}
ATOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def tensors(shape_q, shape_kv, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(shape_q, generator=g), torch.randn(shape_kv, generator=g), torch.randn(shape_kv, generator=g)
    return q.to(DEVICE, dtype), k.to(DEVICE, dtype), v.to(DEVICE, dtype)


def within_tolerance(out, reference_fp32, torch_same_dtype, dtype) -> bool:
    kernel_error = (out.float() - reference_fp32).abs().max()
    torch_error = (torch_same_dtype.float() - reference_fp32).abs().max()
    return bool(kernel_error <= 2 * torch_error + ATOL[dtype])


def prefill_case(pattern: str, n: int, dim: int, groups: int, dtype: torch.dtype) -> None:
    strategy = TritonFused(pattern=pattern, tile=32, **SMALL)
    call = strategy.call(n, min(2, n), None)
    kv_heads = 2 if groups > 1 else 3
    q, k, v = tensors((1, kv_heads * groups, n, dim), (1, kv_heads, n, dim), dtype, seed=n + dim)
    blocks = build_block_list(call.mask, torch.arange(n), 0, n, strategy.tile)
    out, config = block_sparse_attention(q, k, v, blocks, call.element_mask)
    reference = reference_attention(q.cpu(), k.cpu(), v.cpu(), call.mask)
    same_dtype = reference if dtype == torch.float32 else masked_attention(q.cpu(), k.cpu(), v.cpu(), call.mask)
    assert out.shape == q.shape and out.dtype == dtype and config
    assert within_tolerance(out.cpu(), reference, same_dtype, dtype), float((out.cpu().float() - reference).abs().max())


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n", [1, 17, 128, 257])
def test_prefill_kernel_every_pattern_fp32_gqa(pattern, n):
    prefill_case(pattern, n, dim=32, groups=4, dtype=torch.float32)


@pytest.mark.parametrize("pattern", ["sink_window", "bigbird", "longformer"])
@pytest.mark.parametrize("dim,groups", [(64, 1), (64, 4), (32, 1)])
def test_prefill_kernel_head_dims_and_groups(pattern, dim, groups):
    prefill_case(pattern, 129, dim=dim, groups=groups, dtype=torch.float32)


@pytest.mark.parametrize("pattern", ["causal", "sink_window", "strided"])
@pytest.mark.parametrize("n", [17, 257])
def test_prefill_kernel_fp16(pattern, n):
    prefill_case(pattern, n, dim=32, groups=4, dtype=torch.float16)


@pytest.mark.parametrize("n", [1, 17, 300])
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_decode_kernel_against_reference(n, groups, masked, dtype):
    q, k, v = tensors((1, 2 * groups, 1, 32), (1, 2, n, 32), dtype, seed=n * groups)
    allowed = None
    if masked:
        allowed = torch.arange(n) % 3 != 1
        allowed[-1] = True
        allowed = allowed.to(DEVICE)
    out, _ = decode_attention(q, k, v, allowed, block_n=16)
    reference = reference_decode(q.cpu(), k.cpu(), v.cpu(), None if allowed is None else allowed.cpu())
    same_dtype = reference
    if dtype != torch.float32:
        groups_ = q.shape[1] // k.shape[1]
        scores = (q.cpu() @ k.cpu().repeat_interleave(groups_, 1).transpose(-1, -2)) * 32**-0.5
        if allowed is not None:
            scores = scores.masked_fill(~allowed.cpu(), float("-inf"))
        same_dtype = torch.softmax(scores.float(), -1).to(dtype) @ v.cpu().repeat_interleave(groups_, 1)
    assert out.shape == q.shape
    assert within_tolerance(out.cpu(), reference, same_dtype, dtype)


@pytest.mark.parametrize(
    "shape_q,shape_kv,dtype,message",
    [
        ((1, 2, 1, 48), (1, 2, 5, 48), torch.float32, "head dim 48 is not supported"),
        ((1, 3, 1, 32), (1, 2, 5, 32), torch.float32, "multiple of key/value heads"),
        ((2, 2, 1, 32), (1, 2, 5, 32), torch.float32, "must agree on batch and head dim"),
        ((1, 2, 1, 32), (1, 2, 5, 32), torch.float64, "share one dtype of float16, bfloat16, float32"),
    ],
)
def test_inputs_the_kernels_do_not_cover_are_refused_before_launch(shape_q, shape_kv, dtype, message):
    q, k, v = tensors(shape_q, shape_kv, dtype, seed=0)
    with pytest.raises(ValueError, match=message):
        decode_attention(q, k, v)


def test_a_block_list_of_another_size_is_refused():
    q, k, v = tensors((1, 2, 40, 32), (1, 2, 40, 32), torch.float32, seed=0)
    call = TritonFused(pattern="causal", tile=32).call(50, 1, None)
    blocks = build_block_list(call.mask, torch.arange(50), 0, 50, 32)
    with pytest.raises(ValueError, match="covers 50 queries x 50 keys; got 40 x 40"):
        block_sparse_attention(q, k, v, blocks, call.element_mask)


def on_kernel_device(model):
    """The model where the kernels run: itself on a CPU (the interpreter), a copy on the GPU where
    there is one (the session's CPU models stay as they are for the other tests)."""
    import copy

    from lcbench.model import Model

    if DEVICE == "cpu":
        return model
    return Model(copy.deepcopy(model.hf_model).to(DEVICE), model.tokenizer, DEVICE, model.name)


@pytest.mark.parametrize("pattern", ["sink_window", "longformer"])
def test_triton_fused_gives_full_attention_tokens_when_the_window_covers_everything(tiny_model, pattern):
    from lcbench.strategies.full import Full
    from lcbench.tasks.needle import Needle

    tiny_model = on_kernel_device(tiny_model)
    example = Needle().examples(Prompter(tiny_model.tokenizer), 80, 1, seed=2)[0]
    fused = TritonFused(pattern=pattern, window=512, tile=32).run(tiny_model, example)
    assert fused.text == Full().run(tiny_model, example).text and "attends like full" in fused.note


def test_triton_fused_gives_the_tokens_of_sparse(reference):
    from lcbench.tasks.mt import Mt

    reference = on_kernel_device(reference)
    example = Mt().examples(Prompter(reference.tokenizer), 96, 1, seed=4)[0]
    fused = TritonFused(pattern="sink_window", window=40, sinks=4, tile=32).run(reference, example)
    expected = Sparse(pattern="sink_window", window=40, sinks=4, tile=32).run(reference, example)
    assert fused.text == expected.text and fused.text
    assert "triton x1" in fused.note and "triton-decode" in fused.note and "triton configs" in fused.note


def test_without_cuda_or_interpreter_the_cell_is_unavailable(monkeypatch, llama):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = TritonFused().unavailable_reason(llama)
    if DEVICE == "cuda":
        assert reason is None or "head dims" in reason
    else:
        assert reason is not None and "CUDA" in reason and "TRITON_INTERPRET=1" in reason


def test_bigbird_blocks_must_hold_whole_tiles():
    with pytest.raises(ValueError, match="divide the bigbird block"):
        TritonFused(pattern="bigbird", block=32, tile=64)


def test_gpu_benchmark_script_dry_run_builds_its_inputs():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "triton_kernels.py"
    done = subprocess.run(
        [sys.executable, str(script), "--dry-run", "--lengths", "1k,2k"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "N 2048: q (1, 8, 256, 128)" in done.stdout and "dry run: arguments, inputs and block lists are ready" in done.stdout


def test_prefill_kernel_with_keys_that_start_past_position_zero():
    """A bounded cache hands the kernel keys at positions kv_start.. : distances use positions."""
    strategy = TritonFused(pattern="window", window=40, tile=32)
    call = strategy.call(160, 0, None)
    kv_start, n_kv, q_positions = 90, 70, torch.arange(120, 160)
    q, k, v = tensors((1, 4, 40, 32), (1, 2, n_kv, 32), torch.float32, seed=9)
    blocks = build_block_list(call.mask, q_positions, kv_start, n_kv, 32)
    out, _ = block_sparse_attention(q, k, v, blocks, call.element_mask)
    reference = masked_attention(q.cpu(), k.cpu(), v.cpu(), call.mask, q_positions, torch.arange(kv_start, kv_start + n_kv))
    assert (out.cpu() - reference).abs().max() <= 1e-5


def bounded_chunk(strategy: Sparse, prompt: int, query: int, begin: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(query positions, key positions) of the prefill chunk at `begin` over the strategy's bounded
    cache: the kept sinks (and globals), the last window - 1 positions, then the chunk itself."""
    sinks = 0 if strategy.pattern == "window" else strategy.sinks
    cache = BoundedCache(1, sinks, strategy.window, strategy.global_positions(prompt, query))
    queries = torch.arange(begin, begin + chunk)
    return queries, torch.cat([cache.kept_after(begin), queries])


@pytest.mark.parametrize("pattern,runs", [("sink_window", 2), ("window", 1), ("longformer", 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_prefill_kernel_over_a_bounded_caches_kept_keys_by_position(pattern, runs, dtype):
    """A chunk at 150 over sinks 0..2 and the window 111..149: tiles cut over the kept keys (the
    first one spans the gap), masks at their true positions; longformer's globals 140.. included."""
    strategy = TritonFused(pattern=pattern, tile=32, **SMALL)
    call = strategy.call(200, 60, None)
    queries, keys = bounded_chunk(strategy, 200, 60, begin=150, chunk=37)
    assert len(key_runs(keys)) == runs
    q, k, v = tensors((1, 8, len(queries), 32), (1, 2, len(keys), 32), dtype, seed=11)
    blocks = build_block_list_over(call.mask, queries, key_runs(keys), strategy.tile)
    out, _ = block_sparse_attention(q, k, v, blocks, call.element_mask)
    q, k, v = q.cpu(), k.cpu(), v.cpu()
    reference = masked_attention(q.float(), k.float(), v.float(), call.mask, queries, keys)
    same_dtype = reference if dtype == torch.float32 else masked_attention(q, k, v, call.mask, queries, keys)
    assert out.shape == q.shape and out.dtype == dtype
    assert within_tolerance(out.cpu(), reference, same_dtype, dtype), float((out.cpu().float() - reference).abs().max())


def test_triton_fused_runs_every_prefill_chunk_over_the_bounded_cache_on_its_kernel(reference):
    """96 tokens in chunks of 40 over sinks 4 + window 24: chunks 2 and 3 read two runs of
    positions; all three run the fused kernel, and give `sparse`'s tokens on its torch block path."""
    from lcbench.tasks.mt import Mt

    reference = on_kernel_device(reference)
    example = Mt().examples(Prompter(reference.tokenizer), 96, 1, seed=4)[0]
    settings = {"pattern": "sink_window", "window": 24, "sinks": 4, "tile": 16, "prefill_chunk": 40}
    fused = TritonFused(**settings).run(reference, example)
    expected = Sparse(**settings, path="blocks").run(reference, example)
    assert fused.text == expected.text and fused.text
    assert fused.extra["prefill_calls"] == 3 and fused.extra["path_calls.triton"] == 3
    assert fused.extra["named_path_share"] == 1.0 and "path_calls.rows" not in fused.extra
    assert fused.extra["path_calls.triton-decode"] >= 1 and fused.extra["compile_s"] == 0.0
    assert expected.extra["path_calls.blocks"] == 3 and expected.extra["named_path_share"] == 1.0
    assert "triton x3" in fused.note and "of 3 prefill calls" not in fused.note


def test_launch_reports_the_calls_that_tuned_or_compiled():
    from lcbench.kernels.launch import launch

    class Tuned:
        """Stands for an autotuned kernel: a new key fills `cache`."""

        def __init__(self) -> None:
            self.cache: dict[int, str] = {}

        def __getitem__(self, grid):
            return lambda n, **kwargs: self.cache.setdefault(n, "config")

    heard: list[float] = []
    tuned = Tuned()
    for n in (64, 64, 128, 64):
        launch(tuned, (1,), n, heard=heard.append)
    assert len(heard) == 2 and all(s >= 0 for s in heard)


def test_warming_runs_each_kernel_key_once_before_the_generation(monkeypatch):
    """Where kernels compile (forced here: the interpreter compiles nothing), `warm` runs the
    prefill kernel once per power-of-two bucket of the chunks' lengths and the decode kernel once
    per bucket of the cache's, and nothing on a second call."""
    from lcbench.sparse import interface

    monkeypatch.setattr(interface, "compiles", lambda path: True)
    strategy = TritonFused(pattern="sink_window", window=24, sinks=4, tile=16, prefill_chunk=40)
    cache = BoundedCache(2, 4, 24)
    call = strategy.call(100, 0, cache)
    shape = interface.AttentionShape(2, 1, 16, torch.float32, DEVICE, 0.3)  # a shape no other test uses
    expected = interface.expected_calls(cache, 100, 40, 6)
    assert [len(q) for q, _ in expected.prefill] == [40, 40, 20] and [len(k) for _, k in expected.prefill] == [40, 67, 47]
    assert expected.decode == (28, 28)  # sinks + window - 1 kept, and the new token
    assert interface.warm(call, shape, expected) > 0
    warmed = {key[:2] for key in interface.WARMED if shape in key}
    assert warmed == {("triton", 64), ("triton", 128), ("triton-decode", 32)}
    before = set(interface.WARMED)
    interface.warm(call, shape, expected)
    assert interface.WARMED == before


def test_decode_buckets_are_one_length_per_power_of_two():
    from lcbench.sparse.interface import decode_lengths

    assert decode_lengths(5, 40) == [5, 9, 17, 33] and decode_lengths(8, 8) == [8] and decode_lengths(64, 65) == [64, 65]

"""The Triton kernels on a GPU against SDPA (flash) and compiled FlexAttention: forward time and
TFLOP/s (over computed tiles, and dense-equivalent), and decode tok/s against cache length.
Bounded to a few minutes; prints markdown tables and checks the targets.

    python benchmarks/triton_kernels.py                  # on a CUDA GPU: N = 1k..64k, d 128, bf16
    python benchmarks/triton_kernels.py --dry-run        # anywhere: parse, build inputs and block lists, no timing

`--peak-tflops` is the GPU's dense bf16 peak (default: H100/H200 SXM, 989).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from lcbench.sparse.block_list import BlockList, build_block_list, build_block_list_over, key_runs
from lcbench.units import parse_length

TOKENS_PER_ROW = 1 << 17  # batch x heads is chosen so that batch x heads x N stays about constant


def time_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Best of `repeats` CUDA-event timings after a warm-up (compilation and autotuning there)."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end))
    return best


def inputs(n: int, args: argparse.Namespace, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    heads = max(args.kv_heads, TOKENS_PER_ROW * 16 // n // args.kv_heads * args.kv_heads) if not args.dry_run else args.kv_heads
    heads = min(heads, 64)
    dtype = getattr(torch, args.dtype)
    shape_q, shape_kv = (1, heads, n, args.dim), (1, heads // args.groups, n, args.dim)
    return (torch.randn(shape_q, device=device, dtype=dtype), torch.randn(shape_kv, device=device, dtype=dtype),
            torch.randn(shape_kv, device=device, dtype=dtype))  # fmt: skip


def plans(n: int, args: argparse.Namespace) -> dict[str, tuple[Any, BlockList, Any]]:
    """(strategy, block list, element mask) for the dense-causal and sliding-window kernels."""
    from lcbench.strategies.triton_fused import TritonFused

    out = {}
    for label, strategy in (
        ("causal", TritonFused(pattern="causal", tile=args.tile)),
        ("window", TritonFused(pattern="sink_window", window=args.window, sinks=args.sinks, tile=args.tile)),
    ):
        call = strategy.call(n, 0, None)
        out[label] = (strategy, build_block_list(call.mask, torch.arange(n), 0, n, args.tile), call.element_mask)
    return out


def chunk_plan(n: int, args: argparse.Namespace) -> tuple[BlockList, Any]:
    """(block list, element mask) of the last `--chunk` prompt tokens of a prefill of `n` chunked over
    the bounded cache: the chunk's queries over the kept sinks and window and itself, by position."""
    from lcbench.sparse.bounded_cache import BoundedCache
    from lcbench.strategies.triton_fused import TritonFused

    call = TritonFused(pattern="sink_window", window=args.window, sinks=args.sinks, tile=args.tile).call(n, 0, None)
    begin = max(0, n - args.chunk)
    queries = torch.arange(begin, n)
    keys = torch.cat([BoundedCache(1, args.sinks, args.window).kept_after(begin), queries])
    return build_block_list_over(call.mask, queries, key_runs(keys), args.tile), call.element_mask


def chunk_row(n: int, args: argparse.Namespace, flex: Callable[..., Any]) -> dict[str, float]:
    """The kernel and flex on one chunk over the bounded cache (what a chunked prefill runs per chunk)."""
    from lcbench.kernels.block_sparse_attention import block_sparse_attention
    from lcbench.sparse.flex import block_mask

    blocks, element_mask = chunk_plan(n, args)
    q, k, v = inputs(n, args, "cuda")
    q, k, v = q[:, :, : blocks.n_q].contiguous(), k[:, :, : blocks.n_kv].contiguous(), v[:, :, : blocks.n_kv].contiguous()
    masks = block_mask(blocks, device="cuda")
    return {
        "ours_chunk_ms": time_ms(partial(block_sparse_attention, q, k, v, blocks, element_mask), args.repeats),
        "flex_chunk_ms": time_ms(partial(flex, q, k, v, block_mask=masks, enable_gqa=True), args.repeats),
        "chunk_keys": blocks.n_kv,
    }


def prefill_rows(args: argparse.Namespace) -> list[dict[str, float]]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import flex_attention

    from lcbench.kernels.block_sparse_attention import block_sparse_attention
    from lcbench.sparse.flex import block_mask

    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for n in args.lengths:
        q, k, v = inputs(n, args, "cuda")
        b_h, d = q.shape[0] * q.shape[1], q.shape[-1]
        row: dict[str, float] = {"n": n, "heads": q.shape[1]}
        for label, (_, blocks, element_mask) in plans(n, args).items():
            masks = block_mask(blocks, device="cuda")  # its key-position table on the GPU too
            row[f"ours_{label}_ms"] = time_ms(partial(block_sparse_attention, q, k, v, blocks, element_mask), args.repeats)
            row[f"flex_{label}_ms"] = time_ms(partial(flex, q, k, v, block_mask=masks, enable_gqa=True), args.repeats)
            row[f"{label}_tiles"] = blocks.tiles_visited()
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            sdpa = partial(F.scaled_dot_product_attention, q, k, v, is_causal=True, enable_gqa=True)
            row["sdpa_causal_ms"] = time_ms(sdpa, args.repeats)
        dense_flops = 4 * b_h * n * n * d / 2
        row["ours_causal_tflops"] = dense_flops / row["ours_causal_ms"] / 1e9
        row["computed_causal_tflops"] = 4 * b_h * row["causal_tiles"] * args.tile**2 * d / row["ours_causal_ms"] / 1e9
        row["computed_window_tflops"] = 4 * b_h * row["window_tiles"] * args.tile**2 * d / row["ours_window_ms"] / 1e9
        row["window_dense_equiv_tflops"] = dense_flops / row["ours_window_ms"] / 1e9
        row.update(chunk_row(n, args, flex))
        rows.append(row)
        print(f"  prefill {n}: done", file=sys.stderr, flush=True)
    return rows


def decode_rows(args: argparse.Namespace) -> list[dict[str, float]]:
    from lcbench.kernels.decode_attention import decode_attention

    rows = []
    for n in args.lengths:
        dtype = getattr(torch, args.dtype)
        heads = 32
        q = torch.randn(1, heads, 1, args.dim, device="cuda", dtype=dtype)
        k = torch.randn(1, heads // args.groups, n, args.dim, device="cuda", dtype=dtype)
        v = torch.randn_like(k)
        ms = time_ms(partial(decode_attention, q, k, v), args.repeats)
        sdpa = time_ms(partial(F.scaled_dot_product_attention, q, k, v, enable_gqa=True), args.repeats)
        rows.append(
            {"n": n, "ours_tok_s": 1e3 / ms, "sdpa_tok_s": 1e3 / sdpa, "gbps": 2 * k.numel() * k.element_size() / ms / 1e6}
        )
    return rows


def report(prefill: list[dict[str, float]], decode: list[dict[str, float]], args: argparse.Namespace) -> list[str]:
    print(f"\n{torch.cuda.get_device_name()} · d {args.dim} · {args.dtype} · GQA groups {args.groups} · tile {args.tile} · "
          f"window {args.window} + {args.sinks} sinks\n")  # fmt: skip
    print("| N | heads | ours causal ms | flex causal ms | SDPA flash causal ms | ours causal TFLOP/s | "
          "ours window ms | flex window ms | window computed TFLOP/s | window dense-equiv. TFLOP/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in prefill:
        print(f"| {r['n']} | {r['heads']} | {r['ours_causal_ms']:.3f} | {r['flex_causal_ms']:.3f} | {r['sdpa_causal_ms']:.3f} | "
              f"{r['ours_causal_tflops']:.0f} | {r['ours_window_ms']:.3f} | {r['flex_window_ms']:.3f} | "
              f"{r['computed_window_tflops']:.0f} | {r['window_dense_equiv_tflops']:.0f} |")  # fmt: skip
    print(f"\n| N | chunk of {args.chunk} over sinks + window: keys | ours ms | flex ms |\n|---|---|---|---|")
    for r in prefill:
        print(f"| {r['n']} | {r['chunk_keys']} | {r['ours_chunk_ms']:.3f} | {r['flex_chunk_ms']:.3f} |")
    print("\n| cache tokens | ours decode tok/s | SDPA decode tok/s | ours GB/s |\n|---|---|---|---|")
    for r in decode:
        print(f"| {r['n']} | {r['ours_tok_s']:.0f} | {r['sdpa_tok_s']:.0f} | {r['gbps']:.0f} |")
    failed = []

    def check(name: str, ok: bool, value: float) -> None:
        print(f"- {'PASS' if ok else 'FAIL'} {name}: {value:.2f}")
        if not ok:
            failed.append(name)

    print("\ntargets")
    for r in prefill:
        if r["n"] >= 8192:
            check(
                f"causal ours/flex speed at {r['n']} >= 0.9",
                r["flex_causal_ms"] / r["ours_causal_ms"] >= 0.9,
                r["flex_causal_ms"] / r["ours_causal_ms"],
            )
            check(
                f"causal TFLOP/s share of peak at {r['n']} >= 0.5",
                r["ours_causal_tflops"] / args.peak_tflops >= 0.5,
                r["ours_causal_tflops"] / args.peak_tflops,
            )
    at_32k = [r for r in prefill if r["n"] == 32768]
    for r in at_32k:
        check(
            "window vs SDPA causal speed at 32k >= 5",
            r["sdpa_causal_ms"] / r["ours_window_ms"] >= 5,
            r["sdpa_causal_ms"] / r["ours_window_ms"],
        )
        check(
            "window vs flex (same mask) speed at 32k >= 1.0",
            r["flex_window_ms"] / r["ours_window_ms"] >= 1.0,
            r["flex_window_ms"] / r["ours_window_ms"],
        )
    return failed


def dry_run(args: argparse.Namespace) -> None:
    """Everything but the timing, on the CPU: arguments, inputs and block lists per length."""
    for n in args.lengths:
        q, k, v = inputs(min(n, 256), args, "cpu")
        built = plans(n, args)
        tiles = {label: blocks.tiles_visited() for label, (_, blocks, _) in built.items()}
        chunk, _ = chunk_plan(n, args)
        tiles["chunk"] = chunk.tiles_visited()
        print(f"N {n}: q {tuple(q.shape)} k {tuple(k.shape)} {args.dtype}; tiles visited {tiles}; chunk keys {chunk.kv_runs}")
    print("dry run: arguments, inputs and block lists are ready; run on a CUDA GPU without --dry-run to time them")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1k,2k,4k,8k,16k,32k,64k", type=lambda s: [parse_length(x) for x in s.split(",")])
    parser.add_argument("--dim", type=int, default=128, choices=[32, 64, 128])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--groups", type=int, default=1, help="query heads per KV head")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--sinks", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=1024, help="prefill chunk over the bounded cache (the chunk row)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--dry-run", action="store_true", help="parse, build inputs and block lists; no GPU needed")
    args = parser.parse_args(argv)
    if args.dry_run:
        dry_run(args)
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU; use --dry-run to check it here", file=sys.stderr)
        return 2
    failed = report(prefill_rows(args), decode_rows(args), args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

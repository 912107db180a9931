"""Attention prefill and decode, side by side on this machine: full SDPA causal against the
sparse paths (torch block loop, compiled FlexAttention) on the same sinks + window pattern, and
decode speed from the bounded cache. Prints a markdown table and checks the targets.

    python benchmarks/attention.py                       # CPU: 4k..32k
    python benchmarks/attention.py --lengths 8k,32k,128k --repeats 3 --profile
    python benchmarks/attention.py --lengths 4k,8k,16k,32k,64k,128k --device cuda

`--dtype auto` is bfloat16 on a GPU (float32 there sends GQA SDPA to the math backend, whose
N x N scores run out of memory long before 32k) and float32 on a CPU. A path that runs out of
memory at a length is a row that says `oom`, not a crash. The time targets that compare paths
are calibrated on a CPU and are printed, not judged, on a GPU; the scaling and memory targets hold
on both.

A sparse path's time is its attention call plus what it builds once per forward call and shares
across layers (the block list, then the block path's rows or flex's BlockMask), as a one-layer
model would pay it; its memory is the attention call's, the plan built beforehand as in a model's
layers (the plan's own size is printed: KiB), measured from 4k on in a process of its own for
each path and length, so that what one path leaves in the allocator's heap is not counted against
the next.
`--profile` prints the top profile entries of the block path (plan and attention) at each length
and of decode steps from the bounded cache at the longest.

Peak memory is the rise over the call, the figure a run's cells report: torch's allocator peak on
a GPU, the peak of live tensor bytes on a CPU (`lcbench.run.measure`), with the process RSS beside
it (after freed buffers are handed back to the OS, so that each call's peak is its own; it also
holds malloc's slack, which moves by up to a MiB from one process to the next).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lcbench.model import Model, synchronize
from lcbench.reference.models import reference_dir
from lcbench.run.measure import MeasureMemory, MemoryPeak, TensorBytes
from lcbench.sparse.block_attention import block_sparse_attention
from lcbench.sparse.block_list import EMPTY, BlockList, build_block_list
from lcbench.sparse.block_runs import BlockRun, schedule
from lcbench.sparse.bounded_cache import BoundedCache
from lcbench.sparse.flex import block_mask, bucket, flex_block_attention
from lcbench.sparse.interface import register, sparse_call
from lcbench.strategies.sparse import Sparse
from lcbench.units import parse_length

MiB = 1 << 20


def peak_mib(fn: Callable[[], Any], device: str, passes: int = 3) -> dict[str, float]:
    """One call's peak memory, as a run's cells report it (`MemoryPeak.peak_bytes`): on a GPU
    torch's allocator peak, on a CPU the peak of live tensor bytes, counted in a pass of its own
    (counting slows each allocation) and the same every call; beside it on a CPU the process RSS,
    least of `passes` calls (it moves by up to a MiB from one process to the next with where
    malloc put earlier buffers, always upward). After a warm-up call (compilation happens
    there) where there are several passes; `seconds` is the first measured one's."""
    on_cpu = not device.startswith("cuda")
    figures: dict[str, float] = {}
    if passes > 1:
        fn()
        if on_cpu:
            with TensorBytes() as counter:
                fn()
            if counter.peak is not None:  # None: another profiler is running; RSS stands in
                figures["mib"] = counter.peak / MiB
    peaks: list[MemoryPeak] = []
    for _ in range(passes):
        with MeasureMemory(device, count_tensors=on_cpu and passes == 1) as meter:  # a lone pass counts as it goes
            start = time.perf_counter()
            fn()
            synchronize(device)
            figures.setdefault("seconds", time.perf_counter() - start)
        peaks.append(meter.result)
    figures.setdefault("mib", min(p.peak_bytes or 0 for p in peaks) / MiB)
    if on_cpu:
        figures["rss_mib"] = min(p.rss_bytes or 0 for p in peaks) / MiB
    return figures


def best_times(fns: dict[str, Callable[[], Any]], device: str, repeats: int, seconds: float = 3.0) -> dict[str, float]:
    """The best time of each of `fns`, called in turn round after round, so that a slow spell of a
    shared machine hits them all alike; the best, not the median, as noise only ever adds time.
    `repeats` rounds, more where a round is short: as many as fit in `seconds` (at most 20)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    rounds = repeats if fns else 0
    while len(next(iter(times.values()), [])) < rounds:
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
        rounds = max(repeats, min(20, math.ceil(seconds / sum(min(t) for t in times.values()))))
    return {name: min(t) for name, t in times.items()}


class Prefill:
    """One length's inputs and what each path calls: its attention (`paths`) and the plan it
    builds once per forward call and every layer shares (`plans`): the block list, then the block
    path's rows (`schedule`) or flex's BlockMask."""

    def __init__(self, n: int, args: argparse.Namespace) -> None:
        g = torch.Generator(device=args.device).manual_seed(n)
        shape = dict(device=args.device, dtype=bench_dtype(args), generator=g)
        q = torch.randn(1, args.heads, n, args.dim, **shape)  # type: ignore[call-overload]
        k = torch.randn(1, args.kv_heads, n, args.dim, **shape)  # type: ignore[call-overload]
        v = torch.randn(1, args.kv_heads, n, args.dim, **shape)  # type: ignore[call-overload]
        mask = Sparse(pattern="sink_window", window=args.window, sinks=args.sinks).mask(n, 0)
        positions = torch.arange(n)

        def blocks() -> BlockList:
            return build_block_list(mask, positions, 0, n, args.tile)

        self.built = blocks()
        self.runs = schedule(self.built)
        self.plans: dict[str, Callable[[], Any]] = {
            "blocks": lambda: schedule(blocks()),
            "flex": lambda: block_mask(blocks(), bucket(n, args.tile), bucket(n, args.tile), args.device),
        }
        self.paths: dict[str, Callable[[], Any]] = {
            "full": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
            "blocks": lambda: block_sparse_attention(q, k, v, self.built, runs=self.runs),
            "flex": lambda: flex_block_attention(q, k, v, self.built),
        }
        self.unplanned = lambda: block_sparse_attention(q, k, v, blocks())  # the block path, plan and all


def one_pass_only(name: str, n: int) -> bool:
    """SDPA is quadratic: from 16k on, its one call that counts memory is also its time (at 128k on
    a CPU, a call takes minutes); it has nothing to compile."""
    return name == "full" and n >= 16384


def memory_apart(name: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    """`peak_mib` of path `name` at `n`, in a process of its own (this script with --memory-of): in
    this one, what earlier paths left in the allocator's heap moves a path's RSS by about a MiB."""
    command = [sys.executable, __file__, "--memory-of", name, "--lengths", str(n), "--device", args.device, "--dtype", args.dtype]
    shape = ("window", "sinks", "tile", "heads", "kv_heads", "dim")
    command += [f"--{flag.replace('_', '-')}={getattr(args, flag)}" for flag in shape]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {name} at {n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_here(name: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    """What `memory_apart` prints: `peak_mib`'s figures for the path, or oom."""
    try:
        return peak_mib(Prefill(n, args).paths[name], args.device, passes=1 if one_pass_only(name, n) else 3)
    except torch.OutOfMemoryError:
        return {"oom": 1.0}


def prefill_row(n: int, args: argparse.Namespace) -> dict[str, float]:
    """A sparse path's time is its attention call plus its plan (as if the model had one layer); its
    memory is the attention call's own peak, the plan built beforehand, as in a model's layers."""
    prefill = Prefill(n, args)
    row: dict[str, float] = {"n": n, "plan_kib": plan_bytes(prefill.built, prefill.runs) / 1024}
    timed: dict[str, Callable[[], Any]] = {}
    for name, fn in prefill.paths.items():
        if name in args.skip:
            continue
        # below 4k the peaks are a MiB or two and no target is judged: measured here, not apart
        measured = memory_apart(name, n, args) if n >= 4096 else measure_here(name, n, args)
        if "oom" in measured:
            row[f"{name}_oom"] = 1.0
            continue
        row[f"{name}_mib"] = measured["mib"]
        if "rss_mib" in measured:
            row[f"{name}_rss_mib"] = measured["rss_mib"]
        if one_pass_only(name, n):
            row["full_s"] = measured["seconds"]
            continue
        timed[name] = fn
        if name in prefill.plans:
            timed[f"{name}_plan"] = prefill.plans[name]
    sparse = {name: fn for name, fn in timed.items() if name != "full"}  # interleaved with each other, not with SDPA's
    for group in ({"full": timed["full"]} if "full" in timed else {}, sparse):
        for name, seconds in best_times(group, args.device, args.repeats).items():
            row[f"{name}_s"] = seconds
    row.update(useful_shares(prefill.built))
    for name in prefill.plans:
        if f"{name}_plan_s" in row:
            row[f"{name}_s"] += row[f"{name}_plan_s"]
    if args.profile and "blocks" not in args.skip:
        profile(f"block path at {n} (its plan, then the attention)", prefill.unplanned)
    return row


def plan_bytes(blocks: BlockList, runs: list[BlockRun]) -> int:
    """What the block path keeps across a forward call's layers: its block list and rows."""
    tensors = [t for b in blocks.batches for t in (b.q_tiles, b.kv_tiles, b.kinds)] + [blocks.q_positions]
    for run in runs:
        tensors += [t for t in (run.scattered, run.band_mask, run.scattered_mask) if t is not None]
        tensors += [t for t in run.biases.values() if t is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def profile(title: str, fn: Callable[[], Any], top: int = 15) -> None:
    """The profile of one call of `fn`, after a warm-up call: the entries that took the most time of their own."""
    fn()
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    body = text.getvalue()
    print(f"\nprofile: {title}\n" + body[body.index("ncalls") - 3 :].rstrip() + "\n", file=sys.stderr)


def bench_dtype(args: argparse.Namespace) -> torch.dtype:
    if args.dtype == "auto":
        return torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    return getattr(torch, args.dtype)


def cell(row: dict[str, float], path: str, unit: str, spec: str) -> str:
    """A path's figure as the table prints it: `oom` where it ran out of memory, `n/a` where skipped."""
    if row.get(f"{path}_oom"):
        return "oom"
    value = row.get(f"{path}_{unit}")
    return "n/a" if value is None else format(value, spec)


def quotient(row: dict[str, float], top: str, bottom: str) -> float | None:
    a, b = row.get(top), row.get(bottom)
    return a / b if a is not None and b else None


def allowed_pairs(blocks: BlockList) -> int:
    """(query, key) pairs the pattern allows: every allowed pair lies in a visited tile."""
    total = 0
    for batch in blocks.batches:
        q_tiles = batch.q_tiles[:, None].expand_as(batch.kv_tiles)[batch.kinds != EMPTY]
        kv_tiles = batch.kv_tiles[batch.kinds != EMPTY]
        for start in range(0, len(q_tiles), 256):
            total += int(blocks.evaluate(q_tiles[start : start + 256], kv_tiles[start : start + 256]).sum())
    return total


def useful_shares(blocks: BlockList) -> dict[str, float]:
    """Allowed pairs / pairs each path computes: SDPA causal the lower triangle, flex whole tiles,
    the block path its rows' bands and scattered keys."""
    allowed, n = allowed_pairs(blocks), blocks.n_q
    band = sum(run.count * run.rows * run.keys for run in schedule(blocks))
    return {
        "full_useful": allowed / (n * (n + 1) / 2),
        "blocks_useful": allowed / band,
        "flex_useful": allowed / (blocks.tiles_visited() * blocks.tile**2),
    }


def decode_rows(model: Model, lengths: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    """Decode tok/s on the reference model after prompts of each length, from the bounded cache.

    Every prompt is read first, into a cache of its own; then the lengths take decode steps in
    turn, one each, each step timed, and tok/s is one over the median step. A step is a few
    milliseconds of small ops, and this machine's speed moves that much from one second to the next
    (a pure-Python loop by up to 80%): taken in turn, a slow spell hits every length alike."""
    strategy = Sparse(pattern="sink_window", window=args.window, sinks=args.sinks, tile=args.tile)
    states: dict[int, list[Any]] = {}  # n -> [cache, its call, the next input token]
    for n in lengths:
        prompt = torch.randint(10, len(model.tokenizer), (n,), generator=torch.Generator().manual_seed(n)).tolist()
        cache = strategy.cache_for(model, n, 0)
        call = strategy.call(n, 0, cache)
        with sparse_call(call), model.attention(register()):
            model.prefill(prompt, cache)
        states[n] = [cache, call, prompt[-1]]
    steps: dict[int, list[float]] = {n: [] for n in lengths}

    def decode(n: int, count: int) -> None:
        cache, call, token = states[n]
        with sparse_call(call):
            for _ in range(count):
                synchronize(args.device)
                start = time.perf_counter()
                token, _ = model.step(token, cache)
                synchronize(args.device)
                steps[n].append(time.perf_counter() - start)
        states[n][2] = token

    with torch.inference_mode(), model.attention(register()):
        for _ in range(max(args.repeats, 5) * args.decode_tokens):
            for n in lengths:
                decode(n, 1)
        if args.profile:
            n = lengths[-1]
            profile(f"{args.decode_tokens} decode steps after {n} tokens (bounded cache)", lambda: decode(n, args.decode_tokens))
    rows = []
    for n in lengths:
        cache = states[n][0]
        assert isinstance(cache, BoundedCache)
        rows.append({"n": n, "decode_tok_s": 1 / statistics.median(steps[n]), "cache_tokens": float(cache.kept_tokens())})
    return rows


def ratio(rows: list[dict[str, float]], key: str, n: int) -> float | None:
    by_n = {int(r["n"]): r for r in rows}
    if n in by_n and 2 * n in by_n and key in by_n[n] and key in by_n[2 * n] and by_n[n][key] > 0:
        return by_n[2 * n][key] / by_n[n][key]
    return None


def report(rows: list[dict[str, float]], decodes: list[dict[str, float]], args: argparse.Namespace) -> list[str]:
    """The table, then each target with its measured figure; returns the failed targets."""
    print(
        f"\nattention prefill, 1 x {args.heads} query heads / {args.kv_heads} KV heads x d{args.dim}, {bench_dtype(args)}, "
        f"sinks {args.sinks} + window {args.window}, tile {args.tile}, device {args.device}, {torch.get_num_threads()} threads\n"
    )
    print(
        "| N | full SDPA s | blocks s | flex s | full MiB | blocks MiB | flex MiB | blocks/full MiB "
        "| RSS full / blocks / flex MiB | blocks plan KiB | useful full / blocks / flex | full/blocks s | blocks/flex s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for r in rows:
        speedup, vs_flex = quotient(r, "full_s", "blocks_s"), quotient(r, "blocks_s", "flex_s")
        memory = quotient(r, "blocks_mib", "full_mib")
        print(
            f"| {int(r['n'])} | {cell(r, 'full', 's', '.3f')} | {cell(r, 'blocks', 's', '.3f')} | "
            f"{cell(r, 'flex', 's', '.3f')} | "
            f"{cell(r, 'full', 'mib', '.1f')} | {cell(r, 'blocks', 'mib', '.1f')} | {cell(r, 'flex', 'mib', '.1f')} | "
            f"{memory if memory is not None else nan:.2f} | "
            f"{' / '.join(cell(r, path, 'rss_mib', '.1f') for path in ('full', 'blocks', 'flex'))} | {r['plan_kib']:.0f} | "
            f"{r['full_useful']:.0%} / {r['blocks_useful']:.0%} / {r['flex_useful']:.0%} | "
            f"{speedup if speedup is not None else nan:.1f}x | {vs_flex if vs_flex is not None else nan:.2f}x |"
        )
    print("\n| N | decode tok/s (one over the median step; bounded cache, reference model) | cached tokens |\n|---|---|---|")
    for d in decodes:
        print(f"| {int(d['n'])} | {d['decode_tok_s']:.1f} | {int(d['cache_tokens'])} |")
    failed: list[str] = []
    on_gpu = args.device.startswith("cuda")

    def check(name: str, value: float | None, ok: bool, cpu_only: bool = False) -> None:
        if value is None:
            return
        if cpu_only and on_gpu:  # calibrated on a CPU: a GPU's kernels rank the paths otherwise
            print(f"- (CPU target, not judged on a GPU) {name}: {value:.2f}")
            return
        print(f"- {'PASS' if ok else 'FAIL'} {name}: {value:.2f}")
        if not ok:
            failed.append(name)

    print("\ntargets")
    for r in rows:
        n = int(r["n"])
        for path in ("blocks", "flex"):
            value = ratio(rows, f"{path}_mib", n)
            check(f"{path} mem({2 * n})/mem({n}) <= 2.2", value, value is not None and value <= 2.2)
            if n >= 8 * args.window:
                value = ratio(rows, f"{path}_s", n)
                check(f"{path} time({2 * n})/time({n}) <= 2.2", value, value is not None and value <= 2.2)
    for r in rows:
        value = quotient(r, "blocks_mib", "full_mib")
        check(f"blocks/full memory at {int(r['n'])} <= 1", value, value is not None and value <= 1)
        value = quotient(r, "blocks_s", "flex_s")
        check(f"blocks/flex time at {int(r['n'])} <= 1", value, value is not None and value <= 1, cpu_only=True)
    longest = max(rows, key=lambda r: r["n"])
    value = quotient(longest, "full_s", "blocks_s")
    check(f"full/blocks time at {int(longest['n'])} >= 4", value, value is not None and value >= 4, cpu_only=True)
    full = [d for d in decodes if d["cache_tokens"] == max(e["cache_tokens"] for e in decodes)]
    if len(full) >= 2:  # the same cached tokens (the window filled): the same cost a step
        decodes = full
        speeds = [d["decode_tok_s"] for d in decodes]
        value = max(speeds) / min(speeds)
        span = f"{int(decodes[0]['n'])}..{int(decodes[-1]['n'])}"
        check(f"decode tok/s fastest / slowest over {span} <= 1.05", value, value <= 1.05)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="4k,8k,16k,32k")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--sinks", type=int, default=4)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--skip", default="", help="paths to leave out, e.g. flex")
    parser.add_argument("--profile", action="store_true", help="print the block path's and decode's top profile entries")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # one path's memory at one length, for `memory_apart`
    args = parser.parse_args()
    lengths = [parse_length(x) for x in args.lengths.split(",")]
    if args.memory_of:
        print(json.dumps(measure_here(args.memory_of, lengths[0], args)))
        return
    rows = [prefill_row(n, args) for n in lengths]
    model = Model.load(reference_dir("mt"), device=args.device)
    decodes = decode_rows(model, lengths, args)
    failed = report(rows, decodes, args)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

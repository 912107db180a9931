"""Peak memory of KV-cache compression against `full`, side by side in one run, on the shipped
translation model (`reference_dir("mt")`, on the CPU) and one mt example: full, and SnapKV, H2O and
TOVA at compression ratio 0.5. Prints a markdown table and PASS / FAIL for "each method's peak is
below full's".

    python benchmarks/kv_memory.py              # 4k tokens
    python benchmarks/kv_memory.py --quick      # 1k tokens
    python benchmarks/kv_memory.py --length 2048 --dump out.json

The headline is the peak of live tensor bytes over one `strategy.run(model, example)`, counted
exactly from the CPU allocator's reports to torch's profiler (memory events only: each allocation
inside the span adds its bytes, each free subtracts them; the running sum's peak, in time order, is
the peak of the tensors the call allocated and still held). It is the same on every run. Peak RSS
rise is printed beside it for reference (it moves with what malloc kept from earlier work, so it is
measured in a pass of its own, after one unmeasured warm-up call per strategy). The KV columns are
what the prediction reports: the cache's bytes at its peak and while decoding (`Usage`), and the
bytes the method promises to keep (`extra["kv_promised_bytes"]`: positions kept by its budget x
keys and values per position and KV head), and the storage the compressed cache holds at the end,
spare room included (`extra["kv_reserved_bytes"]`).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

MB = 1e6
METHODS = ("snapkv", "h2o", "tova")
RATIO = 0.5


def tensor_meter() -> Any:
    """The runner's own meter of live tensor bytes (`start()`, `stop() -> peak bytes`)."""
    from lcbench.run.measure import TensorBytes

    return TensorBytes()


def rss_rise(run: Any) -> tuple[Any, int | None]:
    """`run()`'s result and its peak RSS rise (the kernel's high-water mark, reset first)."""
    from lcbench.run.measure import MeasureMemory

    meter = MeasureMemory("cpu", count_tensors=False)  # RSS alone: the counting has its own pass
    with meter:
        result = run()
    return result, meter.result.rss_bytes


def strategies() -> dict[str, Any]:
    from lcbench.registry import strategy_class

    made = {"full": strategy_class("full")()}
    for method in METHODS:
        made[f"{method}-{int(RATIO * 100)}%"] = strategy_class("kv_compression")(method=method, compression_ratio=RATIO)
    return made


def mb(value: float | None) -> str:
    return "—" if value is None else f"{value / MB:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=4096, help="prompt tokens (default 4096)")
    parser.add_argument("--quick", action="store_true", help="1024 tokens")
    parser.add_argument("--dump", type=Path, help="write every figure and output text here as JSON")
    args = parser.parse_args(argv)
    length = 1024 if args.quick else args.length

    import torch

    from lcbench.model import Model
    from lcbench.prompt import Prompter
    from lcbench.reference.models import reference_dir
    from lcbench.tasks.mt import Mt

    torch.manual_seed(0)
    model = Model.load(reference_dir("mt"), device="cpu")
    example = Mt().examples(Prompter(model.tokenizer), length, 1, seed=0)[0]
    warm = Mt().examples(Prompter(model.tokenizer), 256, 1, seed=0)[0]
    print(f"mt, {length} prompt tokens, torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)

    rows: list[dict[str, Any]] = []
    for label, strategy in strategies().items():
        strategy.run(model, warm)  # lazy buffers (rotary tables, thread pools) before anything is measured
        gc.collect()
        meter = tensor_meter().start()
        prediction = strategy.run(model, example)
        tensor_peak = meter.stop()
        del prediction
        gc.collect()
        start = time.perf_counter()
        prediction, rss = rss_rise(lambda strategy=strategy: strategy.run(model, example))
        seconds = time.perf_counter() - start
        usage = prediction.usage
        rows.append(
            {
                "strategy": label,
                "tensor_peak_bytes": tensor_peak,
                "rss_rise_bytes": rss,
                "kv_peak_bytes": usage.kv_peak_bytes,
                "kv_decode_bytes": usage.kv_decode_bytes,
                "kv_promised_bytes": prediction.extra.get("kv_promised_bytes"),
                "kv_reserved_bytes": prediction.extra.get("kv_reserved_bytes"),
                "decode_tokens": usage.decode_tokens,
                "seconds": round(seconds, 2),
                "text": prediction.text,
            }
        )
        print(f"  {label}: {mb(tensor_peak)} MB peak tensors, {seconds:.1f} s", file=sys.stderr)

    print(f"\nPeak memory rise per call, mt at {length} tokens (MB = 10^6 bytes)\n")
    print(
        "| strategy | peak live tensors (MB) | peak RSS rise (MB) | KV peak (MB) | KV at decode (MB) | KV promised (MB) "
        "| KV storage held (MB) | decode tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['strategy']} | {mb(row['tensor_peak_bytes'])} | {mb(row['rss_rise_bytes'])} | {mb(row['kv_peak_bytes'])} "
            f"| {mb(row['kv_decode_bytes'])} | {mb(row['kv_promised_bytes'])} | {mb(row['kv_reserved_bytes'])} "
            f"| {row['decode_tokens']} |"
        )
    full = rows[0]["tensor_peak_bytes"]
    failed = 0
    print()
    for row in rows[1:]:
        ok = row["tensor_peak_bytes"] is not None and full is not None and row["tensor_peak_bytes"] < full
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}: {row['strategy']} peak {mb(row['tensor_peak_bytes'])} MB < full's {mb(full)} MB")
    if args.dump:
        args.dump.write_text(json.dumps({"length": length, "rows": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

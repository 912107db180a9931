"""Which context positions lcbench's KV-cache compression keeps, held against NVIDIA's kvpress.

kvpress pins an older transformers (<5.3) than lcbench's, so the two cannot share a venv: one run
in a kvpress venv dumps what kvpress keeps, a second run in lcbench's venv recomputes it with
`lcbench.kv.compression.kept_positions` and compares. The tie between the runs is a tiny Llama
built from a config with fixed weights, saved as safetensors, and a fixed prompt of token ids.
Make the kvpress venv once, in a folder of your choosing (KVPRESS below; kvpress brings the
transformers it pins), then run both halves from the repository root:

    python3 -m venv KVPRESS
    KVPRESS/bin/pip install torch==2.13.0 && KVPRESS/bin/pip install kvpress==0.5.5
    KVPRESS/bin/python benchmarks/kvpress_conformance.py dump --out DIR
    .venv/bin/python benchmarks/kvpress_conformance.py compare --dir DIR

`dump` writes DIR/model (the model) and DIR/kvpress.json: for SnapKV, key-norm, TOVA and
StreamingLLM (n_sink 4) at compression ratios 0.5 and 0.75, kvpress's question-agnostic setting
(the press compresses while the 560-token context alone is prefilled; the 40-token question is
never seen), the sorted kept positions per layer and KV head, kvpress's parameters and the rules
it applies, and per layer and KV head the gap between the lowest kept and highest dropped score
(`score_margin`; 0 is a tie). kvpress returns a pruned cache, not indices: each kept key is matched back to the one
position of the uncompressed cache's same layer and head whose key equals it.
`compare` prints, per press and ratio, how many (layer, KV head) sets are identical and the mean
Jaccard overlap of those that are not; it exits 1 if any set differs.

Not run in CI: it needs a second venv. Last run with Python 3.11.7, torch 2.13.0+cpu,
transformers 5.2.0 and kvpress 0.5.5 (dump); lcbench's venv had transformers 5.24.0 (compare).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

CONTEXT, QUESTION = 560, 40
RATIOS = (0.5, 0.75)
# lcbench name -> (kvpress class, its parameters: kvpress's defaults for SnapKV, n_sink 4 for StreamingLLM).
PRESSES: dict[str, tuple[str, dict[str, int]]] = {
    "snapkv": ("SnapKVPress", {"window_size": 64, "kernel_size": 5}),
    "keynorm": ("KnormPress", {}),
    "tova": ("TOVAPress", {}),
    "streaming": ("StreamingLLMPress", {"n_sink": 4}),
}
# kvpress's parameter names -> the keyword arguments of lcbench's kept_positions.
LCBENCH_NAMES = {"window_size": "window", "kernel_size": "kernel", "n_sink": "sinks"}
# The rules kvpress 0.5.5 applies (kvpress/presses/*.py, kvpress/utils.py), written down for the reader.
N_KEPT = "max(1, int(n * (1 - ratio))) per KV head (utils.compute_n_kept), top-k of the scores (scorer_press.py)"
SEMANTICS: dict[str, dict[str, Any]] = {
    "snapkv": {
        "score": "softmax attention of the last window_size queries over all n keys (causal, query-dtype softmax), "
        "columns of the window dropped, mean over the window's queries",
        "pooling": "avg_pool1d(kernel_size, stride 1, padding kernel_size // 2, zeros counted) over the n - window "
        "positions only, per query head",
        "gqa": "mean over the query heads of each KV head, after pooling",
        "window_kept": "always: the window's scores are set to max + 1",
        "selection": "per KV head",
    },
    "keynorm": {
        "score": "-L2 norm of the cached (post-RoPE) key: the LOWEST norms are kept",
        "gqa": "none: keys are per KV head",
        "selection": "per KV head",
    },
    "tova": {
        "score": "softmax attention of the last context query over all n keys, its own column dropped",
        "gqa": "mean over ALL query heads of the layer, the same scores for every KV head",
        "window_kept": "the last position always: its score is set to max + 1",
        "selection": "per layer (identical for every KV head)",
    },
    "streaming": {
        "score": "ones, zeros on positions n_sink .. n_sink + n - n_kept - 1",
        "gqa": "none",
        "window_kept": "the first n_sink and the last n_kept - n_sink positions",
        "selection": "per layer",
    },
}


def build_model() -> Any:
    """The tiny Llama, from a config and torch.manual_seed(0). initializer_range 0.2 rather than 0.02,
    because at 0.02 every head attends almost uniformly (entropy within 0.001 of log n) and the kept sets
    would rest on rounding-level differences in the scores, not on the methods."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.2,
    )
    model = LlamaForCausalLM(config).eval()
    model.set_attn_implementation("sdpa")  # kvpress's pipeline default: SnapKV and TOVA recompute the window's attention
    assert model.dtype == torch.float32
    return model


def prompt_ids() -> list[int]:
    """CONTEXT + QUESTION random token ids (seed 1); only the context is compressed."""
    return torch.randint(0, 512, (CONTEXT + QUESTION,), generator=torch.Generator().manual_seed(1)).tolist()


def prefill_keys(model: Any, context: torch.Tensor, press: Any = None) -> list[torch.Tensor]:
    """Each layer's cached keys (kv heads, n, head dim) after prefilling `context`, as kvpress's pipeline
    does it (the base model, no LM head, a DynamicCache), under `press` when one is given."""
    import contextlib

    from transformers import DynamicCache

    cache = DynamicCache()
    with torch.no_grad(), press(model) if press is not None else contextlib.nullcontext():
        model.model(input_ids=context, past_key_values=cache)
    layers: list[Any] = list(cache.layers)
    return [layer.keys[0] for layer in layers]


def match_positions(kept: torch.Tensor, full: torch.Tensor) -> list[int]:
    """Sorted positions of `full` (n, d) whose keys the rows of `kept` (m, d) are; each must match one."""
    equal = torch.isclose(kept[:, None, :], full[None, :, :], rtol=0, atol=1e-6).all(dim=-1)
    counts = equal.sum(dim=1)
    assert bool((counts == 1).all()), f"kept keys matching 0 or several positions: {counts.tolist()}"
    positions = equal.float().argmax(dim=1).tolist()
    assert len(set(positions)) == len(positions), "two kept keys matched the same position"
    return sorted(positions)


def dump(out: Path) -> None:
    """The model, and kvpress's kept sets per press and ratio: the context alone prefilled under each press,
    as in kvpress's pipeline (question-agnostic), matched back to the positions of an uncompressed prefill."""
    import kvpress

    model = build_model()
    model.save_pretrained(out / "model")  # safetensors
    ids = prompt_ids()
    context = torch.tensor([ids[:CONTEXT]])
    full = prefill_keys(model, context)
    presses: dict[str, Any] = {}
    for name, (cls, params) in PRESSES.items():
        for ratio in RATIOS:
            press = getattr(kvpress, cls)(compression_ratio=ratio, **params)
            margins: list[list[float]] = []
            score = press.score

            def scored(
                *args: Any, _score: Any = score, _ratio: float = ratio, _margins: list[list[float]] = margins, **kwargs: Any
            ) -> Any:
                """kvpress's own scores, passed through; notes per KV head the gap between the last kept and the first
                dropped score (0: a tie that torch.topk breaks, so a differing set there is no error in the method)."""
                s = _score(*args, **kwargs)
                top = s.sort(dim=-1, descending=True).values
                n_kept = kvpress.utils.compute_n_kept(s.shape[-1], _ratio)
                _margins.append((top[0, :, n_kept - 1] - top[0, :, n_kept]).tolist())
                return s

            press.score = scored
            pruned = prefill_keys(model, context, press)
            kept = [[match_positions(p[h], f[h]) for h in range(f.shape[0])] for p, f in zip(pruned, full)]
            presses[f"{name}@{ratio}"] = {
                "method": name,
                "ratio": ratio,
                "kvpress_class": cls,
                "settings": params,
                "semantics": {**SEMANTICS[name], "n_kept": N_KEPT},
                "score_margin": margins,
                "kept": kept,
            }
            print(
                f"{name}@{ratio}: {len(kept[0][0])} of {CONTEXT} kept per head, score margins (layers x kv heads) "
                f"{[[float(f'{m:.2g}') for m in row] for row in margins]}"
            )
    versions = {p: metadata.version(p) for p in ("torch", "transformers", "kvpress", "safetensors")}
    record = {
        "versions": {"python": platform.python_version(), **versions},
        "attn_implementation": "sdpa",
        "prompt_ids": ids,
        "context_length": CONTEXT,
        "presses": presses,
    }
    (out / "kvpress.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out / 'kvpress.json'}")


def compare(directory: Path) -> int:
    """lcbench's kept sets on the same weights and context, held set by set against kvpress's: 0 if all are
    identical, 1 if any differs, 2 if lcbench has no kept_positions yet."""
    try:
        from lcbench.kv.compression import kept_positions
    except ImportError as error:
        print(f"lcbench.kv.compression.kept_positions is missing ({error}): nothing to compare yet", file=sys.stderr)
        return 2
    from transformers import AutoModelForCausalLM

    record = json.loads((directory / "kvpress.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(directory / "model", dtype=torch.float32).eval()
    context = record["prompt_ids"][: record["context_length"]]
    print(f"kvpress {record['versions']} against transformers {metadata.version('transformers')}\n")
    print("| press | ratio | layers x heads identical | mean Jaccard where not |\n|---|---|---|---|")
    failed = False
    for entry in record["presses"].values():
        settings = {LCBENCH_NAMES[k]: v for k, v in entry["settings"].items()}
        ours = kept_positions(model, context, entry["method"], entry["ratio"], **settings)
        pairs = [
            (set(torch.as_tensor(ours[layer][h]).tolist()), set(theirs))
            for layer, heads in enumerate(entry["kept"])
            for h, theirs in enumerate(heads)
        ]
        jaccard = [len(a & b) / len(a | b) for a, b in pairs if a != b]
        failed |= bool(jaccard)
        mean = f"{sum(jaccard) / len(jaccard):.3f}" if jaccard else "-"
        print(f"| {entry['method']} | {entry['ratio']} | {len(pairs) - len(jaccard)}/{len(pairs)} | {mean} |")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("dump", help="run kvpress (its own venv)").add_argument("--out", type=Path, required=True)
    sub.add_parser("compare", help="run lcbench (lcbench's venv)").add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    if args.mode == "dump":
        args.out.mkdir(parents=True, exist_ok=True)
        dump(args.out)
        return 0
    return compare(args.dir)


if __name__ == "__main__":
    sys.exit(main())

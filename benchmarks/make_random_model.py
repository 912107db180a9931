"""A random-weight Llama-like model over the synthetic tasks' words, built locally (no download)
and saved with `save_pretrained`, for checking lcbench's GPU path at realistic sizes.

    python benchmarks/make_random_model.py OUT_DIR                 # ~0.5B: hidden 1024, 28 layers, GQA 16/4, head dim 128
    python benchmarks/make_random_model.py OUT_DIR --size tiny     # hidden 64, 2 layers, GQA 4/2, head dim 16 (a CPU dry run)

The tokenizer is lcbench's own word-level one (`lcbench.reference.word_tokenizer`) over every
word the registered tasks and their instruct prompts emit, so the synthetic tasks tokenize
exactly: one word, one token. Quality figures from a random model mean nothing; memory and time
figures are what it is for.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# (hidden, intermediate, layers, query heads, KV heads, head dim)
SIZES: dict[str, tuple[int, int, int, int, int, int]] = {
    "0.5b": (1024, 4096, 28, 16, 4, 128),
    "tiny": (64, 128, 2, 4, 2, 16),
}


def build(size: str, max_positions: int, seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer): a `LlamaForCausalLM` of `size` with random weights, and its word tokenizer."""
    from lcbench.reference.tiny_model import build_tiny_model

    hidden, intermediate, layers, heads, kv_heads, head_dim = SIZES[size]
    shape = dict(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
    )
    model, tokenizer = build_tiny_model("llama", seed, max_positions, size=shape)
    if size != "tiny":
        model = model.bfloat16()  # as a GPU loads it (`dtype: auto`); half the bytes to write
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the model folder to write")
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--max-positions", type=int, default=131072, help="max_position_embeddings (RoPE)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, tokenizer = build(args.size, args.max_positions, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    config = model.config
    summary = {
        "path": str(args.out),
        "size": args.size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "vocab": config.vocab_size,
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Tiny, randomly initialised models over the tasks' vocabulary, built in code with no download.

Tests use them to run the real code paths on two architectures (Llama, and Qwen2 for GQA).
`python -m lcbench.tiny_model DIR` saves one as a model folder any suite can name.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lcbench.word_tokenizer import build_word_tokenizer, task_vocabulary


def build_tiny_model(arch: str = "llama", seed: int = 0, max_positions: int = 8192) -> tuple[Any, Any]:
    """(model, tokenizer): 2 layers, hidden 64, 4 query heads over 2 KV heads (GQA)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_word_tokenizer(task_vocabulary())
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model: Any = LlamaForCausalLM(LlamaConfig(**shape))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    else:
        raise ValueError(f"unknown architecture {arch!r}; use llama or qwen2")
    return model.eval(), tokenizer


def save_tiny_model(path: Path, arch: str = "llama", seed: int = 0) -> Path:
    model, tokenizer = build_tiny_model(arch, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(save_tiny_model(args.out, args.arch, args.seed))


if __name__ == "__main__":
    main()

"""Tiny, randomly initialised models over the tasks' vocabulary, built in code with no download.

Tests use them to run the real code paths on three architectures: Llama, Qwen2 (GQA, biases) and
SmolLM3 with a layer without RoPE, as the shipped look-up model has.
`python -m lcbench.tiny_model DIR` saves one as a model folder any suite can name.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lcbench.word_tokenizer import build_word_tokenizer, prompt_vocabulary, task_vocabulary

ARCHS = ("llama", "qwen2", "smollm3")


def build_tiny_model(arch: str = "llama", seed: int = 0, max_positions: int = 8192) -> tuple[Any, Any]:
    """(model, tokenizer): 2 layers, hidden 64, 4 query heads over 2 KV heads (GQA). The
    word-level tokenizer covers the tasks' words and their instruct prompts', so that every format runs."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, SmolLM3Config, SmolLM3ForCausalLM

    tokenizer = build_word_tokenizer([*task_vocabulary(), *prompt_vocabulary()], split_punctuation=True)
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
    elif arch == "smollm3":
        model = SmolLM3ForCausalLM(SmolLM3Config(**shape, no_rope_layers=[1, 0]))
    else:
        raise ValueError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}")
    return model.eval(), tokenizer


def save_tiny_model(path: Path, arch: str = "llama", seed: int = 0) -> Path:
    model, tokenizer = build_tiny_model(arch, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", choices=ARCHS, default="llama")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(save_tiny_model(args.out, args.arch, args.seed))


if __name__ == "__main__":
    main()

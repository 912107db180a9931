"""Tiny, randomly initialised models over the tasks' vocabulary, built in code with no download.

Tests use them to run the real code paths on three architectures: Llama, Qwen2 (GQA, biases) and
SmolLM3 with a layer without RoPE, as the shipped look-up model has.
`python -m lcbench.reference.tiny_model DIR` saves one as a model folder any suite can name.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lcbench.reference.word_tokenizer import build_word_tokenizer, prompt_vocabulary, task_vocabulary

ARCHS = ("llama", "qwen2", "smollm3")
ROLES = ("system", "user", "assistant")
# Chat templates in the two shapes most instruction models use: ChatML (Qwen, SmolLM) and Llama 3's.
CHAT_TEMPLATES = {
    "chatml": (
        ("<|im_start|>", "<|im_end|>"),
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    ),
    "llama3": (
        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
        " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    ),
}


def with_chat_template(tokenizer: Any, chat: str) -> Any:
    """`tokenizer` with a chat template (`chatml` or `llama3`), its special tokens, and the end of
    a turn as its end of text."""
    specials, template = CHAT_TEMPLATES[chat]
    tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
    tokenizer.chat_template = template
    tokenizer.eos_token = specials[-1]
    return tokenizer


def build_tiny_model(
    arch: str = "llama",
    seed: int = 0,
    max_positions: int = 8192,
    chat: str | None = None,
    tokenizer: Any = None,
    size: dict[str, int] | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer): 2 layers, hidden 64, 4 query heads over 2 KV heads (GQA), or the config
    fields `size` gives (`hidden_size`, `num_hidden_layers`, `head_dim`, ...). The default
    word-level tokenizer covers the tasks' words and their instruct prompts', so that every format
    runs; `chat` gives it a chat template; `tokenizer` replaces it (a subword one, say)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, SmolLM3Config, SmolLM3ForCausalLM

    if tokenizer is None:
        tokenizer = build_word_tokenizer([*task_vocabulary(), *prompt_vocabulary(), *ROLES], split_punctuation=True)
        if chat is not None:
            tokenizer = with_chat_template(tokenizer, chat)
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
    shape.update(size or {})
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


def save_tiny_model(path: Path, arch: str = "llama", seed: int = 0, chat: str | None = None, tokenizer: Any = None) -> Path:
    model, tokenizer = build_tiny_model(arch, seed, chat=chat, tokenizer=tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", choices=ARCHS, default="llama")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat", choices=sorted(CHAT_TEMPLATES), help="give the tokenizer this chat template")
    args = parser.parse_args()
    print(save_tiny_model(args.out, args.arch, args.seed, args.chat))


if __name__ == "__main__":
    main()

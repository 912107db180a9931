"""A word-level Hugging Face tokenizer over a closed vocabulary: one word, one token.

With it, a synthetic task's lengths are exact in tokens and every word is a single symbol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")


def task_vocabulary() -> list[str]:
    """Every word any registered task can emit, sorted: the reference tokenizer's vocabulary."""
    from lcbench.registry import tasks

    words: set[str] = set()
    for cls in tasks().values():
        words.update(cls.vocabulary())
    return sorted(words)


def build_word_tokenizer(words: Iterable[str]) -> Any:
    """A `PreTrainedTokenizerFast` splitting on whitespace; unknown words map to `<unk>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for word in [*SPECIALS, *words]:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")

"""A word-level Hugging Face tokenizer over a closed vocabulary: one word, one token.

With it, a synthetic task's lengths are exact in tokens and every word is a single symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
WORD = re.compile(r"\w+|[^\w\s]")  # a word, or one punctuation mark: how `split_punctuation` splits


def task_vocabulary() -> list[str]:
    """Every word any registered task can emit, sorted: the reference tokenizer's vocabulary."""
    from lcbench.registry import tasks

    words: set[str] = set()
    for cls in tasks().values():
        words.update(cls.vocabulary())
    return sorted(words)


class WordCounter:
    """Counts words and punctuation marks as `split_punctuation` does (ids are meaningless): wrapped
    as `Prompter(WordCounter(), style)`, it measures prompts before a word tokenizer is built. It
    adds no special tokens, so `encode` takes no `add_special_tokens`."""

    def encode(self, text: str) -> list[int]:
        return [0] * len(WORD.findall(text))


def prompt_vocabulary() -> list[str]:
    """Every word of the synthetic tasks' instruct prompts (templates, questions, answer
    prefixes), split from punctuation: what a test model needs beyond `task_vocabulary()` to be
    asked in the instruct and chat formats."""
    from lcbench.prompt import Prompter, Style
    from lcbench.registry import tasks

    words = {str(digit) for digit in range(10)}  # counts in questions (hops, top) are settings
    for cls in tasks().values():
        if not cls.vocabulary():
            continue  # a data-set task: its words are its data's
        task = cls()
        prompter = Prompter(WordCounter(), Style("instruct", task.instruction()))
        for example in task.examples(prompter, 512, 6, seed=0):
            words.update(WORD.findall(example.before + example.after))
    return sorted(words)


def build_word_tokenizer(words: Iterable[str], split_punctuation: bool = False) -> Any:
    """A `PreTrainedTokenizerFast` splitting on whitespace (and, with `split_punctuation`, before
    and after every punctuation mark, as `WORD` does); unknown words map to `<unk>`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for word in [*SPECIALS, *words]:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if split_punctuation:
        mark = pre_tokenizers.Split(Regex(r"[^\w\s]"), behavior="isolated")
        core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), mark])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")

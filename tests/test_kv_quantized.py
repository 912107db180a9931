"""The quantized KV cache: what it stores (bytes counted from the packed data, scales and zero points),
what it keeps in full precision (the residual window), what it answers on the shipped translation
model, and bad settings or a missing backend said plainly."""

from __future__ import annotations

import pytest

from lcbench.cli import main
from lcbench.model import cache_bytes
from lcbench.prompt import Prompter
from lcbench.strategies.full import Full
from lcbench.strategies.kv_quantized import KvQuantized
from lcbench.tasks.mt import Mt

PROMPT = 1024


def per_token_bytes(model) -> int:
    config = model.hf_model.config
    head_dim = config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4  # keys and values, fp32


@pytest.mark.parametrize(
    "settings,stored_share",
    [
        # 4 bits per value plus a float32 scale and zero point per group of 64: 1/8 + 2/64 of fp32's 32 bits.
        ({"backend": "quanto", "nbits": 4, "q_group_size": 64, "residual_length": 128}, 1 / 8 + 2 / 64),
        ({"backend": "quanto", "nbits": 2, "q_group_size": 64, "residual_length": 128}, 1 / 16 + 2 / 64),
        ({"backend": "fp8"}, 1 / 4),  # one byte a value, one scale per tensor
    ],
)
def test_the_cache_holds_the_bytes_its_bit_width_says(reference, settings, stored_share):
    strategy = KvQuantized(**settings)
    cache = strategy.new_cache(reference)
    reference.generate(list(range(5, 5 + PROMPT)), 1, cache=cache)
    full = reference.new_cache()
    reference.generate(list(range(5, 5 + PROMPT)), 1, cache=full)
    assert cache_bytes(full) == PROMPT * per_token_bytes(reference)
    assert cache_bytes(cache) == pytest.approx(stored_share * cache_bytes(full), rel=0.02)


def test_decoding_keeps_at_most_the_residual_window_in_full_precision(reference):
    strategy = KvQuantized(backend="quanto", nbits=4, residual_length=32)
    cache = strategy.new_cache(reference)
    generation = reference.generate(list(range(5, 5 + PROMPT)), 40, cache=cache)
    residual = max(layer.keys.shape[-2] if layer.keys.dim() == 4 else 0 for layer in cache.layers)
    assert 0 < residual < 32 and generation.new_tokens == 40
    quantized = (PROMPT + 40 - residual) * per_token_bytes(reference) * (1 / 8 + 2 / 64)
    assert generation.kv_decode_bytes == pytest.approx(quantized + residual * per_token_bytes(reference), rel=0.02)


def test_four_bits_translate_as_full_attention_does_and_two_bits_lose_some(reference):
    examples = Mt().examples(Prompter(reference.tokenizer), 256, 4, seed=2)
    full = [Full().run(reference, e).text for e in examples]
    four = [KvQuantized(nbits=4, residual_length=16).run(reference, e).text for e in examples]
    two = [KvQuantized(nbits=2, residual_length=16).run(reference, e).text for e in examples]
    assert sum(a == b for a, b in zip(four, full)) >= 3
    chrf = [Mt().score(text, e)["chrf"] for text, e in zip(two, examples)]
    assert sum(chrf) / len(chrf) < 100.0


def test_a_backend_that_is_not_installed_makes_the_cell_unavailable_with_the_install_command(reference, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hqq" else real(name, *a))
    reason = KvQuantized(backend="hqq", nbits=4).unavailable_reason(reference)
    assert reason is not None and "pip install hqq" in reason
    assert KvQuantized(backend="quanto").unavailable_reason(reference) is None


@pytest.mark.parametrize(
    "params,expected",
    [
        ("{backend: quant}", "did you mean `quanto`"),
        ("{nbits: 3}", "nbits for backend quanto must be one of [2, 4]"),
        ("{backend: fp8, nbits: 4}", "nbits for backend fp8 must be one of [8]"),
        ("{q_group_size: 0}", "q_group_size must be >= 1"),
    ],
)
def test_bad_settings_are_refused_by_validate_with_the_fix(params, expected, suite_file, capsys):
    path = suite_file(strategies=f"  - {{name: kv_quantized, params: {params}}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err

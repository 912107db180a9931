"""KV-cache compression: each method's scores and kept positions against a dense reference written
out plainly (the full N x N attention), attention over the kept keys, positions kept on the keys'
device, ratio 0 against `full`, H2O and TOVA decoding 2,000 steps within their budget, and bad
budgets refused by validate."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lcbench.cli import main
from lcbench.kv.compression import CompressedCache, KvCall, layer_budgets
from lcbench.kv.methods import METHODS, build_method, window_attention
from lcbench.prompt import Prompter
from lcbench.strategies.full import Full
from lcbench.strategies.kv_compression import KvCompression
from lcbench.tasks.needle import Needle

HEADS, KV_HEADS, N, D = 4, 2, 96, 16


@pytest.fixture(scope="module")
def qk():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, HEADS, N, D, generator=generator), torch.randn(1, KV_HEADS, N, D, generator=generator)


def dense_attention(query, key):
    """Every query's causal softmax over every key: (1, heads, N, N)."""
    key = key.repeat_interleave(HEADS // KV_HEADS, dim=1)
    logits = query @ key.transpose(-1, -2) / math.sqrt(D)
    return logits.masked_fill(torch.ones(N, N).triu(1).bool(), float("-inf")).softmax(dim=-1)


def per_kv_head(scores):
    return scores.view(1, KV_HEADS, HEADS // KV_HEADS, scores.shape[-1]).mean(dim=2)


def reference_scores(method, query, key, window=16, kernel=5, sinks=4):
    attention = dense_attention(query, key)
    if method == "keynorm":
        return -key.norm(dim=-1)
    if method == "streaming":
        return torch.tensor([N + i if i < sinks else i for i in range(N)], dtype=torch.float32).expand(1, KV_HEADS, N)
    if method == "tova":
        scores = attention[:, :, -1].mean(dim=1, keepdim=True).expand(1, KV_HEADS, N).clone()
        scores[..., -1] = math.inf  # the latest position stays
        return scores
    if method == "snapkv":
        before = attention[:, :, -window:].mean(dim=2)[..., :-window]  # the window's attention to what precedes it
        pooled = per_kv_head(F.avg_pool1d(before, kernel, stride=1, padding=kernel // 2))
        return torch.cat([pooled, torch.full((1, KV_HEADS, window), math.inf)], dim=-1)
    return per_kv_head(attention.sum(dim=2))  # h2o


@pytest.mark.parametrize("method", METHODS)
def test_scores_and_kept_positions_match_a_dense_reference(method, qk):
    query, key = qk
    call = KvCall(build_method(method, window=16, kernel=5), [40], CompressedCache(1))
    scores = call.method.score(query, key, 1 / math.sqrt(D))
    expected = reference_scores(method, query, key)
    assert torch.allclose(scores, expected, atol=1e-5, rtol=1e-4)
    layer = call.cache.layer(0)
    layer.update(key, key.clone())
    call.scores[0] = scores
    call.compress()
    reference = expected.clone()
    if method == "h2o":
        reference[..., -16:] = math.inf  # the recent window stays
    kept = reference[0].topk(40, dim=-1).indices.sort(dim=-1).values
    assert torch.equal(layer.positions, kept)
    assert torch.equal(layer.keys[0], torch.stack([key[0, h, kept[h]] for h in range(KV_HEADS)]))


def test_attention_over_the_kept_keys_equals_dense_attention_restricted_to_them(qk):
    query, key = qk
    value = torch.randn(1, KV_HEADS, N, D, generator=torch.Generator().manual_seed(2))
    call = KvCall(build_method("snapkv", window=16), [40], CompressedCache(1))
    layer = call.cache.layer(0)
    layer.update(key, value)
    call.scores[0] = call.method.score(query, key, 1 / math.sqrt(D))
    call.compress()
    new = torch.randn(1, HEADS, 1, D, generator=torch.Generator().manual_seed(3))
    out = F.scaled_dot_product_attention(new, layer.keys, layer.values, enable_gqa=True)
    for h in range(HEADS):
        kv = h // (HEADS // KV_HEADS)
        kept = layer.positions[kv]
        weights = (new[0, h] @ key[0, kv, kept].T / math.sqrt(D)).softmax(dim=-1)
        assert torch.allclose(out[0, h], weights @ value[0, kv, kept], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_positions_stay_on_the_keys_device(method):
    """On a GPU the kept indices come from scores there; positions left on the CPU would meet them in
    `gather` and raise. No GPU here: the meta device stands in for one (CPU indices included)."""
    meta = torch.device("meta")
    query, key = torch.empty(1, HEADS, N, D, device=meta), torch.empty(1, KV_HEADS, N, D, device=meta)
    call = KvCall(build_method(method, window=16), [40], CompressedCache(1))
    layer = call.cache.layer(0)
    layer.update(key, key)
    assert layer.positions.device == meta
    call.scores[0] = call.method.score(query, key, 1 / math.sqrt(D))
    call.compress()
    assert layer.positions.device == layer.keys.device == meta and layer.kept() == 40
    keys, _ = layer.update(key[:, :, :1], key[:, :, :1])
    call.follow(0, window_attention(query[:, :, :1], keys, 1 / math.sqrt(D), 40), HEADS // KV_HEADS)
    assert layer.positions.device == meta and layer.kept() == (40 if method in ("h2o", "tova") else 41)
    layer.keep(torch.arange(8).expand(KV_HEADS, 8))  # indices from elsewhere
    assert layer.positions.device == layer.keys.device == meta and layer.positions.shape == (KV_HEADS, 8)


def test_pyramid_budgets_taper_and_keep_the_total():
    budgets = layer_budgets(100, 5, "pyramid")
    assert budgets == sorted(budgets, reverse=True) and sum(budgets) == 500 and budgets[0] > 100 > budgets[-1]
    assert layer_budgets(100, 5, "uniform") == [100] * 5


@pytest.mark.parametrize("method", METHODS)
def test_ratio_zero_answers_as_full(method, llama):
    for example in Needle(mode="mixed").examples(Prompter(llama.tokenizer), 160, 3, seed=4):
        kept = KvCompression(method=method, compression_ratio=0.0).run(llama, example)
        assert kept.text == Full().run(llama, example).text
        assert kept.extra["kv_evicted"] == 0


@pytest.mark.parametrize("method", ["h2o", "tova"])
def test_h2o_and_tova_decode_two_thousand_steps_within_their_budget(method, llama):
    example = Needle().examples(Prompter(llama.tokenizer), 96, 1, seed=5)[0]
    example = dataclasses.replace(example, answer_tokens=2000)
    llama.eos_ids, saved = set(), llama.eos_ids  # no early stop: every one of the 2,000 steps runs
    try:
        prediction = KvCompression(method=method, kv_budget=48, window=8).run(llama, example)
    finally:
        llama.eos_ids = saved
    assert prediction.usage.decode_tokens == 2000
    assert prediction.extra["kv_kept_tokens"] == 48 and prediction.extra["kv_evicted"] > 2000
    layers = llama.hf_model.config.num_hidden_layers
    per_token = 2 * layers * llama.hf_model.config.num_key_value_heads * (64 // 4) * 4  # keys and values, fp32
    assert prediction.usage.kv_decode_bytes == 48 * per_token
    assert prediction.usage.kv_peak_bytes < prediction.usage.kv_decode_bytes * 3


@pytest.mark.parametrize(
    "params,expected",
    [
        ("{method: snapk}", "did you mean `snapkv`"),
        ("{compression_ratio: 1.0}", "compression_ratio must be in [0, 1)"),
        ("{kv_budget: 0}", "kv_budget must be a positive number"),
        ("{kernel: 4}", "kernel odd"),
        ("{schedule: pyramids}", "schedule must be uniform or pyramid"),
    ],
)
def test_bad_budgets_are_refused_by_validate_with_the_fix(params, expected, suite_file, capsys):
    path = suite_file(strategies=f"  - {{name: kv_compression, params: {params}}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err

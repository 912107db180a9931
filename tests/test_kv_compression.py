"""KV-cache compression: each method's scores and kept positions against a dense reference written
out plainly (the full N x N attention), attention over the kept keys, positions kept on the keys'
device, ratio 0 against `full`, H2O and TOVA decoding 2,000 steps within their budget, token budgets
honoured alike by every method (and the bytes they promise), the cache's memory (cuts within the
storage, each layer cut inside the prefill, geometric growth), and bad budgets refused by validate."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lcbench.cli import main
from lcbench.kv import compression
from lcbench.kv.compression import GROWTH, CompressedCache, CompressedLayer, KvCall, layer_budgets
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
        prediction = KvCompression(method=method, budget_tokens=48, window=8).run(llama, example)
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
        ("{budget_tokens: 0}", "budget_tokens must be a positive number"),
        ("{kernel: 4}", "kernel odd"),
        ("{schedule: pyramids}", "schedule must be uniform or pyramid"),
        ("{compression_ratio: 0.5, budget_tokens: 48}", "set compression_ratio or budget_tokens, not both"),
    ],
)
def test_bad_budgets_are_refused_by_validate_with_the_fix(params, expected, suite_file, capsys):
    path = suite_file(strategies=f"  - {{name: kv_compression, params: {params}}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def tensor_peak(run):
    """The peak of live CPU tensor bytes allocated while `run()` runs, from torch's profiler memory events."""
    import torch._C._profiler as profiler
    from torch.autograd import (
        ProfilerActivity,
        ProfilerConfig,
        ProfilerState,
        _disable_profiler,
        _enable_profiler,
        _prepare_profiler,
    )

    config = ProfilerConfig(ProfilerState.KINETO, False, True, False, False, False, profiler._ExperimentalConfig())
    _prepare_profiler(config, {ProfilerActivity.CPU})
    _enable_profiler(config, {ProfilerActivity.CPU}, {profiler.RecordScope.USER_SCOPE})
    try:
        run()
    finally:
        events = _disable_profiler().events()
    live = peak = 0
    for _, change in sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"):
        live += change
        peak = max(peak, live)
    return peak


def random_kv(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, KV_HEADS, n, D, generator=generator), torch.randn(1, KV_HEADS, n, D, generator=generator)


def test_cuts_move_kept_entries_forward_within_the_storage_piece_by_piece(monkeypatch):
    """Eviction while decoding: the kept entries move forward inside the layer's own storage, a few
    entries per piece (the pieces read where earlier ones wrote), equal to a plain gather, and the
    storage is neither replaced nor copied whole; tokens appended in between land in its spare room."""
    monkeypatch.setattr(compression, "MOVE_BYTES", 3 * KV_HEADS * D * 4)  # three entries per piece
    keys, values = random_kv(N, 0)
    layer = CompressedLayer()
    layer.update(keys, values)
    layer.keep(torch.arange(N - 8).expand(KV_HEADS, -1), capacity=N - 4)  # the prefill's cut: own storage, 4 spare
    assert layer.capacity() == N - 4 and layer.kept() == N - 8 and keys.equal(random_kv(N, 0)[0])  # the input is untouched
    generator = torch.Generator().manual_seed(1)
    storage = layer.stores[0].data_ptr()
    for step in range(30):
        new_keys, new_values = random_kv(1, 100 + step)
        layer.update(new_keys, new_values)
        before_keys, before_values, before_positions = layer.keys.clone(), layer.values.clone(), layer.positions.clone()
        index = torch.stack([torch.randperm(layer.kept(), generator=generator)[: layer.kept() - 1] for _ in range(KV_HEADS)])
        peak = tensor_peak(lambda index=index: layer.keep(index))
        kept = index.sort(dim=-1).values
        gather = kept[None, :, :, None].expand(1, -1, -1, D)
        assert layer.keys.equal(before_keys.gather(2, gather)) and layer.values.equal(before_values.gather(2, gather))
        assert layer.positions.equal(before_positions.gather(1, kept))
        assert layer.stores[0].data_ptr() == storage and layer.capacity() == N - 4
        assert peak < layer.held_bytes() / 4  # the index, its sort and one piece; a copy of the keys alone is half
    assert layer.positions.equal(layer.positions.sort(dim=-1).values)  # still in position order


def test_the_prefills_cut_needs_only_the_budgets_storage_beside_the_uncut_layer():
    keys, values = random_kv(N, 2)
    layer = CompressedLayer()
    layer.update(keys, values)
    index = torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(h))[:40] for h in range(KV_HEADS)])
    peak = tensor_peak(lambda: layer.keep(index, capacity=44))
    assert layer.capacity() == 44 and layer.kept() == 40
    kept = index.sort(dim=-1).values
    assert layer.keys.equal(keys.gather(2, kept[None, :, :, None].expand(1, -1, -1, D)))
    assert peak <= layer.held_bytes() + layer.stores[2].nbytes + 2 * keys.nbytes * 40 // N + 4096


def test_new_tokens_grow_the_storage_geometrically_not_at_every_step():
    keys, values = random_kv(N, 3)
    layer = CompressedLayer()
    layer.update(keys[:, :, :8], values[:, :, :8])
    capacities = {layer.capacity()}
    for i in range(8, N):
        returned_keys, _ = layer.update(keys[:, :, i : i + 1], values[:, :, i : i + 1])
        assert returned_keys.shape[2] == i + 1  # what attention reads: the live entries only
        capacities.add(layer.capacity())
    assert layer.keys.equal(keys) and layer.values.equal(values) and layer.positions.equal(torch.arange(N).expand(KV_HEADS, N))
    assert len(capacities) <= math.ceil(math.log(N / 8, GROWTH)) + 1


@pytest.mark.parametrize("method", METHODS)
def test_each_layer_is_cut_inside_the_prefill_so_one_layer_at_a_time_holds_more_than_its_budget(method, llama, monkeypatch):
    moments = []
    keep = CompressedLayer.keep

    def spy(self, index, capacity=None):
        if capacity is not None:  # the prefill's cut
            moments.append([layer.kept() for layer in cache.layers])
        keep(self, index, capacity)

    made = CompressedCache.__init__

    def capture(self, layers):
        nonlocal cache
        made(self, layers)
        cache = self

    cache = None
    monkeypatch.setattr(CompressedLayer, "keep", spy)
    monkeypatch.setattr(CompressedCache, "__init__", capture)
    example = Needle().examples(Prompter(llama.tokenizer), 160, 1, seed=6)[0]
    prediction = KvCompression(method=method, budget_tokens=40).run(llama, example)
    layers = llama.hf_model.config.num_hidden_layers
    assert len(moments) == layers
    for index, kept in enumerate(moments):  # layer `index` is cut before the next layer's keys exist
        assert all(k == 40 for k in kept[:index]) and kept[index] > 40 and all(k == 0 for k in kept[index + 1 :])
    per_token = 2 * llama.hf_model.config.num_key_value_heads * 16 * 4
    assert prediction.usage.kv_peak_bytes < layers * moments[-1][-1] * per_token  # less than the whole prefill uncut


@pytest.mark.parametrize("method", METHODS)
def test_a_token_budget_is_honoured_alike_by_every_method_and_promises_its_bytes(method, llama):
    """`budget_tokens: 40` keeps 40 positions per KV head and layer whatever the method: the same as the
    ratio that keeps 40 of the 160 scored (question-aware: the whole prompt is scored), and the bytes
    promised are those 40 positions' keys and values. H2O and TOVA hold them while decoding; the
    others add each decoded token."""
    example = Needle().examples(Prompter(llama.tokenizer), 160, 1, seed=7)[0]
    by_budget = KvCompression(method=method, budget_tokens=40, question_aware=True).run(llama, example)
    by_ratio = KvCompression(method=method, compression_ratio=0.75, question_aware=True).run(llama, example)
    assert by_budget.text == by_ratio.text and by_budget.extra == by_ratio.extra
    config = llama.hf_model.config
    head_dim = config.hidden_size // config.num_attention_heads
    promised = 40 * config.num_hidden_layers * config.num_key_value_heads * 2 * head_dim * 4  # keys and values, fp32
    assert by_budget.extra["kv_promised_bytes"] == promised
    steps = by_budget.usage.decode_tokens - 1  # the first token comes from the prefill
    if method in ("h2o", "tova"):
        assert by_budget.extra["kv_kept_tokens"] == 40 and by_budget.usage.kv_decode_bytes == promised
    else:
        assert by_budget.extra["kv_kept_tokens"] == 40 + steps
        assert by_budget.usage.kv_decode_bytes == promised * (40 + steps) // 40
    assert by_budget.extra["kv_reserved_bytes"] >= by_budget.usage.kv_decode_bytes


def test_either_budget_alone_is_accepted_and_the_ratio_defaults_to_half():
    assert KvCompression().compression_ratio == 0.5 and KvCompression().budget(100) == 50
    by_budget = KvCompression(budget_tokens=48)
    assert by_budget.compression_ratio is None and by_budget.budget(100) == by_budget.budget(10_000) == 48
    with pytest.raises(ValueError, match="not both"):
        KvCompression(compression_ratio=0.5, budget_tokens=48)

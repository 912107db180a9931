"""The model adapter on two tiny architectures (Llama; Qwen2 with GQA), saved and reloaded."""

from __future__ import annotations

import json

import pytest
import torch

from lcbench.errors import UserError
from lcbench.model import Model, register_attention


def test_greedy_generate_matches_transformers(tiny_model):
    prompt = tiny_model.encode("kalo is bemi . what is kalo ?")
    ours = tiny_model.generate(prompt, 12)
    theirs = tiny_model.hf_model.generate(
        torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert ours.text == tiny_model.decode(theirs[0, len(prompt) : len(prompt) + ours.new_tokens].tolist())
    assert ours.prompt_tokens == len(prompt) and ours.new_tokens == 12
    assert ours.prefill_s > 0 and ours.decode_s > 0


def test_generation_stops_at_eos(tiny_model):
    eos = next(iter(tiny_model.eos_ids))
    force_eos = torch.full((tiny_model.hf_model.config.vocab_size,), -1e9)
    force_eos[eos] = 1e9
    handle = tiny_model.hf_model.lm_head.register_forward_hook(lambda module, inputs, out: out + force_eos)
    try:
        generation = tiny_model.generate(tiny_model.encode("what is kalo ?"), 10)
    finally:
        handle.remove()
    assert generation.new_tokens == 1 and generation.text == ""


def test_calls_run_with_a_registered_attention_function(tiny_model):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    calls = []

    def counting(module, query, key, value, attention_mask, **kwargs):
        calls.append(query.shape)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    register_attention("lcbench_counting", counting)
    prompt = tiny_model.encode("kalo is bemi . kalo is tuna . what is kalo ?")
    default = tiny_model.generate(prompt, 6)
    with tiny_model.attention("lcbench_counting"):
        switched = tiny_model.generate(prompt, 6)
    assert switched.text == default.text
    layers = tiny_model.hf_model.config.num_hidden_layers
    assert len(calls) == 6 * layers  # one prefill and five decode steps, every layer
    assert tiny_model.hf_model.config._attn_implementation == "sdpa"  # restored


def test_gqa_heads(tiny_dirs):
    config = json.loads((tiny_dirs["qwen2"] / "config.json").read_text())
    assert config["num_key_value_heads"] < config["num_attention_heads"]


def test_remote_code_is_refused_unless_allowed(tmp_path, tiny_dir):
    folder = tmp_path / "remote"
    folder.mkdir()
    for f in tiny_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="remote code"):
        Model.load(folder, device="cpu")


def test_cuda_asked_without_cuda(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="CUDA is not available"):
        Model.load(tiny_dir, device="cuda:0")


def test_a_word_level_tokenizer_loads_as_saved_on_every_architecture(tiny_model):
    ids = tiny_model.encode("sedu nobo what is sedu ?")
    assert len(ids) == 6 and tiny_model.tokenizer.unk_token_id not in ids

"""The shipped reference models: they load through the user-model path; the translation model
translates and the look-up model answers at their training length on held-out seeds (the suites'
seeds never meet the trainer's), through every strategy."""

from __future__ import annotations

import json

import pytest

from lcbench.prompt import Prompter
from lcbench.reference.models import reference_dir
from lcbench.registry import strategies, tasks
from lcbench.strategies.sparse import Sparse
from lcbench.strategies.triton_fused import TritonFused

TRAINING_LENGTH = 256
ANSWER_FAMILIES = ["needle", "vt", "aggregation", "dialogue", "code"]


@pytest.mark.parametrize("task", ["mt", *ANSWER_FAMILIES])
def test_each_task_has_a_shipped_model_as_safetensors(task):
    folder = reference_dir(task)
    assert folder.name == ("mt" if task == "mt" else "lookup")
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert sum(f.stat().st_size for f in folder.iterdir()) < 20 << 20
    card = json.loads((folder / "training.json").read_text())
    assert card["recipe"]["length"] == TRAINING_LENGTH
    assert task == "mt" or task in card["recipe"]["families"]


def test_translates_at_its_training_length(reference):
    task = tasks()["mt"]()
    examples = task.examples(Prompter(reference.tokenizer), TRAINING_LENGTH, 4, seed=0)
    scores = [task.score(strategies()["full"]().run(reference, e).text, e) for e in examples]
    chrf = sum(s["chrf"] for s in scores) / len(scores)
    doc_acc = sum(s["doc_acc"] for s in scores) / len(scores)
    assert chrf >= 85 and doc_acc >= 0.8, (chrf, doc_acc)


def test_full_attention_degrades_past_the_training_length(reference):
    task = tasks()["mt"]()
    (example,) = task.examples(Prompter(reference.tokenizer), 4 * TRAINING_LENGTH, 1, seed=0)
    assert task.score(strategies()["full"]().run(reference, example).text, example)["chrf"] < 80


def answer_scores(model, family: str, strategy, length: int = TRAINING_LENGTH, n: int = 10) -> float:
    task = tasks()[family](**({"mode": "mixed"} if family == "needle" else {}))
    examples = task.examples(Prompter(model.tokenizer), length, n, seed=0)
    return sum(task.score(strategy.run(model, e).text, e)[task.metrics[0]] for e in examples) / n


@pytest.mark.parametrize("family", ["needle", "dialogue", "code", "vt"])
def test_the_lookup_model_answers_at_its_training_length(lookup, family):
    assert answer_scores(lookup, family, strategies()["full"]()) >= 0.8


def test_the_lookup_model_counts_above_chance(lookup):
    assert answer_scores(lookup, "aggregation", strategies()["full"]()) >= 0.5


# Every strategy on the look-up model's architecture (a RoPE layer, then layers without it).
EVERY_STRATEGY = {
    "full": {},
    "truncation": {"budget": 512},
    "blockwise": {"block_tokens": 512},
    "dp_chunked": {"max_chunk_tokens": 512},
    "recursive": {"chunk_tokens": 512},
    "sparse": {"pattern": "sink_window", "sinks": 4, "window": 512, "tile": 64},
    "triton_fused": {"pattern": "sink_window", "sinks": 4, "window": 512, "tile": 64},
    "kv_compression": {"method": "snapkv", "compression_ratio": 0.0},
    "kv_quantized": {"backend": "quanto", "nbits": 4},
}


def test_every_registered_strategy_is_covered():
    assert set(EVERY_STRATEGY) == set(strategies())


@pytest.mark.parametrize("name", sorted(EVERY_STRATEGY))
def test_every_strategy_that_sees_the_whole_input_answers_as_full_attention(lookup, name):
    example = tasks()["needle"](mode="multikey").examples(Prompter(lookup.tokenizer), TRAINING_LENGTH, 1, seed=3)[0]
    expected = strategies()["full"]().run(lookup, example).text
    assert expected == example.references[0]
    assert strategies()[name](**EVERY_STRATEGY[name]).run(lookup, example).text == expected


def test_chunked_prefill_over_the_bounded_cache_gives_one_pass_tokens(lookup):
    example = tasks()["needle"](mode="multikey").examples(Prompter(lookup.tokenizer), 600, 1, seed=4)[0]
    one_pass = Sparse(pattern="sink_window", sinks=4, window=128, tile=32, prefill_chunk=0).run(lookup, example)
    chunked = Sparse(pattern="sink_window", sinks=4, window=128, tile=32, prefill_chunk=64).run(lookup, example)
    assert chunked.text == one_pass.text


def test_triton_fused_gives_the_tokens_of_sparse_on_the_lookup_model(lookup):
    example = tasks()["dialogue"]().examples(Prompter(lookup.tokenizer), 128, 1, seed=1)[0]
    settings = {"pattern": "sink_window", "window": 40, "sinks": 4, "tile": 32}
    assert TritonFused(**settings).run(lookup, example).text == Sparse(**settings).run(lookup, example).text


def test_a_window_finds_the_needle_only_while_it_is_inside(lookup):
    """Position means what it says on a layer without RoPE too: a window keeps what is near the
    question, and the sinks what opens the context (a needle at depth 0 is the 4 sink tokens)."""
    needle = tasks()["needle"](mode="multikey", absent_share=0.0, depths=(0.0, 0.5, 1.0))
    examples = needle.examples(Prompter(lookup.tokenizer), 1024, 15, seed=5)
    window = Sparse(pattern="sink_window", sinks=4, window=128, tile=32)
    found = {
        depth: [window.run(lookup, e).text == e.references[0] for e in examples if e.metadata["depth"] == depth]
        for depth in (0.0, 0.5, 1.0)
    }
    assert sum(found[1.0]) == sum(found[0.0]) == 5 and sum(found[0.5]) == 0, found


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_model_reference_runs_each_task_on_its_own_shipped_model(isolate, tmp_path, capsys):
    from lcbench.cli import main
    from lcbench.run.records import read_records

    suite = tmp_path / "both.yaml"
    suite.write_text(
        "name: both\nmodel: reference\ndevice: cpu\ncontext_lengths: [256]\nsamples: 2\n"
        "tasks: [{name: mt}, {name: dialogue}]\nstrategies: [{name: full}]\n"
    )
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), *(["--isolate"] if isolate else [])]) == 0, (
        capsys.readouterr()
    )
    (run_dir,) = (tmp_path / "out").iterdir()
    env = json.loads((run_dir / "env.json").read_text())
    assert env["models"] == {"mt": "reference/mt", "dialogue": "reference/lookup"}
    records = list(read_records(run_dir / "records.jsonl"))
    assert {r.task for r in records} == {"mt", "dialogue"} and all(r.status == "ok" for r in records)
    assert all(r.metrics["exact_match"] == 1.0 for r in records if r.task == "dialogue")
    assert all(r.metrics["chrf"] >= 85 for r in records if r.task == "mt")
    assert "mt: `reference/mt`, dialogue: `reference/lookup`" in (run_dir / "report.md").read_text()

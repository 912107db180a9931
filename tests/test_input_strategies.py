"""blockwise, dp_chunked and recursive on every task family with the reference model."""

from __future__ import annotations

import pytest

from lcbench.prompt import Prompter
from lcbench.registry import strategies, tasks
from lcbench.strategies.blockwise import Blockwise
from lcbench.strategies.dp_chunked import DpChunked
from lcbench.strategies.recursive import Recursive

FAMILIES = ["mt", "needle", "vt", "aggregation", "dialogue", "code"]
SMALL = {
    "blockwise": {"block_tokens": 96},
    "dp_chunked": {"max_chunk_tokens": 96},
    "recursive": {"chunk_tokens": 96, "memory_tokens": 40},
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_strategy_on_each_family(name, family, reference):
    example = tasks()[family]().examples(Prompter(reference.tokenizer), 300, 1, seed=0)[0]
    prediction = strategies()[name](**SMALL[name]).run(reference, example)
    usage = prediction.usage
    assert usage.calls >= 2 and usage.prefill_tokens >= example.actual_length - 1
    budget = SMALL[name].get("block_tokens") or SMALL[name].get("max_chunk_tokens")
    if budget:
        assert usage.max_call_tokens <= budget
    else:  # recursive: sources within the chunk budget; memory and forced output on top
        assert prediction.extra["max_source_tokens"] <= 96 and prediction.extra["depth"] >= 1
    assert tasks()[family]().score(prediction.text, example)  # scores without error


def test_recursive_translation_respects_its_memory_bound(reference):
    example = tasks()["mt"]().examples(Prompter(reference.tokenizer), 512, 1, seed=1)[0]
    strategy = Recursive(chunk_tokens=128, memory_tokens=48)
    calls = []
    original = reference.generate

    def spy(prompt, max_new_tokens):
        generation = original(prompt, max_new_tokens)
        calls.append((prompt, generation))
        return generation

    reference.generate = spy
    try:
        prediction = strategy.run(reference, example)
    finally:
        del reference.generate
    query = reference.encode(example.after)
    for i, (prompt, _) in enumerate(calls):
        cut = next(j for j in range(len(prompt)) if prompt[j : j + len(query)] == query)
        assert cut <= 128 - len(query)  # memory + chunk source within the chunk budget
        memory_output = prompt[cut + len(query) :]
        if i:  # the previous call's output is forced as this call's start
            assert memory_output == reference.encode(calls[i - 1][1].text)
    assert prediction.usage.calls == len(calls) and len(calls) >= 512 // 48
    assert prediction.usage.prefill_tokens == sum(len(p) for p, _ in calls)


def test_recursive_costs_more_than_blockwise(reference):
    example = tasks()["mt"]().examples(Prompter(reference.tokenizer), 512, 1, seed=2)[0]
    recursive = Recursive(chunk_tokens=256, memory_tokens=127).run(reference, example).usage
    blockwise = Blockwise(block_tokens=256).run(reference, example).usage
    assert recursive.calls > blockwise.calls and recursive.prefill_tokens > blockwise.prefill_tokens


def test_dp_chunked_cuts_only_at_sentences(reference):
    example = tasks()["mt"]().examples(Prompter(reference.tokenizer), 700, 1, seed=3)[0]
    prediction = DpChunked(max_chunk_tokens=128).run(reference, example)
    assert prediction.extra["cuts_inside_units"] == 0


def test_dp_chunked_says_when_there_are_no_boundaries(reference):
    import dataclasses

    example = tasks()["needle"]().examples(Prompter(reference.tokenizer), 300, 1, seed=0)[0]
    bare = dataclasses.replace(example, boundaries=())
    assert "no unit boundaries" in DpChunked(max_chunk_tokens=96).run(reference, bare).note


@pytest.mark.parametrize(
    "cls, params, message",
    [
        (Blockwise, {"block_tokens": 4}, "block_tokens"),
        (Blockwise, {"block_tokens": 64, "overlap": 64}, "overlap"),
        (Blockwise, {"reduce": "vote"}, "reduce"),
        (DpChunked, {"max_chunk_tokens": 0}, "max_chunk_tokens"),
        (Recursive, {"fan_in": 1}, "fan_in"),
        (Recursive, {"chunk_tokens": 64, "memory_tokens": 60}, "memory_tokens"),
    ],
)
def test_bad_params_are_refused(cls, params, message):
    with pytest.raises(ValueError, match=message):
        cls(**params)


def test_budget_below_the_query_is_a_record_error_not_a_crash(reference):
    from lcbench.run.runner import measure_example

    example = tasks()["needle"]().examples(Prompter(reference.tokenizer), 128, 1, seed=0)[0]
    base = dict(suite="s", task="needle", strategy="b", strategy_name="blockwise", params={}, context_length=128, cell_key="k")
    record = measure_example(base, Blockwise(block_tokens=10), tasks()["needle"](), reference, example, repeats=1)
    assert record.status == "error" and "block_tokens 10 leaves" in record.message


def test_recursive_translates_in_one_call_what_fits(reference):
    example = tasks()["mt"]().examples(Prompter(reference.tokenizer), 200, 1, seed=0)[0]
    prediction = Recursive(chunk_tokens=256, memory_tokens=127).run(reference, example)
    assert prediction.usage.calls == 1 and prediction.extra["depth"] == 0

"""Every registered strategy through the contract; truncation's budget and the query it keeps."""

from __future__ import annotations

import dataclasses

import pytest

from lcbench.prompt import Prompter
from lcbench.registry import strategies
from lcbench.strategies.base import Prediction
from lcbench.strategies.truncation import Truncation
from lcbench.tasks.needle import Needle

STRATEGY_PARAMS = {"truncation": {"budget": 48}}


@pytest.fixture(scope="module")
def example(llama):
    return Needle().examples(Prompter(llama.tokenizer), 96, 1, seed=3)[0]


@pytest.mark.parametrize("name", sorted(strategies()))
def test_every_strategy_runs_and_reports_its_cost(name, tiny_model, example):
    strategy = strategies()[name](**STRATEGY_PARAMS.get(name, {}))
    assert strategy.unavailable_reason(tiny_model) is None
    prediction = strategy.run(tiny_model, example)
    assert isinstance(prediction, Prediction)
    usage = prediction.usage
    assert usage.calls >= 1 and usage.prefill_tokens > 0 and usage.decode_tokens > 0
    assert usage.prefill_s > 0 and usage.max_call_tokens <= example.actual_length


@pytest.mark.parametrize("name", sorted(strategies()))
def test_a_strategy_carries_nothing_from_one_cell_to_the_next(name, llama, example):
    """The runner builds a strategy per cell; one that ran a cell before must answer the next as
    a fresh one does, with its settings untouched."""
    cls = strategies()[name]
    assert dataclasses.is_dataclass(cls) and cls.name == name
    params = STRATEGY_PARAMS.get(name, {})
    used = cls(**params)
    if used.unavailable_reason(llama) is not None:
        pytest.skip(used.unavailable_reason(llama))
    settings = dataclasses.asdict(used)
    other = Needle().examples(Prompter(llama.tokenizer), 128, 1, seed=7)[0]
    used.run(llama, other)
    assert used.run(llama, example).text == cls(**params).run(llama, example).text
    assert dataclasses.asdict(used) == settings


@pytest.mark.parametrize("keep", ["head", "tail", "middle"])
def test_truncation_keeps_the_budget_and_the_query(keep, llama, example):
    strategy = Truncation(budget=40, keep=keep)
    context = llama.encode(example.context)
    query = llama.encode(example.after)
    kept = strategy.kept(context, 40 - len(query))
    assert len(kept) + len(query) == 40
    if keep == "head":
        assert kept == context[: len(kept)]
    elif keep == "tail":
        assert kept == context[-len(kept) :]
    else:
        assert kept[:18] == context[:18] and kept[-18:] == context[-18:]
    prediction = strategy.run(llama, example)
    assert prediction.usage.max_call_tokens == 40


def test_truncation_says_when_nothing_was_cut(llama, example):
    prediction = Truncation(budget=500).run(llama, example)
    assert "nothing was cut" in prediction.note and prediction.usage.max_call_tokens == example.actual_length


@pytest.mark.parametrize("params, message", [({"budget": 0}, "positive"), ({"keep": "left"}, "keep must be")])
def test_truncation_bad_params(params, message):
    with pytest.raises(ValueError, match=message):
        Truncation(**params)


def test_truncation_budget_too_small_for_the_query(llama, example):
    with pytest.raises(ValueError, match="no room"):
        Truncation(budget=3).run(llama, example)

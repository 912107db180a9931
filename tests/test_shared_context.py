"""Shared-context mode: one prefill of a context, several questions asked from its cache in turn.
`full` and `kv_compression` answer each question as a prefill of its own would (greedy, the same
cache), reading the context once; a strategy without a shared path re-reads the input per
question and says so; `lcbench run` writes one record per question with the shared cost, and a
resumed run counts an example whole only once its last question is recorded."""

from __future__ import annotations

import pytest

from lcbench.cli import main
from lcbench.prompt import Prompter
from lcbench.registry import strategies
from lcbench.run.records import read_records
from lcbench.strategies.base import REREAD
from lcbench.strategies.blockwise import Blockwise
from lcbench.strategies.full import Full
from lcbench.strategies.kv_compression import KvCompression
from lcbench.tasks.needle import Needle

STRATEGY_PARAMS = {"truncation": {"budget": 48}}


@pytest.fixture(scope="module")
def shared(lookup):
    """A 512-token context of the look-up model's needle task with four questions about it."""
    return Needle(mode="multikey", questions_per_context=4).example(Prompter(lookup.tokenizer), 512, 0, 1)


def test_needle_asks_its_own_key_then_distractors_stated_in_the_context(shared):
    first, *further = shared.asked()
    assert len(shared.questions) == 4 and first.query == shared.query and first.references == shared.references
    assert [q.id for q in shared.asked()] == [f"{shared.id}-q{j}" for j in range(4)]
    for question in further:
        key, value = question.query.split()[2], question.references[0]
        assert (f" {key} is {value} . " in f" {shared.context} ") != question.metadata["absent"]
        assert question.before + question.context == shared.before + shared.context
    with pytest.raises(ValueError, match="mode multikey or multivalue"):
        Needle(mode="single", questions_per_context=2)
    with pytest.raises(ValueError, match=r"\[1, 16\]"):
        Needle(questions_per_context=17)


def test_full_answers_each_question_as_its_own_prefill_does(lookup, shared):
    together = Full().run_questions(lookup, shared)
    alone = [Full().run(lookup, question) for question in shared.asked()]
    assert [p.text for p in together] == [p.text for p in alone]
    assert {p.text for p in together} != {""}  # the look-up model answers: the cache held the context
    context = len(lookup.encode(shared.context))
    for shared_answer, own in zip(together, alone, strict=True):
        assert shared_answer.usage.prefill_tokens == own.usage.prefill_tokens - context  # the question's tokens alone
        assert shared_answer.extra["context_tokens"] == context
    assert len({p.extra["context_prefill_s"] for p in together}) == 1  # the one prefill, said on every question


@pytest.mark.parametrize("method", ["snapkv", "tova"])
def test_kv_compression_prefills_and_compresses_the_context_once(method, lookup, shared):
    strategy = KvCompression(method=method, compression_ratio=0.5)
    reads: list[int] = []  # the tokens of every forward call

    def count(module, args, kwargs):
        reads.append(kwargs["input_ids"].shape[1])

    hook = lookup.hf_model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        together = strategy.run_questions(lookup, shared)
    finally:
        hook.remove()
    context = len(lookup.encode(shared.context))
    assert len(together) == 4 and sum(n >= context for n in reads) == 1
    assert [p.text for p in together] == [strategy.run(lookup, q).text for q in shared.asked()]
    assert [p.usage.prefill_tokens for p in together] == [len(lookup.encode(q.after)) for q in shared.asked()]


def test_question_aware_compression_and_blockwise_reread_the_input_per_question(lookup, shared):
    for strategy in (Blockwise(block_tokens=128), KvCompression(question_aware=True)):
        answers = strategy.run_questions(lookup, shared)
        assert len(answers) == 4 and all(p.note.startswith(REREAD) for p in answers)
        assert all(p.usage.prefill_tokens >= len(lookup.encode(shared.context)) for p in answers)
        assert all("context_prefill_s" not in p.extra for p in answers)


@pytest.mark.parametrize("name", sorted(strategies()))
def test_every_strategy_answers_each_question_as_a_run_of_its_own(name, llama):
    example = Needle(questions_per_context=2).example(Prompter(llama.tokenizer), 96, 3, 0)
    strategy = strategies()[name](**STRATEGY_PARAMS.get(name, {}))
    if strategy.unavailable_reason(llama) is not None:
        pytest.skip(strategy.unavailable_reason(llama))
    answers = strategy.run_questions(llama, example)
    assert [p.text for p in answers] == [strategy.run(llama, q).text for q in example.asked()]


def test_a_run_writes_a_record_per_question_with_the_shared_cost(suite_file, tmp_path):
    strategies_yaml = (
        "  - name: full\n  - {name: kv_compression, label: snapkv, params: {method: snapkv}}\n"
        "  - {name: blockwise, label: blocks, params: {block_tokens: 32}}\n"
    )
    path = suite_file("tasks: [{name: needle, params: {questions_per_context: 3}}]\ncontext_lengths: [96]\n", strategies_yaml)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    records = list(read_records(run_dir / "records.jsonl"))
    assert len(records) == 3 * 2 * 3 and {r.status for r in records} == {"ok"}
    for record in records:
        assert record.example_id.endswith(f"-q{record.metadata['question']}") and record.extra["questions_per_context"] == 3
        assert record.metrics and record.extra["all_questions_s"] > 0
        if record.strategy == "blocks":
            assert REREAD in record.message and "context_prefill_s" not in record.extra
        else:
            assert record.extra["context_prefill_s"] > 0 and record.prefill_tokens < record.extra["context_tokens"]
    # a run stopped between two questions of an example is not whole: resuming reruns that cell
    records_file = run_dir / "records.jsonl"
    lines = records_file.read_text().splitlines(keepends=True)
    records_file.write_text("".join(lines[:-1]))
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert sorted(r.example_id for r in read_records(records_file)) == sorted(r.example_id for r in records)

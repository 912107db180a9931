"""Data sets from disk: LongBench v1 (and LongBench-E's buckets), LongBench v2 and RULER's prepared
files, read from the shipped sample in their own layouts, asked exactly as their authors ask and
scored as they score."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from lcbench.prompt import Prompter, Style, bos_text
from lcbench.tasks.data_files import DataError
from lcbench.tasks.longbench import BUCKETS, LongBench, data_sets
from lcbench.tasks.longbench_v2 import QUESTION, TEMPLATE, LongBenchV2, extract_answer
from lcbench.tasks.ruler import Ruler, family_of

SAMPLE = ROOT / "data" / "sample"
LONGBENCH = SAMPLE / "longbench"
E_SETS = sorted(name for name, spec in data_sets().items() if spec["e"])


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def instruct(tokenizer, task) -> Prompter:
    return Prompter(tokenizer, Style("instruct", task.instruction(), bos=bos_text(tokenizer)))


def test_longbench_knows_all_sixteen_english_sets_with_their_caps_and_metrics():
    sets = data_sets()
    assert len(sets) == 16 and len(E_SETS) == 13
    assert {n: (s["max_new_tokens"], s["metric"]) for n, s in sets.items() if n in ("hotpotqa", "gov_report", "trec", "lcc")} == {
        "hotpotqa": (32, "qa_f1"),
        "gov_report": (512, "rouge"),
        "trec": (64, "classification"),
        "lcc": (64, "code_sim"),
    }
    assert {n for n, s in sets.items() if not s["chat"]} == {"trec", "triviaqa", "samsum", "lcc", "repobench-p"}
    assert {n for n, s in sets.items() if s["first_line"]} == {"trec", "triviaqa", "samsum"}


@pytest.mark.parametrize("dataset", sorted(data_sets()))
def test_longbench_prompt_is_the_data_sets_own_when_the_record_fits(dataset, bpe):
    task = LongBench(dataset=dataset, data_dir=str(LONGBENCH), longbench_e=False)
    record = lines(LONGBENCH / f"{dataset}.jsonl")[0]
    (example,) = task.examples(instruct(bpe, task), 64 << 10, 1, seed=0)
    prompt = data_sets()[dataset]["prompt"].replace("{question}", "{input}")
    assert example.before + example.context + example.after == prompt.format(context=record["context"], input=record["input"])
    assert example.answer_tokens == data_sets()[dataset]["max_new_tokens"]
    assert example.references == tuple(record["answers"])
    assert list(task.score(record["answers"][0], example)) == [data_sets()[dataset]["metric"]]


@pytest.mark.parametrize("dataset", E_SETS)
def test_longbench_e_cells_take_their_bucket_and_long_records_lose_the_middle_of_their_context(dataset, bpe):
    task = LongBench(dataset=dataset, data_dir=str(LONGBENCH))
    prompter = instruct(bpe, task)
    records = lines(LONGBENCH / f"{dataset}_e.jsonl")
    for (name, low, high, _), length in zip(BUCKETS, (4096, 8192, 16384)):
        examples = task.examples(prompter, length, 10, seed=0)
        expected = [r for r in records if low <= r["length"] < high]
        assert [e.metadata["words"] for e in examples] == [r["length"] for r in expected], name
        for example, record in zip(examples, expected):
            tokens = sum(len(prompter.encode(t)) for t in (example.before, example.context, example.after))
            assert tokens == example.actual_length <= length
            head, tail = task.instruction().split("{context}")
            assert (example.before, example.after) == (head, tail.replace("{question}", record["input"]))  # kept whole
            if example.metadata["cut"]:
                assert record["context"].startswith(example.context[:40]) and record["context"].endswith(example.context[-40:])
                assert example.actual_length >= length - 8  # cut to the cell, not below it


def test_longbench_first_line_rule_stop_and_classes(bpe):
    trec = LongBench(dataset="trec", data_dir=str(LONGBENCH), longbench_e=False)
    (example,) = trec.examples(instruct(bpe, trec), 64 << 10, 1, seed=0)
    answer = example.references[0]
    assert trec.score(example.answer_of(f"\n{answer}\nQuestion: next one"), example) == {"classification": 1.0}
    samsum = LongBench(dataset="samsum", data_dir=str(LONGBENCH), longbench_e=False)
    (summary,) = samsum.examples(instruct(bpe, samsum), 64 << 10, 1, seed=0)
    assert summary.stop == ("\n",) and summary.answer_of("Two friends plan a trip.\nDialogue: more") == "Two friends plan a trip."
    assert not trec.chat_by_default() and LongBench(dataset="hotpotqa").chat_by_default()


def test_longbench_refuses_a_set_without_an_e_file_and_a_file_of_another_set(tmp_path):
    with pytest.raises(ValueError, match="longbench_e: false"):
        LongBench(dataset="musique")
    (tmp_path / "hotpotqa_e.jsonl").write_text((LONGBENCH / "qasper_e.jsonl").read_text())
    problems = LongBench(dataset="hotpotqa", data_dir=str(tmp_path)).data_problems([4096])
    assert any("holds records of qasper, not hotpotqa" in p for p in problems)


def test_longbench_v2_prompt_choices_splits_and_answer_extraction(bpe):
    task = LongBenchV2(data_dir=str(SAMPLE / "longbench_v2"))
    records = json.loads((SAMPLE / "longbench_v2" / "data.json").read_text())
    examples = task.examples(instruct(bpe, task), 64 << 10, 10, seed=0)
    assert len(examples) == len(records)
    first, record = examples[0], records[0]
    question = QUESTION.format(question=record["question"].strip(), **{c: record[f"choice_{c}"].strip() for c in "ABCD"})
    assert first.before + first.context + first.after == TEMPLATE.format(context=record["context"].strip(), question=question)
    assert first.after.endswith('Format your response as follows: "The correct answer is (insert answer here)".')
    assert extract_answer("**The correct answer is (B)**") == "B" and extract_answer("The correct answer is C.") == "C"
    assert extract_answer("I think it is B") is None
    right = f"The correct answer is ({record['answer']})"
    assert task.score(right, first) == {"accuracy": 1.0} and task.score("no idea", first) == {"accuracy": 0.0}
    hard_long = LongBenchV2(data_dir=str(SAMPLE / "longbench_v2"), difficulty=("hard",), lengths=("long",))
    chosen = hard_long.examples(instruct(bpe, hard_long), 64 << 10, 10, seed=0)
    assert chosen and all(e.metadata["difficulty"] == "hard" and e.metadata["length_class"] == "long" for e in chosen)


RULER_TASKS = sorted(p.name for p in (SAMPLE / "ruler" / "4096" / "data").iterdir())


@pytest.mark.parametrize("name", RULER_TASKS)
def test_ruler_sends_input_and_answer_prefix_with_the_context_found_inside(name, bpe):
    task = Ruler(task=name, data_dir=str(SAMPLE / "ruler"))
    prompter = instruct(bpe, task)
    for length in (4096, 8192):
        records = lines(task.file(length))
        examples = task.examples(prompter, length, 10, seed=0)
        assert len(examples) == len(records)
        for example, record in zip(examples, records):
            assert example.before + example.context + example.after == record["input"] + record["answer_prefix"]
            assert len(example.context) > len(example.before) and example.answer_tokens > 0
            assert example.references == tuple(record["outputs"])
            said = " and ".join(o.upper() for o in record["outputs"])
            metric = "string_match_part" if name.startswith("qa") else "string_match_all"
            assert task.score(f" {said}\x07 ", example) == {metric: 1.0}


def test_ruler_families_metrics_and_bad_files(tmp_path):
    assert [family_of(t) for t in ("niah_single_1", "vt", "cwe", "fwe", "qa_2", "variable_tracking")] == [
        "niah",
        "vt",
        "cwe",
        "fwe",
        "qa",
        "vt",
    ]
    with pytest.raises(ValueError, match="set family"):
        Ruler(task="my_task")
    folder = tmp_path / "4096" / "data" / "vt"
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text((LONGBENCH / "hotpotqa.jsonl").read_text())
    (problem, *_) = Ruler(task="vt", data_dir=str(tmp_path)).data_problems([4096])
    assert "missing field outputs, answer_prefix" in problem and "looks like a LongBench v1" in problem
    assert "does not exist" in Ruler(task="vt", data_dir=str(tmp_path)).data_problems([8192])[0]
    ruler = Ruler(task="qa_1", data_dir=str(SAMPLE / "ruler"))
    with pytest.raises(DataError, match="does not read as RULER's qa template"):
        ruler.split("no template here")


def test_a_data_file_is_parsed_once_while_unchanged_and_again_once_it_changes(tmp_path):
    from lcbench.tasks.data_files import read_records

    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n')
    first = read_records(path)
    assert read_records(path) is first
    path.write_text('{"a": 1}\n{"a": 2}\n')
    assert [r["a"] for _, r in read_records(path)] == [1, 2]

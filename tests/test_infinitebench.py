"""InfiniteBench's English tasks: each prompt is InfiniteBench's text for the same record (both template sets),
a long record loses the middle of its context, and each scorer reads known outputs as InfiniteBench's does."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT
from lcbench.prompt import Prompter, Style
from lcbench.tasks.data_files import DataError
from lcbench.tasks.infinitebench import TASKS, InfiniteBench, labels
from lcbench.tasks.infinitebench_metrics import (
    SCORERS,
    choice,
    code_debug,
    kv_retrieval,
    longdialogue,
    math_find,
    qa,
    retrieve_number,
    rouge_lsum,
    summary,
)

SAMPLE = ROOT / "data" / "sample" / "infinitebench"
OPTIONS = "\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}"
# InfiniteBench's src/prompt.py, as written there: yarn_mistral_templates ("open") and gpt4_templates.
THEIRS = {
    "open": {
        "passkey": "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information.\n\n{context}\n\n{input}\n\nThe pass key is",  # noqa: E501
        "number_string": "There is an important info hidden inside a lot of irrelevant text. Find it. I will quiz you about the important information there.\n\n{context}\n\n{input}\n\nThe sequence of digits is",  # noqa: E501
        "kv_retrieval": "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}",
        "longbook_sum_eng": "Summarize the book below.\n\n{context}\n\nSummary:",
        "longbook_choice_eng": "Read the book and answer the question.\n\n{context}\n\nQuestion: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe letter of the correct answer is",  # noqa: E501
        "longbook_qa_eng": "Read the book and answer the question. Be very concise in your answer.\n\n{context}\n\nQuestion: {question}\nAnswer:",  # noqa: E501
        "math_find": "{prefix}\n\n{context}\n\n{input}",
        "code_debug": "Following is a Python code where exactly one of the functions/methods has a deliberate error that makes it crash.\n\n{context}\n\nOptions:\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe correct option is:",  # noqa: E501
        "longdialogue_qa_eng": 'Below is a dialogue script where one random occurrence of a character name is replaced with "$$MASK$$", and you should try to guess who that character is.\n\n{context}\n\nThe name that has been replaced with $$MASK$$ is likely',  # noqa: E501
    },
    "gpt4": {
        "passkey": "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.\n\n{context}\n\n{input}",  # noqa: E501
        "number_string": "There is an important info hidden inside a lot of irrelevant text. Find it. I will quiz you about the important information there.\n\n{context}\n\n{input}",  # noqa: E501
        "kv_retrieval": "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}",
        "longbook_qa_eng": "Read the book below and answer a question.\n\n{context}\n\nQuestion: {question}\n\nBe very concise.",
        "longbook_choice_eng": "Read the book and answer the question.\n\n{context}\n\nQuestion: {question}\n\nOnly one of the following options is correct, tell me the answer using one single letter (A, B, C, or D). Don't say anything else.\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}",  # noqa: E501
        "longbook_sum_eng": "Summarize the following book.\n\n{context}",
        "math_find": "{prefix}\n\n{context}\n\n{input}",
        "code_debug": "There is ONLY ONE function in the large project that is deliberately made to include an obvious error. Please find the function that contains the most obvious errors. I will give you four options to narrow your scope. You can inspect the options and think. Eventually, tell me the answer using one single letter (A, B, C, or D).\n\n{context}\n\nWhich funtion has deliberate error?\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nYou should first find the functions in the options. Repeat their content, inspect through code, and at last give me your answer for the function that has the deliberate and obvious error in A, B, C, or D.",  # noqa: E501
        "longdialogue_qa_eng": 'Below is a dialogue script where one random occurrence of a character name is replaced with "$$MASK$$", and you should try to guess who that character is.\n\nThe dialogue:\n\n---\n\n{context}\n\n---\n\nEnd of dialogue.\n\nWhich character is most likely "$$MASK$$"? Just say the name used by the scriptwriter (before the colon marks) of one single character and nothing else.',  # noqa: E501
    },
}


def create_prompt(record: dict, task: str, templates: str) -> str:
    """InfiniteBench's eval_utils.create_prompt for the English tasks."""
    template = THEIRS[templates][task]
    options = {f"OPTION_{c}": o for c, o in zip("ABCD", record.get("options") or [])}
    if task == "math_find":
        target = re.findall(r"The .+ of", record["input"])[0].lower()[:-3]
        prefix = f"What is {target} in the following list?"
        return template.format(prefix=prefix, context=record["context"], input=record["input"])
    return template.format(context=record["context"], input=record["input"], question=record["input"], **options)


def records(task: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLE / f"{task}.jsonl").read_text().splitlines()]


def instruct(tokenizer, task: InfiniteBench) -> Prompter:
    return Prompter(tokenizer, Style("instruct", task.instruction()))


@pytest.mark.parametrize("templates", ["open", "gpt4"])
@pytest.mark.parametrize("name", TASKS)
def test_the_prompt_is_infinitebenchs_text_for_each_sample_record(name, templates, bpe):
    task = InfiniteBench(task=name, templates=templates, data_dir=str(SAMPLE))
    assert task.data_problems([32768]) == []
    examples = task.examples(instruct(bpe, task), 64 << 10, 10, seed=0)
    assert len(examples) == len(records(name)) == 2
    for example, record in zip(examples, records(name)):
        assert example.before + example.context + example.after == create_prompt(record, name, templates)
        assert not example.metadata["cut"] and example.context == record["context"]
        assert example.id == f"{name}-{record['id']}" and example.references == labels(name, record)


def test_an_answer_prefix_opens_the_assistants_turn_in_chat(bpe):
    task = InfiniteBench(task="passkey", data_dir=str(SAMPLE))
    (example, _) = task.examples(Prompter(bpe, Style("chat", task.instruction())), 64 << 10, 2, seed=0)
    assert example.after.endswith("What is the pass key?\n<|im_end|>\n<|im_start|>assistant\nThe pass key is")
    assert example.answer_tokens == 6 and task.label() == "infinitebench/passkey"


def test_a_record_longer_than_the_cell_loses_the_middle_of_its_context(bpe):
    task = InfiniteBench(task="passkey", data_dir=str(SAMPLE))
    prompter = instruct(bpe, task)
    record = records("passkey")[0]
    (example, _) = task.examples(prompter, 256, 2, seed=0)
    assert example.metadata["cut"] and len(prompter.encode(record["context"])) > 256
    tokens = sum(len(prompter.encode(t)) for t in (example.before, example.context, example.after))
    assert tokens == example.actual_length <= 256 and example.actual_length >= 256 - 8
    assert record["context"].startswith(example.context[:40]) and record["context"].endswith(example.context[-40:])
    assert example.after.endswith("What is the pass key?\n\nThe pass key is")  # the question and prefix stay whole


def test_labels_are_infinitebenchs_get_answer():
    book = {"context": "c", "input": "q", "options": ["w", "x", "y", "z"]}
    assert labels("longbook_choice_eng", {**book, "answer": ["y"]}) == ("y", "C")
    assert labels("code_debug", {**book, "answer": "x"}) == ("x", "B")
    assert labels("code_debug", {**book, "answer": ["x", "D"]}) == ("x", "D")  # text and letter given: taken as given
    with pytest.raises(DataError, match="not one of the options"):
        labels("longbook_choice_eng", {**book, "answer": ["v"]})
    assert labels("math_find", {**book, "answer": [88]}) == ("88",) and labels("math_find", {**book, "answer": 44.5}) == ("44.5",)
    assert labels("math_find", {**book, "answer": ["7"]}) == ("7",)  # a string that reads as a number
    with pytest.raises(DataError, match="must be a number"):
        labels("math_find", {**book, "answer": ["seven"]})
    assert labels("longdialogue_qa_eng", {**book, "answer": ["ACE", "ACE ROTHSTEIN"]}) == ("ACE", "ACE ROTHSTEIN")


def test_bad_records_and_unknown_tasks_are_named(tmp_path):
    with pytest.raises(ValueError, match="did you mean `passkey`"):
        InfiniteBench(task="paskey")
    with pytest.raises(ValueError, match="templates must be open"):
        InfiniteBench(templates="claude2")
    good = records("longbook_choice_eng")[0]
    lines = [good, {**good, "answer": ["nowhere"]}, {**good, "options": good["options"][:3]}]
    (tmp_path / "longbook_choice_eng.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    problems = InfiniteBench(task="longbook_choice_eng", data_dir=str(tmp_path)).data_problems()
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in problems] == ["2", "3"]
    assert "not one of the options" in problems[0] and "needs four options, got 3" in problems[1]
    unasked = {"context": "[1, 2]", "input": "Which is largest?", "answer": [2]}
    (tmp_path / "math_find.jsonl").write_text(json.dumps(unasked) + "\n")
    (problem,) = InfiniteBench(task="math_find", data_dir=str(tmp_path)).data_problems()
    assert "names no target" in problem
    (tmp_path / "passkey.jsonl").write_text((ROOT / "data" / "sample" / "longbench" / "hotpotqa.jsonl").read_text())
    problem = InfiniteBench(task="passkey", data_dir=str(tmp_path)).data_problems()[0]
    assert "missing field answer" in problem and "looks like a LongBench v1" in problem


def test_retrieval_scorers_on_known_outputs():
    assert retrieve_number("The pass key is 71432.", ["71432"]) == 1.0
    assert retrieve_number("71432 is it; 71432", ["71432"]) == 1.0
    assert retrieve_number("It is 7143 2", ["71432"]) == 0.0  # the first run of digits only
    assert retrieve_number("key: 071432", ["71432"]) == 0.0 and retrieve_number("", ["1"]) == 0.0
    value = "c14cb8ba-002b-43be-bdc7-8a83f0fe1ac8"
    assert kv_retrieval(f'The value associated with the specified key is: "{value}"', [value]) == 1.0
    assert kv_retrieval(f"{{{value}}}.", [value]) == 1.0  # braces and dots are spaces
    assert kv_retrieval(f"({value})", [value]) == 0.0  # parentheses are not
    assert kv_retrieval(value[:-1], [value]) == 0.0


def test_dialogue_and_math_scorers_on_known_outputs():
    assert longdialogue("Ace Rothstein", ["ACE", "ACE ROTHSTEIN"]) == 1.0  # upper-cased words
    assert longdialogue("Ace Rothstein", ["ACE ROTHSTEIN", "ACE"]) == 0.0  # only the first label, never two words
    assert longdialogue("Nicky Santoro", ["ACE"]) == 0.0
    assert math_find("88", ["88"]) == 1.0 and math_find("It is 88, not 12", ["88"]) == 1.0
    assert math_find("12 then 88", ["88"]) == 0.0 and math_find("none", ["88"]) == 0.0
    assert math_find("88.5", ["88"]) == 0.0  # a decimal against an integer label
    assert math_find("The median is 44.5", ["44.5"]) == 1.0 and math_find("44", ["44.0"]) == 1.0  # float labels: as floats
    assert math_find("-7", ["7"]) == 1.0  # InfiniteBench's pattern has no sign


def test_choice_and_code_debug_scorers_on_known_outputs():
    right = ("Walking Georgie", "A")
    assert choice("A. Walking Georgie", right) == 1.0 and choice("B. Hall Farm", right) == 0.0
    assert choice("Walking Georgie", right) == 1.0  # the output is the option
    assert choice("The answer is: A", right) == 1.0 and choice("I think the answer is B", right) == 0.0
    assert choice("the answer is", right) == 0.0  # ends with the prefix
    assert choice("so it must be A, surely", right) == 1.0  # the first word that is a letter
    assert choice("it is AB", right) == 0.0 and choice("", right) == 0.0  # "AB" is a part of "ABCD": read, and wrong
    bug = ("load_rivers", "C")
    assert code_debug("C. load_rivers", bug) == 1.0 and code_debug("C: it is that one", bug) == 1.0
    assert code_debug("The correct option is: C", bug) == 1.0  # "is:" is found first
    assert code_debug("The answer is: load_rivers", bug) == 1.0 and code_debug("The answer is: B", bug) == 0.0
    assert code_debug("load_rivers has the error", bug) == 0.0  # the name alone, with no prefix before it
    assert code_debug("The answer is:", bug) == 0.0


def test_qa_and_summary_scorers_on_known_outputs():
    assert qa("Fighting in World War 1.", ["fighting in world war 1"]) == 1.0
    assert qa("the war", ["fighting in world war 1", "a war"]) == 1.0  # the best answer, articles dropped
    assert qa("stockings", ["knitting stockings"]) == pytest.approx(2 / 3)
    # summary-level LCS over newline-split sentences: "the cat" from the first, "ran" from the second; m=6, n=3
    assert rouge_lsum("the cat ran", "the cat sat\nthe dog ran") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert rouge_lsum("The Cat, sat!", "the cat sat") == 1.0  # lower case, a-z0-9 runs as tokens
    assert rouge_lsum("", "the cat sat") == 0.0 and rouge_lsum("...", "the cat sat") == 0.0
    assert summary("the dog ran", ["the cat sat", "a dog ran over"]) == pytest.approx(rouge_lsum("the dog ran", "a dog ran over"))


@pytest.mark.parametrize("name", TASKS)
def test_each_task_scores_its_own_sample_answer_right_and_a_wrong_one_below_it(name, bpe):
    task = InfiniteBench(task=name, data_dir=str(SAMPLE))
    (example, _) = task.examples(instruct(bpe, task), 64 << 10, 2, seed=0)
    metric, _ = SCORERS[name]
    right = example.references[0] if name not in ("longbook_choice_eng", "code_debug") else f"{example.references[1]}."
    assert task.score(right, example) == {metric: 1.0}
    assert task.score("Nothing here.", example)[metric] < 1.0

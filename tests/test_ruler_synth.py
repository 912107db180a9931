"""`ruler_synth`: RULER's synthetic tasks generated for a subword tokenizer, one test per family.
Each prompt is RULER's template, answer prefix and needle sentence for the same settings (written
out here as RULER's scripts render them), fits the requested length less RULER's generation
budget, is the same for the same seed and index, and scores with RULER's string matches."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from lcbench.prompt import Prompter, Style
from lcbench.tasks.base import LengthError
from lcbench.tasks.data_files import DataError
from lcbench.tasks.ruler_haystacks import DEPTHS
from lcbench.tasks.ruler_synth import SETTINGS, RulerSynth

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = re.compile(r"One of the special magic (numbers|uuids) for (\S+) is: (\S+)\.")
WORD_KEY = r"[a-z]+-[a-z]+"
NUMBER = r"\d{7}"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
# RULER's niah template and answer prefix, as niah.py renders them for one value asked (singular) and for several
NIAH_ONE = (
    "A special magic {type} is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type} afterwards.\n{context}\nWhat is the special magic {type} for {query} "
    "mentioned in the provided text?",
    " The special magic {type} for {query} mentioned in the provided text is",
)
NIAH_MANY = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards.\n{context}\nWhat are all the special magic numbers for {query} "
    "mentioned in the provided text?",
    " The special magic numbers for {query} mentioned in the provided text are",
)
VT = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above.",
    " Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assigned the "
    "value {query}, they are: ",
)
CWE = (
    "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that "
    "appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?",
    " Answer: The top 10 words that appear most often in the list are:",
)
FWE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
    "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
    "What are the three most frequently appeared words in the above coded text?",
    " Answer: According to the coded text above, the three most frequently appeared words are:",
)
QA = (
    "Answer the question based on the given documents. Only give me the answer and do not output any other words."
    "\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. "
    "Only give me the answer and do not output any other words.\n\nQuestion: {query}",
    " Answer:",
)
ESSAY = (
    "Good tools fade into the work. A hammer is noticed only when it slips! Who thinks of the handle while the "
    "nail goes in? Nobody does. The same is true of a well-made program: it gets out of the way. "
)


@pytest.fixture
def essays(tmp_path):
    (tmp_path / "essays").mkdir()
    (tmp_path / "essays" / "a.txt").write_text(ESSAY * 20)
    return str(tmp_path / "essays")


def build(bpe, task: RulerSynth, length: int, seed: int = 0, index: int = 0):
    """An example in the instruct format, whose prompt is RULER's with the answer prefix on its own line."""
    prompter = Prompter(bpe, Style("instruct", task.instruction()))
    example = task.example(prompter, length, seed, index)
    assert example.actual_length == sum(len(prompter.encode(p)) for p in (example.before, example.context, example.after))
    assert example.answer_tokens == {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}[task.settings.family]
    return example


def prompt(example) -> str:
    return example.before + example.context + example.after


def ruler(texts: tuple[str, str], **values: str) -> str:
    return texts[0].format(**values) + "\n" + texts[1].format(**values)


def fits(example, slack: int) -> bool:
    """Within `slack` tokens under the length less what RULER leaves the model to generate."""
    room = example.requested_length - example.answer_tokens
    return room - slack <= example.actual_length <= room


def same_by_seed_and_index(bpe, task: RulerSynth, length: int) -> None:
    prompter = Prompter(bpe, Style("instruct", task.instruction()))
    first = task.examples(prompter, length, 2, seed=3)
    assert first == task.examples(prompter, length, 2, seed=3)
    assert task.example(prompter, length, 3, 1) == first[1]
    assert first[0].context != first[1].context != task.example(prompter, length, 4, 1).context


SINGLES = [("niah_single_1", NUMBER, "noise"), ("niah_single_2", NUMBER, "essay"), ("niah_single_3", UUID, "essay")]


@pytest.mark.parametrize(("name", "value", "haystack"), SINGLES)
def test_niah_single_hides_one_needle_in_noise_or_essay(name, value, haystack, bpe, essays):
    task = RulerSynth(task=name, essay_dir=essays)
    example = build(bpe, task, 1024)
    kind = "uuid" if value == UUID else "number"
    sentence = "One of the special magic {}s for {} is: {}."
    (needle,) = NEEDLE.findall(example.context)
    assert needle[0] == kind + "s" and re.fullmatch(WORD_KEY, needle[1]) and re.fullmatch(value, needle[2])
    assert sentence.format(kind, needle[1], needle[2]) in example.context
    assert prompt(example) == ruler(NIAH_ONE, type=kind, context=example.context, query=needle[1])
    assert example.references == (needle[2],)
    if haystack == "noise":
        assert set(example.context.split("\n")) == {NOISE, sentence.format(kind, needle[1], needle[2])}
    else:
        essay = " ".join(example.context.replace(sentence.format(kind, needle[1], needle[2]), "").split())
        assert essay == " ".join(ESSAY.split() * 20)[: len(essay)]  # the essay's first words, in order
    assert fits(example, len(bpe.encode("\n" + NOISE)) if haystack == "noise" else 6)
    assert isinstance(example.metadata["depth"], float)
    same_by_seed_and_index(bpe, task, 1024)
    assert task.score(f"The special magic {kind} is {needle[2].upper()}.", example) == {"string_match_all": 1.0}
    assert task.score("I don't know", example) == {"string_match_all": 0.0}


MULTIKEYS = [("niah_multikey_1", WORD_KEY), ("niah_multikey_2", WORD_KEY), ("niah_multikey_3", UUID)]


@pytest.mark.parametrize(("name", "key"), MULTIKEYS)
def test_niah_multikey_asks_one_of_many_keys(name, key, bpe, essays):
    task = RulerSynth(task=name, essay_dir=essays)
    example = build(bpe, task, 1024)
    needles = NEEDLE.findall(example.context)
    keys = [k for _, k, _ in needles]
    assert len(keys) == len(set(keys)) and all(re.fullmatch(key, k) for k in keys)
    (asked,) = [(k, v) for _, k, v in needles if v in example.references]
    kind = "uuid" if name.endswith("3") else "number"
    assert prompt(example) == ruler(NIAH_ONE, type=kind, context=example.context, query=asked[0])
    if name == "niah_multikey_1":  # four needles in the essay, one asked
        assert len(needles) == 4
    else:  # the haystack is needles: every line is one, with its own key
        assert len(needles) == len(example.context.split("\n")) > 4
    assert fits(example, 6 if name == "niah_multikey_1" else 64)
    same_by_seed_and_index(bpe, task, 1024)
    assert task.score(f"{asked[1]}", example) == {"string_match_all": 1.0}


def test_niah_multivalue_asks_four_values_of_one_key(bpe, essays):
    task = RulerSynth(task="niah_multivalue", essay_dir=essays)
    example = build(bpe, task, 1024)
    needles = NEEDLE.findall(example.context)
    assert len(needles) == 4 and len({k for _, k, _ in needles}) == 1
    assert sorted(example.references) == sorted(v for _, _, v in needles)
    assert prompt(example) == ruler(NIAH_MANY, context=example.context, query=needles[0][1])
    assert list(DEPTHS) == np.round(np.linspace(0, 100, num=40)).astype(int).tolist()  # where RULER puts essay needles
    assert fits(example, 6)
    same_by_seed_and_index(bpe, task, 1024)
    said = f"{example.references[0]}, {example.references[2]} and 1234567"
    assert task.score(said, example) == {"string_match_all": 0.5}


def test_niah_multiquery_asks_four_keys_at_once(bpe, essays):
    task = RulerSynth(task="niah_multiquery", essay_dir=essays)
    example = build(bpe, task, 1024)
    value_of = {k: v for _, k, v in NEEDLE.findall(example.context)}
    query = re.search(r"numbers for (.*) mentioned in the provided text\?", example.after).group(1)
    keys = re.fullmatch(r"(\S+), (\S+), (\S+), and (\S+)", query).groups()
    assert sorted(keys) == sorted(value_of) and example.references == tuple(value_of[k] for k in keys)
    assert prompt(example) == ruler(NIAH_MANY, context=example.context, query=query)
    assert fits(example, 6)
    assert task.score("\n".join(example.references), example) == {"string_match_all": 1.0}


def test_vt_traces_a_chain_through_noise_after_a_worked_example(bpe):
    task = RulerSynth(task="vt")
    example = build(bpe, task, 1024)
    lines = example.context.split("\n")
    chain = [line for line in lines if line.startswith("VAR ")]
    assert set(lines) - set(chain) == {NOISE}
    value = re.fullmatch(r"VAR ([A-Z]{5}) = (\d{5})", chain[0]).group(2)
    names = [re.fullmatch(r"VAR ([A-Z]{5}) = .*", line).group(1) for line in chain]
    assert chain[1:] == [f"VAR {b} = VAR {a} " for a, b in zip(names, names[1:])] and example.references == tuple(names)
    # RULER puts one worked example (three-letter names, 500 tokens at most) before the task's template
    shot, rest = example.before.split("\n\n" + VT[0].split("{context}")[0])
    assert rest == "" and shot.startswith(VT[0].split("{context}")[0])
    answer = re.search(r"assigned the value (\d{5}), they are:  ([A-Z]{3}(?: [A-Z]{3}){4})$", shot)
    assert answer and answer.group(1) != value and len(bpe.encode(shot.rsplit(":", 1)[0] + ":")) <= 500
    assert prompt(example) == shot + "\n\n" + ruler(VT, context=example.context, query=value)
    assert fits(example, 32)
    same_by_seed_and_index(bpe, task, 1024)
    assert task.score(" ".join(names[:3]).lower(), example) == {"string_match_all": 0.6}


@pytest.mark.parametrize(("length", "common", "uncommon", "shot_words"), [(1024, 6, 1, 20), (4096, 30, 3, 40)])
def test_cwe_lists_ten_common_words_after_a_worked_example(length, common, uncommon, shot_words, bpe):
    task = RulerSynth(task="cwe")
    example = build(bpe, task, length)
    entries = re.findall(r"(\d+)\. (\S+)", example.context)
    assert [int(i) for i, _ in entries] == list(range(1, len(entries) + 1))
    counts = Counter(word for _, word in entries)
    assert {w: counts[w] for w in example.references} == dict.fromkeys(example.references, common)
    assert set(counts.values()) == {common, uncommon} and len(example.references) == 10
    # one worked example first, RULER's template and answer prefix with its answer, then the task
    shot = example.before.removesuffix(CWE[0].split("{context}")[0])
    worked = re.escape(CWE[0]).replace(r"\{context\}", "(.*)") + re.escape(CWE[1]) + " (.*)\n"
    shot_list, shot_answer = re.fullmatch(worked, shot).groups()
    shot_counts = Counter(re.findall(r"\d+\. (\S+)", shot_list))
    answer = re.findall(r"\d+\. (\S+)", shot_answer)
    assert len(shot_counts) == shot_words and len(answer) == 10
    assert set(answer) == {w for w, c in shot_counts.items() if c == max(shot_counts.values())}
    assert prompt(example) == shot + ruler(CWE, context=example.context)
    assert fits(example, 24)
    same_by_seed_and_index(bpe, task, 1024)
    said = "1. " + " 2. ".join(example.references[:7])
    assert task.score(said, example) == {"string_match_all": 0.7}


def test_fwe_asks_the_three_most_frequent_coded_words(bpe):
    task = RulerSynth(task="fwe")
    example = build(bpe, task, 1024)
    counts = Counter(example.context.split(" "))
    assert len(counts) <= (1024 - 50) // 50 and all(re.fullmatch(r"[a-z]{6}|\.\.\.", w) for w in counts)
    ranked = [w for w, _ in counts.most_common()]
    assert ranked[0] == "..." and tuple(ranked[1:4]) == example.references
    assert counts[ranked[1]] > counts[ranked[2]] > counts[ranked[3]] > counts[ranked[4]]
    assert prompt(example) == ruler(FWE, context=example.context)
    assert fits(example, 8)
    same_by_seed_and_index(bpe, task, 1024)
    assert task.score(" ".join(example.references[::-1]).upper(), example) == {"string_match_all": 1.0}


def squad_file(folder) -> None:
    """SQuAD v2.0's layout: 10 articles of 5 paragraphs, each with one answerable question and one not."""

    def paragraph(a: int, p: int) -> dict:
        answerable = {"question": f"Which grain does Place{a}x{p} grind?", "answers": [{"text": f"{10 * a + p}"}]}
        qas = [{**answerable, "is_impossible": False}, {"question": "Why?", "answers": [], "is_impossible": True}]
        text = f"The town of Place{a}x{p} lies on river {a}. Its mill grinds grain {10 * a + p}, and its bridge is old."
        return {"context": text, "qas": qas}

    articles = [{"title": f"Article {a}", "paragraphs": [paragraph(a, p) for p in range(5)]} for a in range(10)]
    (folder / "squad.json").write_text(json.dumps({"version": "v2.0", "data": articles}))


def hotpotqa_file(folder) -> None:
    """HotpotQA's layout: 8 questions with their 10 paragraphs each, `[title, sentences]`."""
    items = []
    for q in range(8):
        context = [[f"Title {q}-{d}", [f"Fact {d} of question {q} is short. ", "It has two sentences."]] for d in range(10)]
        items.append({"question": f"What joins question {q}?", "answer": f"bridge{q}", "context": context})
    (folder / "hotpotqa.json").write_text(json.dumps(items))


@pytest.mark.parametrize("name", ["qa_1", "qa_2"])
def test_qa_finds_the_answer_among_distractor_documents(name, bpe, tmp_path):
    task = RulerSynth(task=name, data_dir=str(tmp_path))
    (problem,) = task.data_problems([1024])
    wanted = "squad.json" if name == "qa_1" else "hotpotqa.json"
    assert wanted in problem and "does not exist" in problem and "data_dir" in problem
    with pytest.raises(DataError, match=wanted):
        task.example(Prompter(bpe, Style("instruct", task.instruction())), 1024, 0, 0)
    (squad_file if name == "qa_1" else hotpotqa_file)(tmp_path)
    assert task.data_problems([1024]) == []
    example = build(bpe, task, 1024, index=1)
    documents = example.context.split("\n\n")
    assert all(d.startswith(f"Document {i}:\n") for i, d in enumerate(documents, 1))
    question = "Which grain does Place0x1 grind?" if name == "qa_1" else "What joins question 1?"
    assert prompt(example) == ruler(QA, context=example.context, query=question)
    if name == "qa_1":  # the question's own paragraph, then its article's others, then any
        assert example.references == ("1",) and "Place0x1 lies" in example.context
        assert all(f"Place0x{p} lies" in example.context for p in range(5)) and len(documents) > 5
    else:  # its ten paragraphs, then others'
        assert example.references == ("bridge1",) and all(f"Title 1-{d}\n" in example.context for d in range(10))
        assert len(documents) > 10
    assert fits(example, 40)
    same_by_seed_and_index(bpe, task, 1024)
    assert task.score(f"Answer: {example.references[0]}", example) == {"string_match_part": 1.0}
    assert task.score("no idea", example) == {"string_match_part": 0.0}


def test_missing_essays_unknown_tasks_and_short_lengths_are_named(bpe, tmp_path):
    assert sorted(SETTINGS) == sorted(
        ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3"]
        + ["niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa_1", "qa_2"]
    )
    (problem,) = RulerSynth(task="niah_single_2").data_problems()
    assert "`essay_dir`" in problem and ".txt" in problem
    with pytest.raises(DataError, match="essay_dir"):
        build(bpe, RulerSynth(task="niah_multivalue"), 1024)
    (problem,) = RulerSynth(task="niah_single_2", essay_dir=str(tmp_path)).data_problems()
    assert "holds no text" in problem
    assert RulerSynth(task="niah_single_1").data_problems() == []
    with pytest.raises(ValueError, match="did you mean `niah_single_1`"):
        RulerSynth(task="niah_single1")
    with pytest.raises(LengthError, match="too short for ruler_synth vt: the minimum is"):
        build(bpe, RulerSynth(task="vt"), 512)
    assert RulerSynth(task="qa_1").label() == "ruler_synth/qa_1"

"""Prompt formats: chat templates rendered as the tokenizer's own, lengths exact in every format on
word-level and subword tokenizers, every strategy's calls wrapped in the whole prompt, answers
extracted before scoring, and bad prompt settings refused before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lcbench.cli import main
from lcbench.config.suite import Suite
from lcbench.model import Model, load_tokenizer
from lcbench.prompt import SLOT, Frame, Prompter, Style, resolve_format
from lcbench.registry import strategy_class, tasks
from lcbench.run.records import PROMPTS
from lcbench.run.runner import prompter_for
from lcbench.tasks.base import Example

SYNTHETIC = sorted(name for name, cls in tasks().items() if cls.vocabulary())
FORMATS = ["plain", "instruct", "chat"]


def suite(fmt: str, task: str = "needle", **prompt: str) -> Suite:
    return Suite.model_validate(
        {
            "name": "t",
            "model": "user-model",
            "context_lengths": [512],
            "tasks": [{"name": task, "prompt": {"format": fmt, **prompt}}],
            "strategies": [{"name": "full"}],
        }
    )


def build(tokenizer, fmt: str, task: str, length: int, n: int = 3, **prompt: str) -> list[Example]:
    s = suite(fmt, task, **prompt)
    instance = tasks()[task]()
    return instance.examples(prompter_for(s, s.tasks[0], instance, tokenizer), length, n, seed=0)


@pytest.fixture(scope="module")
def chatml(chat_dirs):
    return load_tokenizer(chat_dirs["chatml"])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("task", SYNTHETIC)
@pytest.mark.parametrize("kind", ["words", "bpe"])
def test_prompt_lengths_are_exact_in_every_format(kind, task, fmt, chat_dirs):
    tokenizer = load_tokenizer(chat_dirs["chatml" if kind == "words" else "bpe"])
    encode = Prompter(tokenizer).encode
    for length in (512, 1000):
        for example in build(tokenizer, fmt, task, length):
            tokens = len(encode(example.before)) + len(encode(example.context)) + len(encode(example.after))
            assert tokens == length == example.actual_length, (kind, task, fmt, length)
            assert example.format == fmt


@pytest.mark.parametrize("chat", ["chatml", "llama3"])
def test_chat_format_is_the_tokenizers_own_template_with_the_answer_prefix_opening_the_reply(chat, chat_dirs):
    tokenizer = load_tokenizer(chat_dirs[chat])
    example = build(tokenizer, "chat", "needle", 400, n=1, system="Answer briefly.")[0]
    key = example.query.split()[2]
    user = tasks()["needle"].template.format(context=example.context, question=example_question(key))
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": user}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert example.before + example.context + example.after == rendered + example.frame.answer_prefix
    assert example.frame.answer_prefix == f"The special magic value for {key} mentioned in the provided text is"
    opening = "<|im_start|>system" if chat == "chatml" else "<|begin_of_text|><|start_header_id|>system"
    assert example.before.startswith(opening)


def example_question(key: str) -> str:
    return (
        f"What is the special magic value for {key} mentioned in the provided text? If the text does not mention it, answer none."
    )


def test_auto_is_chat_with_a_template_instruct_without_and_plain_for_the_reference(chatml, tiny_dir):
    plain_tokenizer = load_tokenizer(tiny_dir)
    assert resolve_format("auto", chatml, reference=False) == "chat"
    assert resolve_format("auto", plain_tokenizer, reference=False) == "instruct"
    assert resolve_format("auto", chatml, reference=True) == "plain"
    assert resolve_format("auto", chatml, reference=False, chat=False) == "instruct"  # LongBench's few-shot sets
    with pytest.raises(ValueError, match="use format instruct"):
        resolve_format("chat", plain_tokenizer, reference=False)


def test_instruct_format_reads_as_the_task_template_then_the_answer_prefix(chatml):
    example = build(chatml, "instruct", "vt", 512, n=1)[0]
    value = example.query.split()[2]
    assert example.before == "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
    assert example.after == (
        f"\nFind all variables that are assigned the value {value} in the text above.\nAnswer: According to the chain(s) "
        f"of variable assignment in the text above, 4 variables are assigned the value {value}, they are:"
    )


def test_a_suite_template_and_answer_prefix_replace_the_tasks(chatml):
    example = build(
        chatml, "instruct", "needle", 300, n=1, template="Text:\n{context}\nQ: {question} ({key})", answer_prefix="A:"
    )[0]
    key = example.query.split()[2]
    assert example.before == "Text:\n" and example.after.endswith(f" ({key})\nA:")
    assert example.actual_length == 300


def test_plain_format_is_unchanged_from_the_bare_tokenizer(chatml):
    (example,) = build(chatml, "plain", "needle", 256, n=1)
    bare = tasks()["needle"]().examples(Prompter(chatml, Style()), 256, 1, seed=0)[0]
    assert (example.before, example.after, example.context) == ("", "\n" + bare.query, bare.context)


STRATEGIES = [
    ("blockwise", {"block_tokens": 220}),
    ("dp_chunked", {"max_chunk_tokens": 220}),
    ("recursive", {"chunk_tokens": 240, "memory_tokens": 60}),
    ("truncation", {"budget": 220}),
    ("sparse", {"window": 64}),
    ("full", {}),
]


@pytest.mark.parametrize("fmt", ["instruct", "chat"])
@pytest.mark.parametrize("task", ["needle", "mt"])
@pytest.mark.parametrize("name,params", STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_every_call_a_strategy_makes_carries_the_instruction_and_the_question(name, params, task, fmt, chat_dirs):
    model = Model.load(chat_dirs["chatml"], device="cpu")
    example = build(model.tokenizer, fmt, task, 600, n=1)[0]
    before, after = model.encode(example.before), model.encode(example.after)
    calls: list = []
    with model.keeping_calls(calls):
        strategy_class(name)(**params).run(model, example)
    assert calls
    for prompt, _ in calls:
        assert prompt[: len(before)] == before
        starts = [i for i in range(len(prompt) - len(after) + 1) if prompt[i : i + len(after)] == after]
        assert starts, "the question and answer prefix are in every call"
        assert len(prompt) <= max(600, params.get("block_tokens", 0), params.get("chunk_tokens", 0))


def test_answers_are_extracted_from_real_outputs_before_scoring():
    frame = Frame("", "\nQ?\nThe value is", 3, "instruct", "The value is")
    example = Example("e", "ctx", "what is k ?", ("gomu",), 10, 10, frame=frame, stop=("</s>",))
    assert example.answer_of(" The value is gomu.\nMore text") == " gomu."
    assert example.answer_of("gomu</s> and more") == "gomu"
    assert example.answer_of("\n\ngomu\nnext") == "gomu"  # LongBench's first-line rule skips leading newlines
    plain = Example("e", "ctx", "what is k ?", ("gomu",), 10, 10)
    assert plain.answer_of(" The value is gomu.\nMore") == " The value is gomu.\nMore"  # the reference's, as it comes


def test_non_plain_formats_score_rulers_string_match_first(chatml):
    needle = tasks()["needle"]()
    example = next(e for e in build(chatml, "instruct", "needle", 512, n=6) if not e.metadata["absent"])
    said = f"The value is {example.references[0].upper()}, I think."
    scores = needle.score(example.answer_of(said), example)
    assert list(scores) == ["string_match_all", "exact_match"] and scores["string_match_all"] == 1.0
    assert scores["exact_match"] == 0.0
    plain = build(chatml, "plain", "needle", 512, n=1)[0]
    assert list(needle.score("x", plain)) == ["exact_match"]


def chat_suite(tmp_path: Path, model: Path, extra: str = "", lengths: str = "[400]", task: str = "{name: needle}") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        f"name: p\nmodel: {model}\ndevice: cpu\ncontext_lengths: {lengths}\nsamples: 2\n{extra}"
        f"tasks: [{task}]\nstrategies:\n  - name: full\n  - {{name: blockwise, params: {{block_tokens: 200}}}}\n"
        f"output: {tmp_path / 'out'}\n"
    )
    return path


def test_show_prompt_prints_and_prompts_jsonl_keeps_what_the_model_read(tmp_path, chat_dirs, capsys):
    assert main(["run", str(chat_suite(tmp_path, chat_dirs["chatml"])), "--show-prompt"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    shown = [json.loads(line) for line in (run_dir / PROMPTS).read_text().splitlines()]
    assert [s["strategy"] for s in shown] == ["full", "blockwise"]
    assert len(shown[0]["calls"]) == 1 and shown[0]["calls"][0]["tokens"] == 400
    assert len(shown[1]["calls"]) > 1 and all(c["tokens"] <= 200 for c in shown[1]["calls"])
    assert all(c["prompt"].startswith("<|im_start|>") for s in shown for c in s["calls"])
    err = capsys.readouterr().err
    assert "call 1 of 1 · 400 tokens" in err and "assistant" in err  # the whole chat prompt, printed
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert all("prompts" not in r for r in records) and all(r["status"] == "ok" for r in records)
    assert all(r["input_tokens"] == 400 for r in records)


@pytest.mark.parametrize(
    "extra,task,lengths,expected",
    [
        ("prompt: {format: chat}\n", "{name: needle}", "[400]", "needs a tokenizer with a chat template"),
        ("prompt: {format: instruct, template: 'Q: {question}'}\n", "{name: needle}", "[400]", "template has no {context}"),
        ("prompt: {template: '{context} {question} {colour}'}\n", "{name: vt}", "[400]", "names {colour}"),
        ("prompt: {format: instruct}\n", "{name: needle}", "[64, 400]", "the prompt around the context counts in the length"),
        ("", "{name: longbench, params: {dataset: trec, data_dir: DATA}}", "[400]", "it looks like a RULER prepared"),
        ("", "{name: longbench, params: {dataset: hotpotqa, data_dir: /nowhere}}", "[400]", "does not exist"),
    ],
    ids=["chat-without-template", "no-context", "unknown-field", "too-short", "wrong-family", "missing-file"],
)
def test_bad_prompt_settings_are_refused_before_any_model_loads(tmp_path, tiny_dir, capsys, extra, task, lengths, expected):
    data = tmp_path / "data"
    data.mkdir()
    (data / "trec_e.jsonl").write_text(json.dumps({"input": "q", "outputs": ["a"], "length": 9, "answer_prefix": " A:"}) + "\n")
    path = chat_suite(tmp_path, tiny_dir, extra, lengths, task.replace("DATA", str(data)))
    assert main(["validate", str(path)]) == 2
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_chat_slot_never_appears_in_a_prompt(chatml):
    for task in SYNTHETIC:
        for example in build(chatml, "chat", task, 512, n=2):
            assert SLOT not in example.before + example.after

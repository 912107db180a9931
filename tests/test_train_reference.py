"""The reference trainer runs a few steps, deterministically, and saves a loadable model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lcbench.cli import main
from lcbench.model import Model
from lcbench.reference.train import RECIPES, Curriculum, Recipe, make_batch


def test_batches_are_deterministic_and_follow_the_curriculum():
    recipe = Recipe(steps=100, batch=6)
    assert make_batch((recipe, 7, 64, True)) == make_batch((recipe, 7, 64, True)) != make_batch((recipe, 8, 64, True))
    alone = make_batch((recipe, 3, 40, False))
    assert {family for family, _, _ in alone} == {"mt"}
    for _family, ids, labels in alone:
        prompt = next(i for i, label in enumerate(labels) if label != -100)
        assert prompt <= 40 and labels[-1] == ids[-1] == 3  # `</s>` ends every answer


def test_answer_families_get_several_questions_per_context():
    from lcbench.prompt import Prompter
    from lcbench.reference.questions import more_questions
    from lcbench.reference.train import tokenizer_and_vocabulary
    from lcbench.registry import tasks

    counter = Prompter(tokenizer_and_vocabulary()[0])
    import random

    for family in ["needle", "dialogue", "code", "vt"]:
        example = tasks()[family]().examples(counter, 200, 1, seed=5)[0]
        extra = more_questions(family, example, random.Random(0))
        assert extra and all(q != example.query for q, _ in extra)
        for query, answer in extra:  # each is a question the task itself could have asked
            assert answer.split()[0] in example.context.split() and query.split()[0] in ("what", "call", "who")


def test_length_grows_only_once_translation_is_learnt():
    recipe = Recipe(start_length=16, growth=1.25, advance_loss=1.0, patience=3, mix_from=32)
    curriculum = Curriculum(top=16)
    curriculum.update(recipe, 4.0)
    curriculum.update(recipe, 3.0)
    assert curriculum.top == 16 and not curriculum.mixed
    curriculum.update(recipe, 2.0)  # patience spent: it grows anyway
    assert curriculum.top == 20
    for _ in range(3):
        curriculum.update(recipe, 0.5)
    assert curriculum.top == 40 and curriculum.mixed  # 20 -> 25 -> 32 -> 40


def test_a_few_steps_save_a_model_that_loads(tmp_path, capsys):
    out = tmp_path / "reference"
    main(["train-reference", "--steps", "2", "--batch", "2", "--length", "64", "--workers", "0", "--out", str(out)])
    log = capsys.readouterr().out
    assert '"step": 2' in log and "parameters" in log
    assert json.loads((out / "training.json").read_text())["recipe"]["steps"] == 2
    model = Model.load(out, device="cpu")
    generation = model.generate(model.encode("kalo is bemi . what is kalo ?"), 3)
    assert generation.new_tokens >= 1


def test_lookup_batches_hold_every_answer_family_and_no_translation():
    recipe = RECIPES["lookup"]
    families = set()
    for step in range(6):
        for family, ids, labels in make_batch((recipe, step, 96, True)):
            assert len(ids) == len(labels)
            families.add(family)
    assert families == {"needle", "vt", "aggregation", "dialogue", "code"}


def test_the_lookup_model_starts_as_its_seeded_circuit():
    from lcbench.reference.lookup_circuit import OFFSETS
    from lcbench.reference.train import build_model, tokenizer_and_vocabulary

    model = build_model(RECIPES["lookup"], tokenizer_and_vocabulary()[0])
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        attention = model(input_ids=torch.randint(10, 2000, (1, 300)), output_attentions=True).attentions[0][0]
    for head, offset in enumerate(OFFSETS):
        rows = torch.arange(offset, 300)
        assert attention[head, rows, rows - offset].min() > 0.95  # each previous-token head looks `offset` back


LOOKUP = ["train-reference", "--model", "lookup", "--steps", "4", "--answer-batch", "2", "--length", "48", "--workers", "0"]


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main([*LOOKUP, "--out", str(straight), "--checkpoint", str(tmp_path / "a.pt")])
    main([*LOOKUP, "--out", str(resumed), "--checkpoint", str(tmp_path / "b.pt"), "--stop-after", "2"])
    main(["train-reference", "--model", "lookup", "--resume", "--checkpoint", str(tmp_path / "b.pt"), "--out", str(resumed)])
    assert "resuming at step 2" in capsys.readouterr().out
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    card = json.loads((resumed / "training.json").read_text())
    assert card["recipe"]["model"] == "lookup" and "set by hand" in card["set_by_hand"].lower()
    assert Model.load(resumed, device="cpu").hf_model.config.model_type == "smollm3"
    longer = ["train-reference", "--model", "lookup", "--resume", "--steps", "5", "--checkpoint", str(tmp_path / "b.pt")]
    main([*longer, "--out", str(resumed)])  # a finished run, lengthened
    assert "resuming at step 4" in capsys.readouterr().out
    assert json.loads((resumed / "training.json").read_text())["log"][-1]["step"] == 5


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train-reference", "--model", "lookup", "--resume", "--checkpoint", str(tmp_path / "none.pt")])
    assert "no checkpoint at" in capsys.readouterr().err


def test_a_cropped_context_is_answered_from_what_the_window_shows():
    import random

    from lcbench.prompt import Prompter
    from lcbench.reference.questions import code_answer, crop, dialogue_answer, more_questions, needle_answer
    from lcbench.reference.train import tokenizer_and_vocabulary
    from lcbench.registry import tasks

    ask = str.split
    assert needle_answer(ask("x is b . a is c . a is d ."), ask("what is a ?")) == "c d"
    assert needle_answer(ask("is c . x is b . a is"), ask("what is a ?")) == ""  # the value is cut off
    assert dialogue_answer(ask("al says my pet is bo . al says my home is cu ."), ask("what is home of al ?")) == "cu"
    assert dialogue_answer(ask("my home is cu . al says hi ."), ask("what is home of al ?")) == ""  # the speaker is cut off
    assert code_answer(ask("def f ( p q ) : x end def g ( r"), ask("call f (")) == "p q )"
    assert code_answer(ask("def f ( p q ) : x end def g ( r"), ask("call g (")) == ""  # its parameters run past the window

    counter = Prompter(tokenizer_and_vocabulary()[0])
    rng = random.Random(0)
    answers = []
    for seed in range(30):
        example = tasks()["needle"](mode="mixed").example(counter, 200, seed, seed)
        cut = crop("needle", example, rng)
        window = cut.context.split()
        assert len(window) >= len(example.context.split()) // 2 and cut.context in example.context
        assert cut.references == (needle_answer(window, cut.query.split()) or "none",)
        answers.append(cut.references[0])
    assert "none" in answers and any(a != "none" for a in answers)
    for family in ("needle", "dialogue", "code"):  # every question read off a window is answerable from it
        for seed in range(30):
            cut = crop(family, tasks()[family]().example(counter, 120, seed, seed), rng)
            for query, answer in more_questions(family, cut, rng):
                assert set(answer.split()) - {")"} <= set(cut.context.split()) and query.split()[-2] in cut.context.split()
    vt = tasks()["vt"]().examples(counter, 200, 1, seed=0)[0]
    assert crop("vt", vt, rng) == vt  # a chain is answered from the whole context only

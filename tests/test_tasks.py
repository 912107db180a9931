"""Tasks: deterministic, exact lengths in the model's tokens, honest scoring, clear errors."""

from __future__ import annotations

import pytest

from lcbench.registry import tasks
from lcbench.tasks.base import LengthError, exact_match, normalize
from lcbench.tasks.mt import Mt, translate_sentence
from lcbench.tasks.needle import Needle

SYNTHETIC = sorted(name for name, cls in tasks().items() if cls.vocabulary())


@pytest.fixture(scope="module")
def words():
    from lcbench.prompt import Prompter
    from lcbench.reference.train import tokenizer_and_vocabulary

    return Prompter(tokenizer_and_vocabulary()[0])


def test_every_task_family_is_registered():
    assert set(SYNTHETIC) == {"mt", "needle", "vt", "aggregation", "dialogue", "code"}
    assert "jsonl" in tasks()


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("length", [200, 256, 777, 2048])
def test_lengths_are_exact_in_the_models_tokens(name, length, words):
    for example in tasks()[name]().examples(words, length, 3, seed=0):
        prompt = words.encode(example.context + example.after)
        assert len(prompt) == length == example.actual_length
        assert words.tokenizer.unk_token_id not in prompt + words.encode(example.references[0])
        assert list(example.boundaries) == sorted(set(example.boundaries)) and example.boundaries[0] == 0


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_examples(name, words):
    task = tasks()[name]()
    a, b, c = (task.examples(words, 300, 3, seed=s) for s in (5, 5, 6))
    assert a == b and a != c


@pytest.mark.parametrize("name", SYNTHETIC)
def test_a_perfect_prediction_scores_full_marks(name, words):
    task = tasks()[name]()
    for example in task.examples(words, 256, 3, seed=1):
        scores = task.score(example.references[0], example)
        assert set(scores) == set(task.metrics)
        assert all(value == pytest.approx(100.0 if key in ("chrf", "bleu") else 1.0) for key, value in scores.items())


@pytest.mark.parametrize("name", SYNTHETIC)
def test_too_short_names_the_minimum(name, words):
    with pytest.raises(LengthError, match="minimum is"):
        tasks()[name]().examples(words, 6, 1, seed=0)


def test_needle_places_the_key_at_its_depth_or_says_none(words):
    examples = Needle(mode="multikey", absent_share=0.3).examples(words, 400, 40, seed=1)
    absent = [e for e in examples if e.metadata["absent"]]
    assert 0 < len(absent) < len(examples)
    for e in examples:
        key = e.query.split()[2]
        context = e.context.split()
        if e.metadata["absent"]:
            assert e.references == ("none",) and key not in context
        else:
            assert abs(context.index(key) / len(context) - e.metadata["depth"]) < 0.1
            assert context[context.index(key) + 2] == e.references[0]


def test_needle_multivalue_answers_both_values_in_any_order(words):
    for e in Needle(mode="multivalue", absent_share=0.0).examples(words, 300, 5, seed=2):
        key, context = e.query.split()[2], e.context.split()
        values = [context[i + 2] for i, w in enumerate(context) if w == key]
        assert e.references == (" ".join(values),) and len(values) == 2
        needle = Needle(mode="multivalue")
        assert needle.score(f"{values[1]} {values[0]} .", e) == needle.score(" ".join(values), e) == {"exact_match": 1.0}
        assert needle.score(values[0], e)["exact_match"] == needle.score(f"{values[0]} {values[0]}", e)["exact_match"] == 0.0


def test_mt_reorders_and_agrees():
    from lcbench.tasks.mt import lexicon

    lex = lexicon()
    noun_a = next(n for n, c in lex.nouns.items() if c == "A")
    adjective, verb, other = sorted(lex.adjectives)[0], lex.verbs[0], lex.others[0]
    out = translate_sentence([other, adjective, noun_a, verb], "A")
    t = lex.translation
    assert out == [t[other], t[noun_a], t[adjective], t[verb] + "n"]
    assert translate_sentence([other, verb], "B")[-1] == t[verb] + "s"


def test_mt_doc_acc_counts_the_dependent_verbs(words):
    example = Mt().examples(words, 256, 1, seed=3)[0]
    dependents = [v for v in example.metadata["verbs"] if v[2] > 0]
    assert dependents and {d for _, _, d in dependents} <= {1, 2, 3, 4, 5, 6, 7, 8}
    wrong = example.references[0]
    stem, suffix, _ = dependents[0]
    wrong = wrong.replace(stem + suffix, stem + ("s" if suffix == "n" else "n"))
    scores = Mt().score(wrong, example)
    assert scores["doc_acc"] == pytest.approx(1 - 1 / len(dependents)) and scores["exact"] == 0.0


@pytest.mark.parametrize("prediction, expected", [("bemi", 1.0), (" Bemi .\nmore", 1.0), ("bemi tuna", 0.0), ("", 0.0)])
def test_exact_match(prediction, expected):
    assert exact_match(prediction, ["bemi"]) == expected
    assert normalize("  Kalo .  ") == "kalo"


@pytest.mark.parametrize(
    "task, params, message",
    [
        ("needle", {"depths": []}, "depths"),
        ("needle", {"mode": "haystack"}, "mode"),
        ("mt", {"distances": [0]}, "distances"),
        ("vt", {"hops": 0}, "hops"),
        ("aggregation", {"lead": 1.0}, "lead"),
        ("dialogue", {"speakers": 1}, "speakers"),
        ("code", {"max_params": 0}, "max_params"),
        ("jsonl", {}, "path is required"),
    ],
)
def test_bad_params(task, params, message):
    with pytest.raises(ValueError, match=message):
        tasks()[task](**params)


def test_mt_doc_acc_in_documents_where_verbs_recur(words):
    example = Mt().examples(words, 2048, 1, seed=4)[0]
    verbs = example.metadata["verbs"]
    assert len({v[0] for v in verbs}) < len(verbs)  # long enough for stems to recur
    assert Mt().score(example.references[0], example)["doc_acc"] == 1.0
    flipped = example.references[0].split()
    last = max(i for i, w in enumerate(flipped) if w[:-1] == verbs[-1][0])
    flipped[last] = flipped[last][:-1] + ("s" if flipped[last][-1] == "n" else "n")
    dependents = sum(v[2] > 0 for v in verbs)
    expected = 1 - (1 / dependents if verbs[-1][2] > 0 else 0)
    assert Mt().score(" ".join(flipped), example)["doc_acc"] == pytest.approx(expected)

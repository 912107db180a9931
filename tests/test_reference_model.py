"""The shipped reference model: loads through the user-model path and translates at its
training length on held-out seeds (the suites' seeds never meet the trainer's)."""

from __future__ import annotations

import json

from lcbench.registry import strategies, tasks
from lcbench.sweep import REFERENCE_DIR

TRAINING_LENGTH = 256


def test_ships_in_the_package_as_safetensors():
    assert (REFERENCE_DIR / "model.safetensors").is_file() and (REFERENCE_DIR / "tokenizer.json").is_file()
    assert sum(f.stat().st_size for f in REFERENCE_DIR.iterdir()) < 20 << 20
    recipe = json.loads((REFERENCE_DIR / "training.json").read_text())["recipe"]
    assert recipe["length"] == TRAINING_LENGTH


def test_translates_at_its_training_length(reference):
    task = tasks()["mt"]()
    examples = task.examples(reference, TRAINING_LENGTH, 4, seed=0)
    scores = [task.score(strategies()["full"]().run(reference, e).text, e) for e in examples]
    chrf = sum(s["chrf"] for s in scores) / len(scores)
    doc_acc = sum(s["doc_acc"] for s in scores) / len(scores)
    assert chrf >= 85 and doc_acc >= 0.8, (chrf, doc_acc)


def test_full_attention_degrades_past_the_training_length(reference):
    task = tasks()["mt"]()
    (example,) = task.examples(reference, 4 * TRAINING_LENGTH, 1, seed=0)
    assert task.score(strategies()["full"]().run(reference, example).text, example)["chrf"] < 80

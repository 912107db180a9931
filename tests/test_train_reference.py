"""The reference trainer runs a few steps, deterministically, and saves a loadable model."""

from __future__ import annotations

import json

from lcbench.cli import main
from lcbench.model import Model
from lcbench.train_reference import Recipe, make_batch, max_length_at


def test_batches_are_deterministic_and_ramp_in_length():
    recipe = Recipe(steps=100, batch=4, length=256, start_length=64, ramp=0.5)
    assert make_batch((recipe, 7)) == make_batch((recipe, 7)) != make_batch((recipe, 8))
    assert max_length_at(recipe, 0) == 64 and max_length_at(recipe, 50) == 256
    for _family, prompt, answer in make_batch((recipe, 0)):
        assert len(prompt) <= 160 and answer[-1] == 3  # `</s>` ends every answer


def test_a_few_steps_save_a_model_that_loads(tmp_path, capsys):
    out = tmp_path / "reference"
    main(["train-reference", "--steps", "2", "--batch", "2", "--length", "64", "--workers", "0", "--out", str(out)])
    log = capsys.readouterr().out
    assert '"step": 2' in log and "parameters" in log
    assert json.loads((out / "training.json").read_text())["recipe"]["steps"] == 2
    model = Model.load(out, device="cpu")
    generation = model.generate(model.encode("kalo is bemi . what is kalo ?"), 3)
    assert generation.new_tokens >= 1

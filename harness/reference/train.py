"""`lcbench train-reference`: train an embedded reference model from scratch on the synthetic
tasks, reproducibly from a seed, and save it as a Hugging Face folder (safetensors, word-level
tokenizer) that loads through the same adapter as any user model. Two are shipped: `mt` (a Llama,
translation) and `lookup` (a SmolLM3 with a look-up circuit seeded by hand: the answer families;
see `lookup_circuit.py`). A run checkpoints as it goes and `--resume` continues one exactly.

Every step draws fresh examples from every task family at lengths ramped up to the training
length on a schedule (jumps in length cost accuracy), on seeds that never meet the suites'
(those start at 0; training seeds start at 10^6). The loss is on the answer tokens only,
averaged per sequence so that long translations do not drown short answers.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import multiprocessing
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lcbench.reference.questions import crop, more_questions

TRAIN_SEED_BASE = 1_000_000
FAMILIES = {"mt": 3.0, "needle": 1.5, "vt": 1.0, "aggregation": 1.0, "dialogue": 1.0, "code": 1.0}
MIN_LENGTH = {"aggregation": 160, "dialogue": 64, "vt": 48, "code": 40}
VARIANTS = 15  # an example's index picks its variant (depth, mode): 15 covers every 3 x 5 combination


@dataclass(frozen=True)
class Recipe:
    model: str = "mt"  # which architecture: "mt" (Llama, learnt from scratch) or "lookup" (seeded circuit)
    length: int = 256  # the training length: prompt tokens
    layers: int = 3
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    steps: int = 6000
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 100
    start_length: int = 16  # short documents first: the copy mechanism forms there, fast
    growth: float = 1.25  # the length grows by this factor each time translation is learnt
    advance_loss: float = 1.0  # mean translation loss that counts as learnt at a length
    patience: int = 20  # windows of `log_every` steps a length may hold before it grows anyway
    mix_from: int = 32  # the other families join once documents are this long
    families: tuple[str, ...] = tuple(FAMILIES)
    rehearse_every: int = 4
    answer_batch: int = 48
    shortest: float = 0.5  # lengths are drawn from [shortest * longest, longest]
    weights: tuple[tuple[str, float], ...] = tuple(FAMILIES.items())  # how often each family is drawn
    needle_modes: tuple[float, float, float] = (1.0, 1.0, 1.0)  # how often single, multikey, multivalue
    crop_share: float = 0.0  # share of answer contexts cut to a window, as a chunking strategy cuts them
    seed: int = 0


ANSWER_FAMILIES = tuple(f for f in FAMILIES if f != "mt")
RECIPES = {
    "mt": Recipe(),
    # Every length from the start (the seeded circuit needs no curriculum), short contexts always
    # in the mix, many questions per context.
    "lookup": Recipe(
        model="lookup", layers=3, hidden=256, heads=8, kv_heads=8, intermediate=512,
        families=ANSWER_FAMILIES, start_length=256, steps=800, batch=32, answer_batch=32, lr=1e-3, warmup=30, shortest=0.125,
        # Counting and a key's second value learn slowest: they get more of the draws.
        weights=(("needle", 2.0), ("vt", 1.0), ("aggregation", 2.0), ("dialogue", 1.0), ("code", 1.0)),
        needle_modes=(1.0, 1.0, 2.0),
        crop_share=0.5,
    ),
}  # fmt: skip


def tokenizer_and_vocabulary() -> tuple[Any, list[str]]:
    from lcbench.reference.word_tokenizer import build_word_tokenizer, task_vocabulary

    words = task_vocabulary()
    return build_word_tokenizer(words), words


@dataclass
class Curriculum:
    """The longest prompt trained on, grown only once translation is learnt at the current one.

    Translation comes first and alone: its dense, per-token supervision forms the look-up-and-copy
    mechanism within a few hundred steps on short documents, while the single answers of the
    other families stall at chance without it, and in a mix their noisy gradients keep it from
    forming. A fixed length schedule outran the learning in trials; this one waits for it.
    """

    top: int
    mixed: bool = False
    held: int = 0

    def update(self, recipe: Recipe, loss: float | None) -> None:
        """`loss`: the window's mean loss over its families (translation alone at first)."""
        learnt = loss is not None and loss < recipe.advance_loss
        if self.top < recipe.length and (learnt or self.held + 1 >= recipe.patience):
            self.top = min(recipe.length, math.ceil(self.top * recipe.growth))
            self.held = 0
            self.mixed = self.mixed or (self.top >= recipe.mix_from and len(recipe.families) > 1)
        else:
            self.held += 1


def make_batch(args: tuple[Recipe, int, int, bool]) -> list[tuple[str, list[int], list[int]]]:
    """(family, prompt ids, answer ids + eos) for one step: deterministic in its arguments
    (recipe, step, longest prompt, whether the other families are in)."""
    from lcbench.prompt import Prompter
    from lcbench.registry import tasks
    from lcbench.tasks.base import LengthError

    recipe, step, top, mixed = args
    rng = random.Random(f"train/{recipe.seed}/{step}")
    tokenizer, _ = _worker_tokenizer()
    prompter = Prompter(tokenizer)
    # One length per step; once mixed, every batch holds translations and short answers, so
    # that each step's gradient keeps the translation signal (batches of short answers alone
    # undid it in trials).
    # Lengths always vary (from half the longest): at one fixed length the model learns to copy
    # from a fixed offset instead of looking words up, and fails at the next length (seen).
    length = rng.randint(max(8, int(top * recipe.shortest)), top) if rng.random() < 0.7 else top
    # Once mixed, every `rehearse_every`-th step rehearses translation; the others are batches
    # of short answers only, `answer_batch` sequences long: an answer is one supervised token
    # per context, so these families need many contexts per step to learn at all.
    answering = "mt" not in recipe.families or (mixed and step % recipe.rehearse_every != 0 and len(recipe.families) > 1)
    families = [f for f in recipe.families if f != "mt"] if answering else ["mt"]
    weights = [dict(recipe.weights)[f] for f in families]
    batch = []
    for i in range(recipe.answer_batch if answering else recipe.batch):
        family = rng.choices(families, weights)[0]
        task = tasks()[family](**({"mode": "mixed"} if family == "needle" else {}))
        low = MIN_LENGTH.get(family, 24)
        seed = TRAIN_SEED_BASE + (10**8 + step * recipe.answer_batch if answering else step * recipe.batch) + i
        index = variant(recipe, family, rng)
        try:
            example = task.example(prompter, max(low, length), seed, index)
        except LengthError:  # too short for this draw's fixed parts: take the longest allowed now
            example = task.example(prompter, max(top, 2 * low), seed, index)
        if rng.random() < recipe.crop_share:
            example = crop(family, example, rng)
        ids = prompter.encode(example.context) + prompter.encode(example.after)
        labels = [IGNORE] * len(ids)
        for k, (query, answer) in enumerate([(example.query, example.references[0]), *more_questions(family, example, rng)]):
            if k:  # further questions on the same context, after the previous answer's `</s>`
                asked = prompter.encode(query)
                ids, labels = ids + asked, labels + [IGNORE] * len(asked)
            answered = prompter.encode(answer) + [tokenizer.eos_token_id]
            ids, labels = ids + answered, labels + answered
        batch.append((family, ids, labels))
    return batch


def variant(recipe: Recipe, family: str, rng: random.Random) -> int:
    """An example's index, which picks its variant: mode (index % 3) and depth (index % 5).
    Training must see every variant (index 0 alone is one mode at one depth). A translation's
    index only seeds its draw, so mt keeps 0, as the shipped mt model was trained."""
    if family == "mt":
        return 0
    if family == "needle":  # a mode drawn by its weight, then any of the 5 depths (3k + mode cycles them all)
        return rng.choices(range(3), recipe.needle_modes)[0] + 3 * rng.randrange(5)
    return rng.randrange(VARIANTS)


IGNORE = -100
_TOKENIZER: Any = None


def _worker_tokenizer() -> tuple[Any, list[str]]:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = tokenizer_and_vocabulary()
    return _TOKENIZER


def build_model(recipe: Recipe, tokenizer: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.seed)
    if recipe.model == "lookup":
        from transformers import SmolLM3ForCausalLM

        from lcbench.reference import lookup_circuit

        model = SmolLM3ForCausalLM(
            lookup_circuit.config(tokenizer, recipe.layers, recipe.hidden, recipe.heads, recipe.intermediate)
        )
        lookup_circuit.seed_circuit(model)
        return model
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden,
        intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        max_position_embeddings=1 << 17,  # RoPE has no table: this only stops length warnings
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def collate(batch: list[tuple[str, list[int], list[int]]], pad: int) -> tuple[Any, Any, Any]:
    """(input ids, real-token mask, labels with -100 outside the answers), right-padded, from
    (family, ids, labels) rows.

    Right padding needs no attention mask under causal attention: a real token never attends to
    the pads after it, so the fast causal kernel runs on the whole batch."""
    import torch

    width = max(len(row_ids) for _, row_ids, _ in batch)
    ids = torch.full((len(batch), width), pad)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE)
    for row, (_, row_ids, row_labels) in enumerate(batch):
        ids[row, : len(row_ids)] = torch.tensor(row_ids)
        mask[row, : len(row_ids)] = 1
        labels[row, : len(row_labels)] = torch.tensor(row_labels)
    return ids, mask, labels


def sequence_losses(model: Any, ids: Any, labels: Any) -> Any:
    """Mean cross-entropy over each sequence's answer tokens: shape (batch,)."""
    import torch.nn.functional as F

    logits = model(input_ids=ids).logits[:, :-1]
    targets = labels[:, 1:]
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none", ignore_index=-100)
    losses = losses.view(targets.shape)
    counts = (targets != -100).sum(1).clamp(min=1)
    return losses.sum(1) / counts


def learning_rate(recipe: Recipe, step: int) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


Batch = list[tuple[str, list[int], list[int]]]


def batches(recipe: Recipe, curriculum: Curriculum, workers: int, ahead: int = 4, first: int = 0) -> Iterator[Batch]:
    """Batches in step order from step `first`, generated by `workers` processes at most `ahead`
    steps early (an unbounded prefetch would keep a core busy that the trainer needs). Each is
    planned with the curriculum as it stands when the batch is requested."""
    if workers == 0:
        for step in range(first, recipe.steps):
            yield make_batch((recipe, step, curriculum.top, curriculum.mixed))
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: collections.deque[Any] = collections.deque()
        for step in range(first, recipe.steps):
            while len(pending) < ahead and step + len(pending) < recipe.steps:
                planned = (recipe, step + len(pending), curriculum.top, curriculum.mixed)
                pending.append(pool.apply_async(make_batch, (planned,)))
            yield pending.popleft().get()


def save(model: Any, tokenizer: Any, out: Path, recipe: Recipe, log: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    card: dict[str, Any] = {"recipe": asdict(recipe), "log": log[-50:]}
    if recipe.model == "lookup":  # a measuring instrument says what was set by hand
        from lcbench.reference import lookup_circuit

        card["set_by_hand"] = lookup_circuit.__doc__
    (out / "training.json").write_text(json.dumps(card, indent=1))


@dataclass
class Progress:
    """Where a run stands: what a checkpoint holds besides the weights and the optimiser."""

    step: int = 0  # steps done; the batches are a function of the step, so data resumes here
    tokens: int = 0
    elapsed: float = 0.0
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def save_checkpoint(path: Path, recipe: Recipe, model: Any, optimizer: Any, curriculum: Curriculum, progress: Progress) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "recipe": asdict(recipe), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "curriculum": asdict(curriculum), "progress": asdict(progress),
    }  # fmt: skip
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # a run killed while saving keeps the previous checkpoint


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    state: dict[str, Any] = torch.load(path, weights_only=True)
    recipe = state["recipe"]
    recipe["families"], recipe["needle_modes"] = tuple(recipe["families"]), tuple(recipe["needle_modes"])
    recipe["weights"] = tuple((family, weight) for family, weight in recipe["weights"])
    return state


def train(
    recipe: Recipe,
    out: Path,
    workers: int = 1,
    log_every: int = 50,
    save_every: int = 500,
    stop_after: int | None = None,
    init: Path | None = None,
    checkpoint: Path | None = None,
    resume: dict[str, Any] | None = None,
) -> Any:
    """Train and save to `out` (also every `save_every` steps, with a `checkpoint` of the whole
    state). `stop_after` ends the run early on the same schedule, reproducing a checkpoint of the
    full run; `resume` (a loaded checkpoint) continues a run where it stopped."""
    import torch

    tokenizer, _ = tokenizer_and_vocabulary()
    model = build_model(recipe, tokenizer)
    if init is not None:  # a second stage: start from a saved model with the same vocabulary
        from safetensors.torch import load_file

        model.load_state_dict(load_file(init / "model.safetensors"), strict=False)
        model.tie_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.01)
    curriculum = Curriculum(top=recipe.start_length, mixed=len(recipe.families) > 1 and recipe.start_length >= recipe.mix_from)
    progress = Progress()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        curriculum, progress = Curriculum(**resume["curriculum"]), Progress(**resume["progress"])
    params = sum(p.numel() for p in model.parameters())
    print(f"reference model: {params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}, {recipe}", flush=True)
    if progress.step:
        print(f"resuming at step {progress.step}", flush=True)
    model.train()
    start = time.perf_counter() - progress.elapsed
    window: dict[str, list[float]] = {f: [] for f in FAMILIES}
    for step, batch in enumerate(batches(recipe, curriculum, workers, first=progress.step), start=progress.step):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        ids, mask, labels = collate(batch, tokenizer.pad_token_id)
        losses = sequence_losses(model, ids, labels)
        loss = losses.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        progress.step, progress.tokens = step + 1, progress.tokens + int(mask.sum())
        progress.elapsed = time.perf_counter() - start
        for (family, _, _), value in zip(batch, losses.tolist()):
            window[family].append(value)
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            entry = {
                "step": step + 1,
                "elapsed_s": round(progress.elapsed),
                "tok_s": round(progress.tokens / progress.elapsed),
                "max_length": curriculum.top,
                "mixed": curriculum.mixed,
                "lr": round(learning_rate(recipe, step), 6),
                **{f: round(sum(v) / len(v), 3) for f, v in window.items() if v},
            }
            progress.log.append(entry)
            means = [sum(v) / len(v) for v in window.values() if v]
            curriculum.update(recipe, sum(means) / len(means) if means else None)
            print(json.dumps(entry), flush=True)
            window = {f: [] for f in FAMILIES}
        if (step + 1) % save_every == 0:
            save(model, tokenizer, out, recipe, progress.log)
            if checkpoint is not None:
                save_checkpoint(checkpoint, recipe, model, optimizer, curriculum, progress)
        if stop_after is not None and step + 1 >= stop_after:
            break
    model.eval()
    save(model, tokenizer, out, recipe, progress.log)
    if checkpoint is not None:
        save_checkpoint(checkpoint, recipe, model, optimizer, curriculum, progress)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lcbench train-reference", description=__doc__)
    parser.add_argument("--model", choices=sorted(RECIPES), default="mt", help="which shipped model to train (default mt)")
    parser.add_argument("--out", type=Path, help="where to save it (default: the shipped folder, lcbench/reference/MODEL)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int, help="sequences per translation step")
    parser.add_argument("--answer-batch", type=int, help="sequences per step of the answer families")
    parser.add_argument("--length", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--families", help="task families to train on, e.g. mt or mt,needle")
    parser.add_argument("--workers", type=int, default=1, help="processes generating examples (0: in the trainer)")
    parser.add_argument("--stop-after", type=int, help="end after this many steps, on the schedule of --steps")
    parser.add_argument("--init", type=Path, help="start from this saved model (a second training stage)")
    parser.add_argument("--start-length", type=int)
    parser.add_argument(
        "--checkpoint", type=Path, help="the whole training state, saved with the model (default results/train-MODEL.pt)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run saved in --checkpoint, with its recipe (and --steps)"
    )
    parser.add_argument("--save-every", type=int, default=100, help="steps between saves of the model and the checkpoint")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or Path("results") / f"train-{args.model}.pt"
    resume = None
    if args.resume:
        if not checkpoint.is_file():
            parser.error(f"--resume: no checkpoint at {checkpoint}; give the one the run saved with --checkpoint")
        resume = load_checkpoint(checkpoint)
        # --steps lengthens a finished run: its learning-rate schedule is then stretched to the new end
        recipe = dataclasses.replace(Recipe(**resume["recipe"]), **({"steps": args.steps} if args.steps else {}))
    else:
        recipe = recipe_from(parser, args)
    out = args.out or Path(__file__).parent / recipe.model
    train(recipe, out, args.workers, save_every=args.save_every, stop_after=args.stop_after, init=args.init,
          checkpoint=checkpoint, resume=resume)  # fmt: skip


def recipe_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Recipe:
    """The model's recipe with the flags given on top."""
    base = RECIPES[args.model]
    families = tuple(f.strip() for f in args.families.split(",") if f.strip()) if args.families else base.families
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families or (base.model == "mt" and "mt" not in families):
        need = "mt and any of" if base.model == "mt" else "any of"
        parser.error(f"--families: give {need} {', '.join(FAMILIES)}; got {args.families}")
    flags = {
        "steps": args.steps,
        "batch": args.batch,
        "length": args.length,
        "seed": args.seed,
        "start_length": args.start_length,
    }
    return dataclasses.replace(base, families=families, **{k: v for k, v in flags.items() if v is not None})


if __name__ == "__main__":
    main()

"""Prompts as data: a task says what it asks in parts (an instruction template, the context, the
question, the start of the answer) and a format arranges them for the model at hand.

Formats: `plain` (the context, a newline and the bare query: what the reference models were
trained on), `instruct` (the task's natural-language template, then the answer prefix on its own
line, so that a base model continues into the answer, as RULER prompts do), `chat` (the template as
the user turn of the tokenizer's own chat template; the answer prefix opens the assistant turn) and
`auto` (chat where the tokenizer has a chat template, instruct otherwise; plain for the reference
models).

A prompt is `before + context + after`, each part tokenized on its own. Its length is then exactly
len(before) + len(context) + len(after) in the model's tokens, so a task can fill the context to
the requested length of the whole prompt, and a strategy that reads the context in pieces (blocks,
chunks, a truncation) wraps every piece in the same `before` and `after`: each call is a
well-formed prompt with the instruction and the question.

Tasks take a `Prompter`: it counts tokens for them (`encode`, `decode`) and gives the prompt around
the context (`frame`). A bare tokenizer is wrapped as `Prompter(tokenizer)`, the plain format.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["plain", "instruct", "chat"]
FORMATS = ("plain", "instruct", "chat", "auto")
PLAIN_TEMPLATE = "{context}\n{question}"
# Stands for the context while a chat template renders: a private-use character no text contains.
SLOT = "\ue000"


@dataclass(frozen=True)
class Parts:
    """What one example asks, in the task's words, for every format to arrange."""

    query: str  # the bare form the reference models read: `what is KEY ?`
    question: str  # the same in natural language, for instruct and chat
    answer_prefix: str = ""  # how the answer starts: the prompt ends with it (instruct, chat)
    fields: Mapping[str, str] = field(default_factory=dict)  # more values a suite's template may name


@dataclass(frozen=True)
class Frame:
    """The prompt around the context: `before + context + after`, and what they cost in tokens."""

    before: str
    after: str
    tokens: int
    format: Format = "plain"
    answer_prefix: str = ""  # an echo of it at the start of the output is removed before scoring


@dataclass(frozen=True)
class Style:
    """A resolved format with its template: how a prompter renders every example of one task."""

    format: Format = "plain"
    template: str = PLAIN_TEMPLATE  # names {context} and {question}, and may name the task's fields
    answer_prefix: str | None = None  # the suite's own; None: the task's, per example
    system: str | None = None  # chat: a system turn before the user turn
    bos: str = ""  # instruct: the beginning-of-text token a base model expects, as text


def placeholders(template: str) -> list[str]:
    """The `{names}` a template uses, in order ({{ and }} are literal braces)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def template_problems(template: str, known: tuple[str, ...], what: str = "template") -> list[str]:
    """What is wrong with a template (or, `what="answer_prefix"`, an answer prefix) for a task
    whose extra fields are `known`."""
    try:
        names = placeholders(template)
    except ValueError as exc:
        return [f"{what} is not a valid template ({exc}); write literal braces as {{{{ and }}}}"]
    problems = []
    if what == "template":
        problems += [
            f"{what} has no {{{slot}}}; add it where the {slot} goes" for slot in ("context", "question") if slot not in names
        ]
    allowed = ("context", "question", *known) if what == "template" else ("question", *known)
    for name in names:
        if name not in allowed or not name:
            problems.append(
                f"{what} names {{{name}}}, which this task does not fill; use {', '.join('{' + a + '}' for a in allowed)}"
            )
    return problems


def takes_keyword(function: Any, name: str) -> bool:
    """Whether `function` accepts the keyword argument `name` (by name or through `**kwargs`)."""
    parameters = inspect.signature(function).parameters.values()
    return any((p.name == name and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD for p in parameters)


class Prompter:
    """Renders examples of one task in one style for one tokenizer. Tasks build their examples
    through it: `encode` counts tokens and `frame` gives the prompt around the context.

    The tokenizer is a Hugging Face tokenizer, asked for the bare tokens of each part (no special
    tokens: a BOS would be counted in every part), or a word counter whose `encode(text)` adds
    none (`lcbench.reference.word_tokenizer.WordCounter`); which of the two is decided here, once.
    """

    def __init__(self, tokenizer: Any, style: Style = Style()) -> None:
        self.tokenizer, self.style = tokenizer, style
        self._no_specials = {"add_special_tokens": False} if takes_keyword(tokenizer.encode, "add_special_tokens") else {}

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, **self._no_specials))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def frame(self, parts: Parts) -> Frame:
        style = self.style
        if style.format == "plain" and style.template == PLAIN_TEMPLATE:
            # The bare prompt: the context, a newline, the query (what the reference models read).
            after = "\n" + parts.query
            return Frame("", after, len(self.encode(after)))
        question = parts.query if style.format == "plain" else parts.question
        values = {**parts.fields, "question": question}
        user = style.template.format(**values, context=SLOT)
        prefix = parts.answer_prefix if style.answer_prefix is None else style.answer_prefix.format(**values)
        if style.format == "chat":
            text = render_chat(self.tokenizer, user, style.system) + prefix
        elif style.format == "instruct":
            text = style.bos + user + (f"\n{prefix}" if prefix else "")
        else:
            text, prefix = user, ""
        before, _, after = text.partition(SLOT)
        return Frame(before, after, len(self.encode(before)) + len(self.encode(after)), style.format, prefix)


def render_chat(tokenizer: Any, user: str, system: str | None) -> str:
    """The tokenizer's chat template around one user turn, ready for the assistant's answer."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if text.count(SLOT) != 1:
        raise ValueError("the chat template dropped or repeated the user's message; give the suite a `template` it keeps")
    return str(text)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def bos_text(tokenizer: Any) -> str:
    """The beginning-of-text token a tokenizer adds by itself (Llama's `<s>`), as text: an
    instruct prompt starts with it, as the model saw in training; chat templates write their own."""
    bos = getattr(tokenizer, "bos_token", None)
    try:
        added = tokenizer("x")["input_ids"]
    except Exception:
        return ""
    return str(bos) if bos and added and added[0] == tokenizer.bos_token_id else ""


def resolve_format(requested: str, tokenizer: Any, reference: bool, chat: bool = True) -> Format:
    """`auto` made concrete (`chat`: whether the task takes a chat template by default); a `chat`
    format on a tokenizer without a chat template is refused."""
    if requested == "auto":
        if reference:
            return "plain"
        return "chat" if chat and has_chat_template(tokenizer) else "instruct"
    if requested == "chat" and not has_chat_template(tokenizer):
        raise ValueError(
            "format chat needs a tokenizer with a chat template, and this one has none; "
            "use format instruct (or auto), or save the model with its chat template"
        )
    return requested  # type: ignore[return-value]

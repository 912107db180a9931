"""The README and docs/ cannot drift from the CLI: every `lcbench ...` command they show parses with the
real parser, every relative link reaches a file (and a heading, where it names one), and every suite,
benchmark or test file they name exists."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lcbench import cli
from lcbench.reference import train

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w-]*)")
INLINE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A placeholder in a synopsis (SUITE, RUN_DIR, N) stands for a value; those with a type get one that parses.
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
DUMMY = {"N": "1", "D": "cpu", "SECONDS": "60", "SIZE": "8G", "DURATION": "10m"}
NAMED_FILE = re.compile(r"(?<![\w/.-])((?:suites|benchmarks|tests)/[\w./-]+\.(?:yaml|py|sh))\b")


@dataclass(frozen=True)
class Shown:
    """A command as a page shows it, with where."""

    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def prose_and_code(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line number, line) of the prose, and of the shell code blocks; other fences (yaml, python) dropped."""
    prose: list[tuple[int, str]] = []
    code: list[tuple[int, str]] = []
    fence: str | None = None
    shell = False
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence, shell = opened.group(2), opened.group(3).lower() in SHELL_FENCES
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is not None:
            if shell:
                code.append((number, line))
        else:
            prose.append((number, line))
    return prose, code


def logical_lines(code: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines joined across `\\` continuations and a synopsis' indented continuation lines."""
    joined: list[tuple[int, str]] = []
    pending = False
    for number, line in code:
        if joined and (pending or (line[:1].isspace() and line.strip())):
            joined[-1] = (joined[-1][0], joined[-1][1].rstrip().rstrip("\\") + " " + line.strip())
        else:
            joined.append((number, line))
        pending = line.rstrip().endswith("\\")
    return joined


def commands_in(line: str) -> list[str]:
    """The `lcbench ...` commands in one shell line: comments cut, `&&` and `;` split, `time` dropped."""
    line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
    found = []
    for part in re.split(r"&&|;|\s\|\s", line):
        words = part.split()
        if words[:1] == ["time"]:
            words = words[1:]
        if words[:1] == ["lcbench"] and len(words) > 1:  # not the bare name of the program
            found.append(" ".join(words))
    return found


def shown_commands() -> list[Shown]:
    shown = []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        prose, code = prose_and_code(page.read_text())
        for number, line in logical_lines(code):
            shown += [Shown(name, number, command) for command in commands_in(line)]
        for number, line in prose:
            for match in INLINE.finditer(line):
                shown += [Shown(name, number, command) for command in commands_in(match.group(2))]
    return shown


def words_of(command: str) -> list[str]:
    """The arguments after `lcbench`, a synopsis made concrete: brackets and `...` dropped, the first of
    `a|b` alternatives taken, placeholders (`RUN_DIR`, `<that run>`) given a value."""
    words = []
    for word in shlex.split(re.sub(r"<[^<>]*>", "X", command))[1:]:
        word = word.strip("[]").removesuffix("...")
        if not word:
            continue
        if "|" in word and "/" not in word:
            word = word.split("|")[0]
        words.append(DUMMY.get(word, "x") if PLACEHOLDER.match(word) else word)
    return words


class Parsed(Exception):
    """Raised in place of training once the trainer's own parser has accepted its arguments."""


def parse(words: list[str]) -> argparse.Namespace:
    """Parse with the parser the command really uses; argparse's own message on failure."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            if words[:1] == ["train-reference"]:
                return parse_training(words[1:])
            return cli.parser().parse_args(words)
    except SystemExit as exit_:
        if exit_.code == 0:  # `--help`
            return argparse.Namespace(command=words[0])
        raise AssertionError(stderr.getvalue().strip()) from None


def parse_training(words: list[str]) -> argparse.Namespace:
    """The trainer builds its parser inside `main`: stop it right after `parse_args`."""
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args: Sequence[str] | None = None, namespace: object = None) -> None:
        raise Parsed(real(self, args))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            train.main(words)
        except Parsed as done:
            return done.args[0]
    raise AssertionError("train-reference did not parse its arguments")


SHOWN = shown_commands()


def test_the_pages_show_commands() -> None:
    """The extraction itself works: the README's first command and the docs' synopsis are found."""
    texts = {shown.text for shown in SHOWN}
    assert "lcbench run suites/mt.yaml" in texts
    assert any(shown.page == "docs/running.md" and "--time-budget" in shown.text for shown in SHOWN)
    assert any(text.startswith("lcbench train-reference") for text in texts)
    assert len(SHOWN) > 30


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_every_shown_command_parses(shown: Shown) -> None:
    words = words_of(shown.text)
    if len(words) == 1 and words[0] != "train-reference":  # `lcbench compare` named in a sentence
        words.append("--help")
    try:
        args = parse(words)
    except AssertionError as error:
        pytest.fail(f"{shown}\n  does not parse: {error}")
    suite = getattr(args, "suite", None)
    if suite is not None and str(suite).startswith("suites/"):
        assert (ROOT / suite).is_file(), f"{shown}\n  names a suite that does not exist"


def test_a_wrong_flag_fails() -> None:
    """The check can fail: a flag the CLI lacks, a value of the wrong type, an unknown trainer flag."""
    for words in (["run", "suites/mt.yaml", "--lenghts", "1k"], ["run", "--limit", "x"], ["train-reference", "--stpes", "1"]):
        with pytest.raises(AssertionError):
            parse(words)
    assert words_of("lcbench run SUITE [--limit N] [--format plain|chat] [RUN_DIR...] --out <a dir>") == [
        "run", "x", "--limit", "1", "--format", "plain", "x", "--out", "x",
    ]  # fmt: skip


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = prose_and_code(page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose:
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links() -> list[tuple[Path, int, str]]:
    found = []
    for page in PAGES:
        prose, _ = prose_and_code(page.read_text())
        for number, line in prose:
            for target in LINK.findall(line):
                if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:
                    found.append((page, number, target))
    return found


def test_every_relative_link_resolves() -> None:
    broken = []
    checked = links()
    for page, number, target in checked:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not file.exists():
            broken.append(f"{where}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{where}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert len(checked) > 20
    assert not broken, "\n".join(broken)


def test_every_named_file_exists() -> None:
    missing = [
        f"{page.relative_to(ROOT)}: {name}"
        for page in PAGES
        for name in NAMED_FILE.findall(page.read_text())
        if not (ROOT / name).exists() and not PLACEHOLDER.match(Path(name).stem)  # suites/X.yaml
    ]
    assert not missing, "\n".join(missing)


def test_each_page_has_one_title() -> None:
    for page in PAGES:
        prose, _ = prose_and_code(page.read_text())
        titles = [line for _, line in prose if re.match(r"#\s", line)]
        assert len(titles) == 1, f"{page.relative_to(ROOT)}: {titles}"

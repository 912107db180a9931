"""Errors a user can fix. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: the message names the file, the field, the bad value and the fix."""

    def __init__(self, problems: str | list[str], *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        if len(self.problems) == 1:
            head = f"{self.source}: " if self.source else ""
            return head + self.problems[0]
        head = f"{self.source}: " if self.source else ""
        lines = [f"{head}{len(self.problems)} problems found:"]
        lines += [f"  {i}. {p}" for i, p in enumerate(self.problems, 1)]
        return "\n".join(lines)


def did_you_mean(name: str, known: Iterable[str], what: str) -> str:
    """'unknown strategy `ful`; did you mean `full`? known: full, truncation'."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ";"
    return f"unknown {what} `{name}`{hint} known: {', '.join(known) or '(none)'}"

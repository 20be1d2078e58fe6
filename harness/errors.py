"""Errors a user sees: each says where the problem is and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class RnnbenchError(Exception):
    """Base of the errors that mean "bad input": the CLI prints them and exits with 2."""


class PluginError(RnnbenchError):
    """A plugin failed to import or broke the hook contract."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(f"plugin {plugin!r} {reason}")
        self.plugin = plugin
        self.reason = reason


@dataclass(frozen=True)
class SuiteProblem:
    """One problem in a suite file, located by file, line and field (a dotted path)."""

    file: str
    line: int | None
    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.field}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class SuiteError(RnnbenchError):
    """A suite file is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[SuiteProblem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid suite ({count}):\n" + "\n".join(f"  {p}" for p in problems))


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt ``name``, or ``None`` when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A hint: "did you mean 'lstm'?" or the list of valid choices."""
    choices = sorted(set(choices))
    guess = closest(name, choices)
    if guess is not None:
        return f"did you mean {guess!r}?"
    return "choose from: " + ", ".join(choices) if choices else "none are registered"

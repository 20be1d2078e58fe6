"""``-k`` run selection, like pytest's: words matched against each run's label and id.

``-k lstm`` keeps runs whose label or id contains "lstm"; words combine with ``and``, ``or``,
``not`` and parentheses: ``-k "lstm and not seed1"``. Matching is case-insensitive.

A label names every setting that varies in the suite (:attr:`rnnbench.RunSpec.label`), training
settings included, written ``key=value`` as in the suite: ``-k "lr=0.01 and not clip=null"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rnnbench.errors import RnnbenchError
from rnnbench.records import RunSpec

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_OPERATORS = {"and", "or", "not"}


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:  # only trailing white space is left
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def matches(expression: str, text: str) -> bool:
    """Whether ``text`` satisfies the ``-k`` ``expression``."""
    text = text.lower()
    tokens = _tokens(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise RnnbenchError(f"-k {expression!r}: expression ends too early")
        position += 1
        return tokens[position - 1]

    def parse_or() -> bool:
        value = parse_and()
        while peek() == "or":
            take()
            value = parse_and() or value
        return value

    def parse_and() -> bool:
        value = parse_not()
        while peek() == "and":
            take()
            value = parse_not() and value
        return value

    def parse_not() -> bool:
        if peek() == "not":
            take()
            return not parse_not()
        token = take()
        if token == "(":
            value = parse_or()
            if take() != ")":
                raise RnnbenchError(f"-k {expression!r}: missing ')'")
            return value
        if token in _OPERATORS or token == ")":
            raise RnnbenchError(f"-k {expression!r}: unexpected {token!r}")
        return token.lower() in text

    if not tokens:
        return True
    result = parse_or()
    if position != len(tokens):
        raise RnnbenchError(f"-k {expression!r}: unexpected {tokens[position]!r}")
    return result


def select(runs: Sequence[RunSpec], expression: str | None) -> list[RunSpec]:
    """The runs whose ``label`` or ``run_id`` satisfy ``expression`` (all when it is empty)."""
    if not expression:
        return list(runs)
    return [run for run in runs if matches(expression, f"{run.label} {run.run_id}")]

"""Named checks and their report: what every checker in :mod:`rnnbench.testing` returns.

A check is a function of a *subject* (a cell under test, a task class, a metric) that returns a
short detail when it passes, raises :class:`Failed` with what differed, or raises
:class:`Skipped` when it does not apply (float64 finite differences for a float32-only cell, a
reference comparison without a reference). :func:`run_checks` turns them into a
:class:`CheckReport`; :class:`NamedCheck` runs one at a time under pytest.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from rnnbench.errors import did_you_mean

Subject = TypeVar("Subject")
Status = Literal["passed", "failed", "skipped"]


class Failed(Exception):
    """Raised by a check that found a problem; the message says what differed and where."""


class Skipped(Exception):
    """Raised by a check that does not apply to its subject; the message says why."""


class CheckFailed(AssertionError):
    """Raised by :meth:`CheckReport.raise_on_failure` and by a failing :class:`NamedCheck`."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one named check: ``status`` is ``"passed"``, ``"failed"`` or
    ``"skipped"``; ``message`` is what was measured (passed), what differed (failed) or why the
    check does not apply (skipped)."""

    name: str
    status: Status
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class CheckReport:
    """Every check run on one subject (``"lstm/numpy"``, ``"task adding"``), in order."""

    subject: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No check failed (skipped ones do not count against)."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if result.failed]

    def __getitem__(self, name: str) -> CheckResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no check {name!r} in this report; "
                       f"{did_you_mean(name, [r.name for r in self.results])}")

    def raise_on_failure(self) -> None:
        """Raise :class:`CheckFailed` naming every failed check and what differed."""
        if self.failures:
            lines = [f"{self.subject}: {len(self.failures)} check(s) failed"]
            lines += [f"  {r.name}: {r.message}" for r in self.failures]
            raise CheckFailed("\n".join(lines))

    def __str__(self) -> str:
        width = max((len(r.name) for r in self.results), default=0)
        lines = [self.subject]
        lines += [f"  {r.name:<{width}}  {r.status:<7}  {r.message}" for r in self.results]
        return "\n".join(lines)


@dataclass(frozen=True)
class Check(Generic[Subject]):
    """A named check: ``function(subject)`` returns a detail or raises Failed / Skipped."""

    name: str
    function: Callable[[Subject], str | None]
    description: str


def run_check(check: Check[Subject], subject: Subject) -> CheckResult:
    """One check as a result. An unexpected exception is a failure that names it: a cell or
    task that raises where it should answer fails the check, it does not crash the checker."""
    try:
        detail = check.function(subject)
    except Failed as exc:
        return CheckResult(check.name, "failed", str(exc))
    except Skipped as exc:
        return CheckResult(check.name, "skipped", str(exc))
    except Exception as exc:  # the subject raised: report it as this check's failure
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return CheckResult(
            check.name, "failed",
            f"raised {type(exc).__name__}: {exc} ({where.filename}:{where.lineno})",
        )
    return CheckResult(check.name, "passed", detail or "")


def select_checks(
    available: Sequence[Check[Any]], names: Sequence[str] | None, kind: str
) -> list[Check[Any]]:
    """The checks called ``names`` (all when ``None``), in their standard order."""
    if names is None:
        return list(available)
    known = {check.name for check in available}
    for name in names:
        if name not in known:
            raise ValueError(f"no {kind} check {name!r}; {did_you_mean(name, known)}")
    return [check for check in available if check.name in names]


def run_checks(subject_label: str, checks: Sequence[Check[Subject]], subject: Subject
               ) -> CheckReport:
    return CheckReport(subject_label, [run_check(check, subject) for check in checks])


class NamedCheck:
    """One check of one subject, ready to run: calling it raises :class:`CheckFailed` when the
    check fails, and skips the test under pytest when it does not apply. Its ``__name__`` is
    its id (``"lstm/numpy::gradients"``), which pytest uses as the test id::

        @pytest.mark.parametrize("check", rnnbench.testing.cell_checks(("lstm", "numpy")))
        def test_lstm(check):
            check()
    """

    def __init__(self, subject_label: str, check: Check[Any], subject: Any) -> None:
        self.check, self.subject, self.subject_label = check, subject, subject_label
        self.__name__ = f"{subject_label}::{check.name}"

    @property
    def name(self) -> str:
        return self.check.name

    def __call__(self) -> CheckResult:
        result = run_check(self.check, self.subject)
        if result.failed:
            raise CheckFailed(f"{self.__name__}: {result.message}")
        if result.status == "skipped" and "pytest" in sys.modules:
            import pytest

            pytest.skip(result.message)
        return result

    def __repr__(self) -> str:
        return f"NamedCheck({self.__name__!r})"

"""Claims: what a suite says its results should show, written beside its runs and checked
against the records (``rnnbench verify``).

A suite may state, in a top-level ``claims:`` list, the findings it is meant to reproduce::

    claims:
      - id: lstm-solves-adding-100
        claim: "An LSTM solves the adding problem at T=100"
        source: "Hochreiter & Schmidhuber 1997, section 5.4"
        where: {cell: lstm, task.length: 100}      # a selector, matched like an exclude entry
        metric: test_loss
        expect: "< 0.01"                           # applied to the mean over the selected runs
      - id: gru-cheaper
        claim: "A GRU step costs less than an LSTM step"
        source: "Chung et al. 2014"
        where: {cell: gru}
        compare_to: {cell: lstm}                   # value: mean(where) / mean(compare_to)
        metric: step_ms
        expect: "< 1"
      - id: most-seeds-solve
        claim: "Most seeds solve it"
        source: "..."
        where: {cell: lstm}
        metric: test_loss
        expect: "< 0.01"                           # applied run by run ...
        aggregate: solved_fraction
        at_least: 0.66                             # ... to this fraction (2 of 3 seeds)
        min_runs: 3                                # default 2
        known_failure: "needs 10x the steps"       # like pytest's xfail

This module holds the claim model (:class:`Claim`, :class:`Expectation`), its checks on a suite
document (:func:`parse_claims`, :func:`check_selectors`, both adding file:line:field problems),
and the evaluation on records (:func:`evaluate_claims` -> :class:`ClaimResult`). The verdicts:

- ``holds`` / ``fails``: the value meets ``expect`` or not;
- ``inconclusive``: fewer than ``min_runs`` values (runs missing, or runs without a value for
  the metric: a failed run, a diverged run's test loss); the reason says which;
- ``known failure``: a claim marked ``known_failure`` that does not hold;
- ``known failure now holds``: one that does (pytest's non-strict xpass: it does not fail
  ``verify``, but is printed loudly so the mark can be removed).

A run counts toward a claim whatever its status: a diverged run's metrics are results (its
``exploded`` is what a claim about exploding gradients is about); a value that is missing is
left out of the mean and counted as missing. With ``aggregate: solved_fraction`` a diverged run
whose value is missing counts as a run that did not meet ``expect`` (a diverged run did not
solve the task); other missing values are left out.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnbench.errors import SuiteError, did_you_mean
from rnnbench.records import RunRecord, RunSpec
from rnnbench.results import SUITE_COPY, format_value
from rnnbench.suite_expand import same_value
from rnnbench.suite_schema import check_structure
from rnnbench.suite_variants import apply_variant, recorded_variant
from rnnbench.suite_yaml import KeyPath, SuiteDocument, SuiteProblems, read_suite, yaml_text

__all__ = [
    "CLAIM_COLUMNS",
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "KNOWN_FAILURE",
    "KNOWN_FAILURE_HOLDS",
    "Claim",
    "ClaimResult",
    "Expectation",
    "GroupValues",
    "check_selectors",
    "claims_exit_ok",
    "claims_suite_file",
    "evaluate_claim",
    "evaluate_claims",
    "parse_claims",
    "parse_expect",
    "read_claims",
]

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
KNOWN_FAILURE, KNOWN_FAILURE_HOLDS = "known failure", "known failure now holds"
#: The one aggregate a claim may ask for besides the mean.
SOLVED_FRACTION = "solved_fraction"
DEFAULT_MIN_RUNS = 2
#: The columns of a claims table, in order (terminal, results.md).
CLAIM_COLUMNS = ("id", "claim", "source", "expected", "measured", "verdict")

_EXPECT_EXAMPLES = '"< 0.01", "<= 0.05", "> 0.9", ">= 0.5" or "between 0.6 0.9"'
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(rf"^\s*(<=|>=|<|>)\s*({_NUMBER})\s*$")
_BETWEEN = re.compile(rf"^\s*between\s+({_NUMBER})\s+(?:and\s+)?({_NUMBER})\s*$")


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """A parsed ``expect``: a comparison with one bound, or ``between`` two (both included)."""

    op: str  # "<", "<=", ">", ">=" or "between"
    bound: float
    upper: float | None = None

    def met(self, value: float) -> bool:
        """Whether ``value`` meets it; NaN never does."""
        if math.isnan(value):
            return False
        if self.op == "between":
            assert self.upper is not None
            return self.bound <= value <= self.upper
        return {
            "<": value < self.bound, "<=": value <= self.bound,
            ">": value > self.bound, ">=": value >= self.bound,
        }[self.op]

    def __str__(self) -> str:
        if self.op == "between":
            return f"between {_g(self.bound)} {_g(self.upper)}"
        return f"{self.op} {_g(self.bound)}"


def parse_expect(text: str) -> Expectation:
    """``"< 0.01"``, ``"<= x"``, ``"> x"``, ``">= x"``, ``"between 0.6 0.9"`` as an
    :class:`Expectation`; anything else raises ``ValueError`` with the accepted forms."""
    found = _COMPARISON.match(text)
    if found:
        return Expectation(found.group(1), float(found.group(2)))
    found = _BETWEEN.match(text)
    if found:
        low, high = float(found.group(1)), float(found.group(2))
        if low > high:
            raise ValueError(f"'between {found.group(1)} {found.group(2)}': the lower bound comes "
                             f"first, e.g. \"between {found.group(2)} {found.group(1)}\"")
        return Expectation("between", low, high)
    raise ValueError(f"cannot read {text!r} as a comparison; write {_EXPECT_EXAMPLES}")


@dataclass(frozen=True)
class Claim:
    """One claim of a suite: what it says, where it comes from, and how to check it."""

    id: str
    claim: str
    source: str
    #: The selector: flat key (``cell``, ``task.length``, ``lr``, ``cell.nonlinearity``) ->
    #: the accepted values (a list in the suite matches any of its values).
    where: dict[str, list[Any]]
    metric: str
    expect: Expectation
    compare_to: dict[str, list[Any]] | None = None
    aggregate: str | None = None
    at_least: float | None = None
    min_runs: int = DEFAULT_MIN_RUNS
    known_failure: str | None = None
    #: Its position in the suite's ``claims:`` list (for problems' file:line:field).
    index: int = 0

    def selects(self, flat: dict[str, Any], selector: dict[str, list[Any]] | None = None) -> bool:
        """Whether a run's flat configuration has, for every key of the selector (``where``
        by default), one of the key's values."""
        selector = self.where if selector is None else selector
        return all(
            key in flat and any(_matches(flat, key, value) for value in values)
            for key, values in selector.items()
        )

    @property
    def expected(self) -> str:
        """What is compared, in words: ``mean test_loss of cell=lstm < 0.01``."""
        where = selector_text(self.where)
        if self.aggregate == SOLVED_FRACTION:
            return (f"at least {_g(self.at_least)} of the runs of {where} with "
                    f"{self.metric} {self.expect}")
        if self.compare_to is not None:
            return (f"mean {self.metric} of {where} / of {selector_text(self.compare_to)} "
                    f"{self.expect}")
        return f"mean {self.metric} of {where} {self.expect}"


def _matches(flat: dict[str, Any], key: str, value: Any) -> bool:
    """One selector value against a run's: equal as a suite means it; a data-file parameter
    (recorded resolved, e.g. ``/home/me/suite/data/prices.csv``) also matches the path as the
    suite wrote it, relative to its folder (``data/prices.csv``)."""
    actual = flat[key]
    if same_value(actual, value):
        return True
    if isinstance(value, str) and isinstance(actual, str) and f"{key}.sha256" in flat:
        written = Path(value).as_posix().removeprefix("./")
        return Path(actual).as_posix().endswith("/" + written)
    return False


def selector_text(selector: dict[str, list[Any]]) -> str:
    """``cell=lstm, task.length=100|200``."""
    return ", ".join(
        f"{key}=" + "|".join(format_value(value) if value is not None else "null"
                             for value in values)
        for key, values in selector.items()
    )


@dataclass
class GroupValues:
    """The runs one selector picked, and the metric values they give."""

    selector: dict[str, list[Any]]
    run_ids: list[str] = field(default_factory=list)
    #: The numeric values (one per run that has one), in record order.
    values: list[float] = field(default_factory=list)
    #: Why each run without a value has none: its status (``diverged``, ``failed``) or
    #: ``no value``.
    missing: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.run_ids)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        if not self.values:
            return None
        if all(math.isfinite(v) for v in self.values):
            return statistics.fmean(self.values)
        signs = {math.copysign(1.0, v) for v in self.values if math.isinf(v)}
        return math.nan if len(signs) > 1 else signs.pop() * math.inf

    @property
    def std(self) -> float | None:
        finite = all(math.isfinite(v) for v in self.values)
        return statistics.stdev(self.values) if self.n > 1 and finite else None

    def missing_text(self) -> str:
        """``1 diverged, 1 failed``: the runs without a value, by reason."""
        counts: dict[str, int] = {}
        for reason in self.missing:
            counts[reason] = counts.get(reason, 0) + 1
        return ", ".join(f"{count} {reason}" for reason, count in counts.items())

    def summary(self) -> str:
        """``0.0042 ± 0.0011 (n=3)``; ``(n=2 of 3 runs; 1 diverged)`` when values are missing."""
        if self.mean is None:
            text = "no value" if self.runs else "no run"
        else:
            text = format_value(self.mean)
            if self.std:
                text += f" ± {format_value(self.std, 2)}"
        count = f"n={self.n}" if not self.missing else f"n={self.n} of {self.runs} runs; " \
            f"{self.missing_text()}"
        return f"{text} ({count})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "selector": self.selector, "runs": self.runs, "n": self.n, "mean": self.mean,
            "std": self.std, "values": self.values, "missing": self.missing,
            "run_ids": self.run_ids,
        }


@dataclass
class ClaimResult:
    """A claim evaluated on a results folder's records: what was measured and the verdict.

    What ``rnnbench verify`` prints and reporters receive on ``ResultTable.claims``.
    """

    claim: Claim
    #: ``holds``, ``fails``, ``inconclusive``, ``known failure`` or ``known failure now holds``.
    verdict: str
    #: The value compared with ``expect`` (the mean, the ratio of means) or with ``at_least``
    #: (the fraction of runs meeting ``expect``); None when inconclusive.
    value: float | None
    #: The runs of ``where``, then those of ``compare_to`` when the claim has one.
    groups: list[GroupValues]
    #: Why the verdict is what it is, in words (empty for a plain holds / fails).
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether this result lets ``verify`` pass: it holds, or is a known failure (whether
        or not it now holds)."""
        return self.verdict in (HOLDS, KNOWN_FAILURE, KNOWN_FAILURE_HOLDS)

    @property
    def measured(self) -> str:
        """The measurement in words: ``mean ± std (n)``; for ``compare_to`` both groups' means
        and the ratio; for ``solved_fraction`` how many runs met ``expect``."""
        claim = self.claim
        where = self.groups[0]
        if claim.aggregate == SOLVED_FRACTION:
            met = sum(claim.expect.met(v) for v in where.values)
            judged = where.n + where.missing.count("diverged")
            text = f"{met} of {judged} runs meet {claim.expect}"
            if self.value is not None:
                text += f" (fraction {format_value(self.value, 3)})"
            if where.missing:
                text += f"; {where.missing_text()}"
            return text + f"; mean {where.summary()}"
        if claim.compare_to is not None and len(self.groups) > 1:
            ratio = f" = {format_value(self.value)}" if self.value is not None else ""
            return f"{where.summary()} / {self.groups[1].summary()}{ratio}"
        return where.summary()

    @property
    def verdict_text(self) -> str:
        """The verdict with its reason: ``inconclusive: 1 value (1 diverged), min_runs 2``."""
        if self.verdict == KNOWN_FAILURE:
            return f"{KNOWN_FAILURE}: {self.claim.known_failure}"
        if self.verdict == KNOWN_FAILURE_HOLDS:
            return f"{KNOWN_FAILURE_HOLDS.upper()} (remove known_failure: " \
                f"{self.claim.known_failure})"
        return f"{self.verdict}: {self.reason}" if self.reason else self.verdict

    def cells(self) -> list[str]:
        """The row of a claims table, in :data:`CLAIM_COLUMNS` order."""
        claim = self.claim
        return [claim.id, claim.claim, claim.source, claim.expected, self.measured,
                self.verdict_text]

    def to_dict(self) -> dict[str, Any]:
        """Everything about the result as JSON-ready data (``results.json``, ``verify --json``)."""
        claim = self.claim
        return {
            "id": claim.id, "claim": claim.claim, "source": claim.source,
            "metric": claim.metric, "where": claim.where, "compare_to": claim.compare_to,
            "expect": str(claim.expect), "aggregate": claim.aggregate,
            "at_least": claim.at_least, "min_runs": claim.min_runs,
            "known_failure": claim.known_failure, "expected": claim.expected,
            "verdict": self.verdict, "value": self.value, "reason": self.reason,
            "measured": self.measured, "groups": [group.to_dict() for group in self.groups],
        }


def claims_exit_ok(results: Iterable[ClaimResult]) -> bool:
    """Whether every claim holds or is a known failure (``verify`` exits 0)."""
    return all(result.ok for result in results)


# --- reading claims from a suite document ----------------------------------------------------


def parse_claims(
    doc: SuiteDocument,
    problems: SuiteProblems,
    metrics: Sequence[str] | None = None,
    registered: Collection[str] | None = None,
) -> list[Claim]:
    """The claims of a suite document, each checked on its own: ``expect`` readable, ids
    unique, ``at_least`` with ``aggregate`` (and only then), ``compare_to`` not with an
    aggregate, and (when given) the metric registered and among the suite's ``metrics``.

    Entries the schema already rejected (:func:`check_structure`) are skipped without another
    problem. Selectors are checked against the runs by :func:`check_selectors`.
    """
    raw = doc.data.get("claims")
    claims: list[Claim] = []
    first_line: dict[str, int | None] = {}
    for index, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, dict):
            continue
        path: KeyPath = ("claims", index)
        ok = True
        claim_id = entry.get("id")
        if isinstance(claim_id, str):
            if claim_id in first_line:
                problems.add((*path, "id"), f"duplicate claim id {claim_id!r} (first given on "
                             f"line {first_line[claim_id]})",
                             "verify names claims by id; give each claim its own")
                ok = False
            else:
                first_line[claim_id] = doc.line_of(*path, "id")
        expect = None
        if isinstance(entry.get("expect"), str):
            try:
                expect = parse_expect(entry["expect"])
            except ValueError as exc:
                problems.add((*path, "expect"), str(exc))
        metric = entry.get("metric")
        if isinstance(metric, str) and registered is not None and metric not in registered:
            problems.add((*path, "metric"), f"unknown metric {metric!r}",
                         did_you_mean(metric, registered))
            ok = False
        elif isinstance(metric, str) and metrics is not None and metric not in metrics:
            problems.add((*path, "metric"),
                         f"metric {metric!r} is not among the suite's metrics, so no run "
                         "records it", f"add it to the suite's metrics: [{', '.join(metrics)}, "
                         f"{metric}]")
            ok = False
        aggregate, at_least = entry.get("aggregate"), entry.get("at_least")
        if at_least is not None and aggregate is None:
            problems.add((*path, "at_least"), "at_least applies only with aggregate: "
                         "solved_fraction", "add aggregate: solved_fraction (the fraction of "
                         "runs meeting expect), or remove at_least")
            ok = False
        if aggregate == SOLVED_FRACTION and at_least is None:
            problems.add((*path, "aggregate"), "aggregate: solved_fraction needs at_least",
                         "the fraction of runs that must meet expect, e.g. at_least: 0.66 (2 of 3)")
            ok = False
        if aggregate is not None and "compare_to" in entry:
            problems.add((*path, "compare_to"), "compare_to cannot be combined with aggregate",
                         "a solved fraction is compared with at_least; state the other group "
                         "as a claim of its own")
            ok = False
        where, compare_to = _selector(entry.get("where")), _selector(entry.get("compare_to"))
        required = (claim_id, entry.get("claim"), entry.get("source"), metric)
        if not ok or expect is None or where is None or not all(
                isinstance(item, str) for item in required):
            continue
        if "compare_to" in entry and compare_to is None:
            continue
        min_runs = entry.get("min_runs", DEFAULT_MIN_RUNS)
        known = entry.get("known_failure")
        claims.append(Claim(
            id=claim_id, claim=entry["claim"], source=entry["source"], where=where,
            metric=metric, expect=expect, compare_to=compare_to,
            aggregate=aggregate if isinstance(aggregate, str) else None,
            at_least=float(at_least) if _is_number(at_least) else None,
            min_runs=min_runs if isinstance(min_runs, int) and min_runs > 0 else DEFAULT_MIN_RUNS,
            known_failure=known if isinstance(known, str) else None,
            index=index,
        ))
    return claims


def check_selectors(claims: Sequence[Claim], runs: Sequence[RunSpec],
                    problems: SuiteProblems) -> None:
    """Each selector checked against the suite's runs: every key is a setting some run has
    (``cell``, ``task.length``, ``lr``, ``cell.nonlinearity``, ...), and the selector picks at
    least one run (else, per key, the values no run has, with the closest that one has); a
    ``where`` picking fewer runs than ``min_runs`` is a problem too (always inconclusive)."""
    flats = [run.flat() for run in runs]
    keys = sorted({key for flat in flats for key in flat})
    for claim in claims:
        selectors = [("where", claim.where)]
        if claim.compare_to is not None:
            selectors.append(("compare_to", claim.compare_to))
        for name, selector in selectors:
            path: KeyPath = ("claims", claim.index, name)
            unknown = [key for key in selector if key not in keys]
            for key in unknown:
                hint = did_you_mean(key, keys)
                if key.startswith("cell."):
                    hint += "; cell options are keys only for cells that declare them"
                problems.add((*path, key), f"no run of this suite has a setting {key!r}", hint)
            if unknown:
                continue
            chosen = [flat for flat in flats if claim.selects(flat, selector)]
            if not chosen:
                _no_match(problems, path, selector, flats)
            elif (name == "where" or claim.aggregate is None) and len(chosen) < claim.min_runs:
                runs_text = f"{len(chosen)} run{'s' if len(chosen) != 1 else ''}"
                problems.add(path, f"selects {runs_text}, fewer than min_runs "
                             f"({claim.min_runs}): the claim could only be inconclusive",
                             "add seeds (e.g. seed: [0, 1, 2]), widen the selector, or lower "
                             "min_runs")


def _no_match(problems: SuiteProblems, path: KeyPath, selector: dict[str, list[Any]],
              flats: list[dict[str, Any]]) -> None:
    reported = False
    for key, values in selector.items():
        present = [flat[key] for flat in flats if key in flat]
        for value in values:
            if not any(key in flat and _matches(flat, key, value) for flat in flats):
                shown = sorted({str(other) for other in present})
                problems.add((*path, key), f"no run has {key} {_text(value)}",
                             did_you_mean(str(value), shown))
                reported = True
    if not reported:
        problems.add(path, f"no run matches all of {selector_text(selector)} (each value "
                     "occurs, but not together)", "check the combination: an exclude may "
                     "drop it, or it belongs to an include")


def _text(value: Any) -> str:
    """A selector value as a message shows it: strings quoted, numbers as written."""
    return repr(value) if isinstance(value, str) else yaml_text(value)


def _selector(raw: Any) -> dict[str, list[Any]] | None:
    if not isinstance(raw, dict) or not raw:
        return None
    selector = {}
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, (dict, list)) for v in values):
            return None
        selector[str(key)] = values
    return selector


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def claims_suite_file(folder: Path) -> Path | None:
    """The suite copy whose claims a results folder is checked against: the most recently
    written of ``suite.yaml`` and the ``suite.resumed-*.yaml`` a ``--resume`` with a changed
    suite leaves (a later full or ``-k`` run rewrites ``suite.yaml``); None when there is
    none."""
    folder = Path(folder)
    candidates = [path for path in [folder / SUITE_COPY, *folder.glob("suite.resumed-*.yaml")]
                  if path.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path.stat().st_mtime, path.name))


def read_claims(path: Path, variant: str | None = None) -> list[Claim]:
    """The claims of a suite file (of its ``variant``, when the folder's runs were of one),
    checked on their own (structure and the checks of :func:`parse_claims` that need no
    plugins): what ``verify`` reads from a results folder's suite copy. Raises
    :class:`SuiteError` (file:line:field) for a malformed claim or an unknown variant."""
    doc = apply_variant(read_suite(path), variant)
    problems = SuiteProblems(doc)
    check_structure(doc, problems, only="claims")
    problems.raise_if_any()
    claims = parse_claims(doc, problems)
    problems.raise_if_any()
    return claims


def load_claims_quietly(folder: Path) -> tuple[list[Claim], str | None]:
    """The claims of a results folder's suite copy for reporters, never raising: ``([],
    None)`` when the folder has no suite copy, ``([], why)`` when its claims cannot be read."""
    path = claims_suite_file(folder)
    if path is None:
        return [], None
    try:
        return read_claims(path, recorded_variant(folder)), None
    except SuiteError as exc:
        return [], str(exc)


# --- evaluation --------------------------------------------------------------------------------


def evaluate_claims(claims: Iterable[Claim], records: Sequence[RunRecord]) -> list[ClaimResult]:
    """Every claim evaluated on the records (each record's flat configuration matched against
    the selectors)."""
    flats = [(record, record.flat_config()) for record in records]
    return [_evaluate(claim, flats) for claim in claims]


def evaluate_claim(claim: Claim, records: Sequence[RunRecord]) -> ClaimResult:
    """One claim evaluated on the records."""
    return _evaluate(claim, [(record, record.flat_config()) for record in records])


def _group(claim: Claim, selector: dict[str, list[Any]],
           flats: list[tuple[RunRecord, dict[str, Any]]]) -> GroupValues:
    group = GroupValues(selector)
    for record, flat in flats:
        if not claim.selects(flat, selector):
            continue
        group.run_ids.append(record.run_id)
        raw = record.metrics.get(claim.metric)
        value = _metric_number(raw)
        if value is None:
            group.missing.append(_why_missing(record.status, raw))
        else:
            group.values.append(value)
    return group


def _evaluate(claim: Claim, flats: list[tuple[RunRecord, dict[str, Any]]]) -> ClaimResult:
    groups = [_group(claim, claim.where, flats)]
    if claim.compare_to is not None:
        groups.append(_group(claim, claim.compare_to, flats))

    def inconclusive(reason: str) -> ClaimResult:
        return ClaimResult(claim, INCONCLUSIVE, None, groups, reason)

    names = ["where", "compare_to"]
    for name, group in zip(names, groups, strict=False):
        if group.runs == 0:
            return inconclusive(f"no run matches {name} ({selector_text(group.selector)})")
    if claim.aggregate == SOLVED_FRACTION:
        where = groups[0]
        broken = [why for why in where.missing if why not in NOT_MET]
        if broken:
            return inconclusive(f"{len(broken)} of {where.runs} runs give no value to count "
                                f"({where.missing_text()}); fix or re-run them")
        met = [claim.expect.met(v) for v in where.values]
        # A diverged run, or one without a value (steps_to_target of a run that never reached
        # the target), did not meet expect: leaving it out would count only the lucky seeds.
        met += [False] * len(where.missing)
        if len(met) < claim.min_runs:
            return inconclusive(_too_few(len(met), where, claim.min_runs))
        value = sum(met) / len(met)
        assert claim.at_least is not None
        holds = value >= claim.at_least
        reason = f"{_g(value)} {'>=' if holds else '<'} at_least {_g(claim.at_least)}"
    else:
        for name, group in zip(names, groups, strict=False):
            prefix = f"{name}: " if len(groups) > 1 else ""
            if group.missing:
                # The mean of the others would describe a biased sample (e.g. only the seeds
                # that reached a target): say so rather than give a verdict on it.
                return inconclusive(
                    f"{prefix}{len(group.missing)} of {group.runs} runs give no value "
                    f"({group.missing_text()}), so the mean would leave them out; use "
                    "aggregate: solved_fraction to count them as not meeting expect, or narrow "
                    "the selector")
            if group.n < claim.min_runs:
                return inconclusive(prefix + _too_few(group.n, group, claim.min_runs))
        means = [group.mean for group in groups]
        if any(mean is None or math.isnan(mean) for mean in means):
            return inconclusive("the mean is undefined (values of +inf and -inf)")
        value = means[0]
        if len(means) > 1:
            if means[1] == 0 or math.isinf(means[1]):
                return inconclusive(f"the ratio is undefined: the mean of compare_to is "
                                    f"{format_value(means[1])}")
            value = means[0] / means[1]
        assert value is not None
        holds = claim.expect.met(value)
        reason = ""
    if claim.known_failure is not None:
        verdict = KNOWN_FAILURE_HOLDS if holds else KNOWN_FAILURE
    else:
        verdict = HOLDS if holds else FAILS
    return ClaimResult(claim, verdict, value, groups, reason)


#: Why a run may have no value and still count, under ``aggregate: solved_fraction``, as not
#: meeting ``expect``: it diverged, or its metric is undefined for it (``steps_to_target`` of
#: a run that never reached the target). A failed run or a metric error is not a result.
NOT_MET = ("diverged", "no value")


def _too_few(count: int, group: GroupValues, min_runs: int) -> str:
    text = f"{count} value{'s' if count != 1 else ''} from {group.runs} run" \
        f"{'s' if group.runs != 1 else ''}"
    if group.missing:
        text += f" ({group.missing_text()})"
    return text + f", fewer than min_runs ({min_runs})"


def _why_missing(status: str, raw: Any) -> str:
    """Why a run gives no value: its status, else what it recorded instead of a number."""
    if status != "ok":
        return status
    if isinstance(raw, list):
        return "a profile, not a number"
    if isinstance(raw, str):
        return "metric error"
    return "no value"


def _metric_number(value: Any) -> float | None:
    """A recorded metric value as a float: numbers (inf kept) and bools (``True`` is 1);
    None for NaN, a missing value, an error string or a profile."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float) and not math.isnan(value):
        return value
    return None


def _g(value: float | None) -> str:
    return "null" if value is None else f"{value:g}"

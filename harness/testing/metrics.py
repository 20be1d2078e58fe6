"""The metric checks, and a small finished run to compute a metric from.

- ``returns_metric_value``: the value is a ``MetricValue``: ``None``, a bool, an int, a float
  or a list of floats (or ``None``) such as a gradient profile;
- ``leaves_outcome_unchanged``: the metric does not modify the run it reads (other metrics
  read it after);
- ``deterministic``: the same run gives the same value (not for timing metrics).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench.errors import RnnbenchError
from rnnbench.plugin_manager import PluginHost
from rnnbench.records import RunSpec, TrainingConfig
from rnnbench.runner import RunOutcome, execute_run, is_profile
from rnnbench.testing.lookup import find_cell, find_task, load_host
from rnnbench.testing.report import (
    Check,
    CheckReport,
    Failed,
    NamedCheck,
    Skipped,
    run_checks,
    select_checks,
)

#: The run :func:`small_outcome` trains by default: seconds, on any machine.
SMALL_TASK = ("adding", {"length": 6, "train_size": 32, "validation_size": 16, "test_size": 16})


@dataclass
class MetricSubject:
    """A metric function, the finished run it reads, and whether it measures wall-clock time."""

    function: Callable[[RunOutcome], Any]
    outcome: RunOutcome
    timing: bool = False

    @property
    def label(self) -> str:
        return f"metric {getattr(self.function, '__name__', repr(self.function))}"


def metric_value_problem(value: Any) -> str | None:
    """Why ``value`` is not a ``MetricValue``, or ``None`` when it is one: exactly what the
    runner stores (numpy scalars and arrays as the Python numbers and lists they convert to,
    tuples as lists; a list of numbers or None, or of lists of numbers, is a profile)."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if value is None or isinstance(value, (bool, int, float)) or is_profile(value):
        return None
    if isinstance(value, list):
        return ("a list-valued metric holds numbers or None (or lists of numbers), got "
                f"{value!r:.80}")
    return (f"{type(value).__name__} {value!r:.80} is not a metric value (None, bool, int, "
            "float, or a list of numbers or None)")


def check_returns_metric_value(subject: MetricSubject) -> str:
    value = subject.function(subject.outcome)
    problem = metric_value_problem(value)
    if problem is not None:
        raise Failed(problem)
    return f"{value!r}" if not isinstance(value, (list, tuple)) else f"a list of {len(value)}"


def _snapshot(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "params": {n: np.array(v, copy=True) for n, v in outcome.params.items()},
        "initial_params": {n: np.array(v, copy=True) for n, v in outcome.initial_params.items()},
        "curve": copy.deepcopy(outcome.training.curve),
        "test": copy.deepcopy(outcome.test),
        "baseline_loss": outcome.baseline_loss,
        "extras": sorted(outcome.extras),
        "train": [np.array(a, copy=True) for a in (outcome.data.train.inputs,
                                                    outcome.data.train.targets)],
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def check_leaves_outcome_unchanged(subject: MetricSubject) -> str:
    before = _snapshot(subject.outcome)
    subject.function(subject.outcome)
    after = _snapshot(subject.outcome)
    for part, value in before.items():
        if not _same(value, after[part]):
            raise Failed(f"the metric modified the run's {part}; metrics must only read it")
    return "parameters, curve, evaluation, data and extras as they were"


def check_deterministic(subject: MetricSubject) -> str:
    if subject.timing:
        raise Skipped("a timing metric varies between calls")
    first, second = subject.function(subject.outcome), subject.function(subject.outcome)
    if not _same(_plain(first), _plain(second)):
        raise Failed(f"two calls on the same run gave {first!r} and {second!r}")
    return "the same value twice"


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


#: Every metric check, in the order they run.
METRIC_CHECKS: tuple[Check[MetricSubject], ...] = (
    Check("returns_metric_value", check_returns_metric_value,
          "None, bool, int, float, or a list of floats or None"),
    Check("leaves_outcome_unchanged", check_leaves_outcome_unchanged,
          "does not modify the run it reads"),
    Check("deterministic", check_deterministic, "the same run gives the same value"),
)


def check_metric(
    function: Callable[[RunOutcome], Any],
    outcome: RunOutcome | None = None,
    *,
    timing: bool = False,
    checks: Sequence[str] | None = None,
) -> CheckReport:
    """Run the metric checks on ``function`` computed from ``outcome`` (default: a
    :func:`small_outcome`). ``timing=True`` for wall-clock metrics, which need not repeat."""
    subject = MetricSubject(function, outcome or small_outcome(), timing)
    return run_checks(subject.label, select_checks(METRIC_CHECKS, checks, "metric"), subject)


def metric_checks(
    function: Callable[[RunOutcome], Any],
    outcome: RunOutcome | None = None,
    *,
    timing: bool = False,
    checks: Sequence[str] | None = None,
) -> list[NamedCheck]:
    """The checks :func:`check_metric` runs, one callable each, for ``pytest.mark.parametrize``
    (as :func:`rnnbench.testing.cell_checks`)."""
    subject = MetricSubject(function, outcome or small_outcome(), timing)
    return [NamedCheck(subject.label, check, subject)
            for check in select_checks(METRIC_CHECKS, checks, "metric")]


def small_outcome(
    cell: tuple[str, str] = ("rnn", "numpy"),
    task: str = SMALL_TASK[0],
    *,
    task_params: dict[str, Any] | None = None,
    hidden_size: int = 4,
    num_layers: int = 1,
    dtype: str = "float64",
    steps: int = 4,
    seed: int = 0,
    host: PluginHost | None = None,
    plugins: Sequence[str] = (),
) -> RunOutcome:
    """A run trained for a few ``steps`` through the runner, as a metric receives it: a
    ``RunOutcome`` to test a metric with. ``task_params`` default to a tiny adding problem when
    ``task`` is ``"adding"``, else to the task's defaults."""
    host = load_host(host, plugins)
    find_cell(host, *cell)
    find_task(host, task)
    if task_params is None:
        task_params = SMALL_TASK[1] if task == SMALL_TASK[0] else {}
    spec = RunSpec(
        cell=cell[0], backend=cell[1], task=task, task_params=tuple(sorted(task_params.items())),
        hidden_size=hidden_size, num_layers=num_layers, bias=True, dtype=dtype, seed=seed,
        training=TrainingConfig(optimizer="adam", lr=0.01, batch_size=8, steps=steps,
                                eval_every=max(1, steps // 2)),
        suite="rnnbench.testing",
    )
    record, outcome = execute_run(spec, host)
    if outcome is None or record.status == "failed":
        raise RnnbenchError(f"the run {spec.label} failed: {record.error}")
    return outcome

"""rnnbench's test kit for plugin authors: named checks for cells, tasks and metrics.

Check a cell, by factory or by registered name, and fail a test on any problem::

    from rnnbench.testing import check_cell
    check_cell(MyCell).raise_on_failure()                      # a factory (e.g. the class)
    check_cell(("mycell", "numpy")).raise_on_failure()         # registered, via the plugins
    check_cell(("lstm", "numba-cpu"), reference="numpy")       # a report: print(report)

or one test per check::

    @pytest.mark.parametrize("check", cell_checks(("mycell", "numpy")))
    def test_mycell(check):
        check()

Tasks and metrics likewise: ``check_task(MyTask)`` / ``task_checks``, ``check_metric(fn)`` /
``metric_checks`` (on a :func:`small_outcome` by default). ``rnnbench check cell NAME`` and
``rnnbench check task NAME`` run the same checks from the command line.

The lower-level pieces the checks are made of are public too, for tests of their own:
:func:`make_case` (a cell, its parameters, inputs and a fixed linear loss), finite differences
(:meth:`CellCase.numeric`) and the error measures (:func:`max_relative_error`,
:func:`scaled_error`) with their tolerances.
"""

from __future__ import annotations

from rnnbench.testing.cases import (
    FD_TOL,
    SAME_CELL_TOLERANCE,
    TOLERANCE,
    CellCase,
    CellFactory,
    Shape,
    fd_derivative,
    make_case,
    max_relative_error,
    scaled_error,
    worst_scaled_error,
)
from rnnbench.testing.cells import (
    CELL_CHECK_NAMES,
    CELL_CHECKS,
    DEFAULT_SHAPES,
    EDGE_SHAPE,
    CellSubject,
    cell_checks,
    cell_subject,
    check_cell,
)
from rnnbench.testing.metrics import (
    METRIC_CHECKS,
    check_metric,
    metric_checks,
    metric_value_problem,
    small_outcome,
)
from rnnbench.testing.report import (
    Check,
    CheckFailed,
    CheckReport,
    CheckResult,
    Failed,
    NamedCheck,
    Skipped,
)
from rnnbench.testing.tasks import TASK_CHECK_NAMES, TASK_CHECKS, check_task, task_checks

__all__ = [
    "CELL_CHECKS",
    "CELL_CHECK_NAMES",
    "DEFAULT_SHAPES",
    "EDGE_SHAPE",
    "FD_TOL",
    "METRIC_CHECKS",
    "SAME_CELL_TOLERANCE",
    "TASK_CHECKS",
    "TASK_CHECK_NAMES",
    "TOLERANCE",
    "CellCase",
    "CellFactory",
    "CellSubject",
    "Check",
    "CheckFailed",
    "CheckReport",
    "CheckResult",
    "Failed",
    "NamedCheck",
    "Shape",
    "Skipped",
    "cell_checks",
    "cell_subject",
    "check_cell",
    "check_metric",
    "check_task",
    "fd_derivative",
    "make_case",
    "max_relative_error",
    "metric_checks",
    "metric_value_problem",
    "scaled_error",
    "small_outcome",
    "task_checks",
    "worst_scaled_error",
]
